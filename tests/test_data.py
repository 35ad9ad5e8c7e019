"""Data: deterministic, layout-independent batches; loaders; clear errors for bad data."""

import jax
import numpy as np
import pytest
from PIL import Image

from difflab import data
from difflab.data import files


def cfg(**kw):
    import ml_collections

    base = {
        "name": "checkerboard",
        "seed": 0,
        "split": "train",
        "path": "",
        "num_classes": 0,
        "dequantize": 0.0,
    }
    return ml_collections.ConfigDict({**base, **kw})


@pytest.mark.parametrize("name", ["checkerboard", "moons", "eight_gaussians", "gmm", "digits"])
def test_batches_are_pure_functions_of_step_and_rows(name):
    d = data.build(cfg(name=name))
    whole = d.batch(5, 0, 32, 32)["x"]
    halves = np.concatenate([d.batch(5, 0, 16, 32)["x"], d.batch(5, 16, 16, 32)["x"]])
    np.testing.assert_array_equal(whole, halves)  # two processes == one process
    np.testing.assert_array_equal(whole, d.batch(5, 0, 32, 32)["x"])  # deterministic
    assert not np.array_equal(whole, d.batch(6, 0, 32, 32)["x"])  # steps differ
    assert np.isfinite(whole).all()


def test_reference_rows_reuse_the_training_batch_program_and_do_not_depend_on_it():
    """The reference stream is drawn in chunks of a row count already compiled (a training
    batch), so evaluation compiles no second program; its rows are the same either way."""
    fresh = data.build(cfg(name="gmm")).reference(100, 3)  # chunks of REFERENCE_CHUNK rows
    d = data.build(cfg(name="gmm"))
    with data.on_host():  # as training.loop draws
        d.batch(0, 0, 48, 48)
    again = d.reference(100, 3)  # chunks of 48
    np.testing.assert_array_equal(fresh, again)
    assert d._draw._cache_size() == 1, "the reference compiled its own program"
    assert not np.array_equal(again, d.batch(0, 0, 100, 100)["x"])  # its own key stream


def test_checkerboard_support():
    x = data.build(cfg()).batch(0, 0, 4096, 4096)["x"]
    assert np.all(np.abs(x) <= 2)
    cell = np.floor(x + 2).astype(int)
    assert np.all((cell[:, 0] + cell[:, 1]) % 2 == 0)


def test_digits_range_labels_and_epochs():
    d = data.build(cfg(name="digits"))
    assert d.shape == (8, 8, 1) and d.num_classes == 10
    assert d.x.min() == -1.0 and d.x.max() == 1.0
    n = len(d.x)
    # one epoch visits every example once
    seen = np.concatenate([d.indices(s, 0, 64, 64) for s in range(n // 64)])
    assert len(np.unique(seen)) == len(seen)
    test = data.digits(0, "test")
    assert len(test.x) + n == 1797


def test_digits_are_scikit_learns_digits():
    """Read from scikit-learn's file without importing it: the same images and labels."""
    from sklearn.datasets import load_digits

    d, reference = data.digits(0), load_digits()
    np.testing.assert_array_equal(d.x[..., 0], reference.images / 8.0 - 1.0)
    np.testing.assert_array_equal(d.label, reference.target)


def test_gmm_parameters_exposed():
    from difflab.data import toy

    assert toy.GMM.means.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(toy.GMM.means, axis=1), 4.0)


def test_npz_loader(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.random.randn(50, 3).astype(np.float32), label=np.arange(50) % 5)
    d = data.build(cfg(name="npz", path=str(p)))
    assert d.shape == (3,) and d.num_classes == 5 and d.kind == "points"
    b = d.batch(0, 0, 10, 10)
    assert b["x"].shape == (10, 3) and b["label"].shape == (10,)


@pytest.mark.parametrize(
    "x,label,match",
    [
        (
            np.array([[0.0, np.nan]], np.float32),
            None,
            r"x.* must be finite, got nan at index \(0, 1\)",
        ),
        (np.zeros((4, 2, 2), np.float32), None, r"must have rank 2 or 4, got shape \(4, 2, 2\)"),
        (
            np.full((2, 4, 4, 1), 3.0, np.float32),
            None,
            r"must lie in \[-1.0, 1.0\], got min=3, max=3",
        ),
        (
            np.zeros((3, 2), np.float32),
            np.array([0, 1, 7]),
            r"label must lie in \[0, 4\], got min=0, "
            r"max=7",
        ),
        (np.zeros((0, 2), np.float32), None, "is empty"),
    ],
)
def test_bad_npz_is_a_clear_error(tmp_path, x, label, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **({"x": x} if label is None else {"x": x, "label": label}))
    with pytest.raises(ValueError, match=match):
        data.build(cfg(name="npz", path=str(p), num_classes=5 if label is not None else 0))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.build(cfg(name="npz", path=str(tmp_path / "nope.npz")))
    with pytest.raises(ValueError, match="must name"):
        data.build(cfg(name="npz", path=""))


def test_image_folder(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            img = np.full((4, 4, 3), 60 * i, np.uint8)
            Image.fromarray(img).save(tmp_path / c / f"{i}.png")
    x, label = files.load_image_folder(str(tmp_path))
    assert x.shape == (6, 4, 4, 3) and x.min() == -1.0 and x.max() <= 1.0
    np.testing.assert_array_equal(label, [0, 0, 0, 1, 1, 1])
    d = data.build(cfg(name="image_folder", path=str(tmp_path)))
    assert d.kind == "images" and d.num_classes == 2


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="config.data.name must be one of"):
        data.build(cfg(name="imagenet"))


def test_dequantization_is_keyed_by_row_and_stays_in_its_bin():
    d = data.build(cfg(name="digits", dequantize=0.125))
    whole = d.batch(2, 0, 16, 16)["x"]
    halves = np.concatenate([d.batch(2, 0, 8, 16)["x"], d.batch(2, 8, 8, 16)["x"]])
    np.testing.assert_array_equal(whole, halves)
    clean = d.x[d.indices(2, 0, 16, 16)]
    assert 0 < np.abs(whole - clean).max() <= 0.0625
    assert not np.array_equal(
        whole - clean, d.batch(3, 0, 16, 16)["x"] - d.x[d.indices(3, 0, 16, 16)]
    )


def rows_of(table: np.ndarray, x: np.ndarray) -> list:
    """For each row of x, the indices of the rows of table equal to it."""
    flat, rows = table.reshape(len(table), -1), x.reshape(len(x), -1)
    return [np.flatnonzero((flat == r).all(axis=1)) for r in rows]


@pytest.mark.parametrize("step,start", [(0, 0), (3, 40), (29, 7)])
def test_each_label_is_the_label_of_its_own_row(tmp_path, step, start):
    """batch()['label'][i] belongs to batch()['x'][i] for every labelled data set: digits (each
    image looked up in the table), a user's npz (x carries its label in column 0) and the cells
    generator (row i redrawn from its own key), over epoch boundaries."""
    digits = data.build(cfg(name="digits"))
    b = digits.batch(step, start, 48, 64)
    for i, where in enumerate(rows_of(digits.x, b["x"])):
        assert len(where) and b["label"][i] in set(digits.label[where]), (i, b["label"][i])
    label = np.random.default_rng(0).integers(0, 5, 50)
    p = tmp_path / "labelled.npz"
    x = np.stack([label, np.arange(50)], 1).astype(np.float32)
    np.savez(p, x=x, label=label)
    b = data.build(cfg(name="npz", path=str(p))).batch(step, start, 32, 64)
    np.testing.assert_array_equal(b["label"], b["x"][:, 0].astype(int))
    cells = data.build(cfg(name="cells", dim=20))
    b = cells.batch(step, start, 6)
    key = jax.random.fold_in(jax.random.key(cells.seed), step)
    for i in range(6):
        one = cells.generator(jax.random.fold_in(key, start + i))
        np.testing.assert_array_equal(b["x"][i], one["x"])
        assert b["label"][i] == int(one["label"])


@pytest.mark.parametrize("content", ["npy", "text"])
def test_a_file_that_is_not_an_npz_is_named_as_such(tmp_path, content):
    """An .npy or a text file given as the .npz: named as not an .npz (numpy would advise
    allow_pickle)."""
    p = tmp_path / "data.npz"
    if content == "npy":
        with open(p, "wb") as f:
            np.save(f, np.zeros((4, 2), np.float32))
    else:
        p.write_text("x,label\n0.5,1\n")
    with pytest.raises(ValueError, match=r"data.npz' is not an .npz file \(a zip archive"):
        data.build(cfg(name="npz", path=str(p)))

"""Count data: simulated cells / spikes / digit counts, user count files with one-line errors,
source pairing (minibatch OT), count views for baselines, and the count metrics."""

import itertools

import numpy as np
import pytest

from difflab import data
from difflab.configs.common import counts_process
from difflab.data.counts import CountView, PairedSource, array_draw
from difflab.data.coupling import cost_matrix, ot_permutation
from difflab.metrics import counts as count_metrics
from difflab.training.components import build
from tests.helpers import tiny_config


def data_config(**kw):
    c = tiny_config().data
    c.update(kw)
    return c


def test_cells_are_overdispersed_labelled_counts_into_the_hundreds():
    d = data.build(data_config(name="cells", dim=100))
    x, label = d.reference(3000, 0), d.reference_labels(3000, 0)
    assert x.shape == (3000, 100) and x.dtype == np.int32 and x.min() >= 0
    assert x.max() >= 200 and 0.05 < (x == 0).mean() < 0.6
    assert set(np.unique(label)) == set(range(5)) and d.num_classes == 5
    mean, var = x.mean(0), x.var(0)
    assert np.all(var[mean > 1] > 1.5 * mean[mean > 1])  # negative binomial: overdispersed
    b1, b2 = d.batch(3, 0, 16), d.batch(3, 8, 8)  # keyed by (seed, step, index)
    np.testing.assert_array_equal(b1["x"][8:], b2["x"])
    np.testing.assert_array_equal(b1["label"][8:], b2["label"])


def test_spikes_and_digit_counts():
    s = data.build(data_config(name="spikes"))
    x = s.reference(500, 0)
    assert x.shape == (500, 16 * 24) and x.min() >= 0 and 0.5 < x.mean() < 5
    d = data.build(data_config(name="digits_counts", split="train"))
    assert d.kind == "counts" and d.shape == (64,) and d.x.min() == 0 and d.x.max() == 16
    assert d.num_classes == 10


def write_counts(tmp_path, x, label=None):
    path = str(tmp_path / "counts.npz")
    arrays = {"x": x} | ({} if label is None else {"label": label})
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "value, what",
    [(-3, "negative -3"), (2.5, "non-integer 2.5"), (np.nan, "non-finite nan")],
)
def test_bad_counts_get_one_line_errors_naming_the_column(tmp_path, value, what):
    x = np.arange(40, dtype=np.float64).reshape(8, 5)
    x[6, 3] = value
    path = write_counts(tmp_path, x)
    with pytest.raises(ValueError) as e:
        data.build(data_config(name="counts_npz", path=path))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"counts must be non-negative integers, got {what}" in msg
    assert "column 3" in msg and "row 6" in msg


def test_integer_valued_float_counts_load_exactly(tmp_path):
    x = np.arange(40, dtype=np.float32).reshape(8, 5)
    label = np.array([0, 1] * 4)
    d = data.build(data_config(name="counts_npz", path=write_counts(tmp_path, x, label)))
    assert d.kind == "counts" and d.x.dtype == np.int32 and d.num_classes == 2
    np.testing.assert_array_equal(d.x, x.astype(np.int32))


def test_missing_count_file_and_h5ad_without_anndata(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.build(data_config(name="counts_npz", path=str(tmp_path / "nope.npz")))
    with pytest.raises((FileNotFoundError, ImportError)):
        data.build(data_config(name="counts_h5ad", path=str(tmp_path / "nope.h5ad")))


def test_h5ad_loader_reads_counts_labels_and_gene_names(tmp_path):
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    x[2, 1] = -1
    obs = pd.DataFrame({"cell_type": ["a", "b", "a", "c", "b", "a"]})
    var = pd.DataFrame(index=["g0", "g1", "g2", "g3"])
    bad = str(tmp_path / "bad.h5ad")
    anndata.AnnData(x, obs=obs, var=var).write_h5ad(bad)
    with pytest.raises(ValueError, match=r"negative -1 in column 1 \('g1'\)"):
        data.build(data_config(name="counts_h5ad", path=bad, label_key="cell_type"))
    x[2, 1] = 5
    good = str(tmp_path / "good.h5ad")
    anndata.AnnData(x, obs=obs, var=var).write_h5ad(good)
    d = data.build(data_config(name="counts_h5ad", path=good, label_key="cell_type"))
    assert d.num_classes == 3 and d.x[2, 1] == 5
    with pytest.raises(ValueError, match="label_key='kind' is not a column"):
        data.build(data_config(name="counts_h5ad", path=good, label_key="kind"))


def independent_costs(x0, x1):
    """The three docs/math.md §4.1 costs written out pair by pair (not through cost_matrix)."""
    out = {name: np.zeros((len(x0), len(x1))) for name in ("l1", "sqeuclidean", "poisson")}
    for i, a in enumerate(np.asarray(x0, float)):
        for j, b in enumerate(np.asarray(x1, float)):
            out["l1"][i, j] = sum(abs(a - b))
            out["sqeuclidean"][i, j] = sum((a - b) ** 2)
            out["poisson"][i, j] = sum((a - b) * (np.log(a + 1e-8) - np.log(b + 1e-8)))
    return out


def test_ot_permutation_is_the_optimal_assignment():
    rng = np.random.default_rng(0)
    x0, x1 = rng.poisson(5, (6, 3)), rng.poisson(2, (6, 3))
    costs = independent_costs(x0, x1)
    for cost in ("l1", "sqeuclidean", "poisson"):
        c = costs[cost]
        np.testing.assert_allclose(cost_matrix(x0, x1, cost), c)
        best = min(sum(c[i, p[i]] for i in range(6)) for p in itertools.permutations(range(6)))
        perm = ot_permutation(x0, x1, cost)
        assert np.isclose(sum(c[i, perm[i]] for i in range(6)), best)
    with pytest.raises(ValueError, match="ot_cost must be one of"):
        cost_matrix(x0, x1, "l2")


def test_paired_source_pairs_the_global_batch_whatever_the_slice():
    target = data.build(data_config(name="cells", dim=20))
    population = target.reference(500, 9)
    ot = PairedSource(target, array_draw(population), "ot", "l1", seed=1)
    indep = PairedSource(target, array_draw(population), "independent", "l1", seed=1)
    whole = ot.batch(4, 0, 64, 64)
    half = ot.batch(4, 32, 32, 64)
    for k in ("x", "source", "label"):
        np.testing.assert_array_equal(whole[k][32:], half[k])
    cost = lambda b: np.abs(b["x"] - b["source"]).sum()
    assert cost(whole) < 0.8 * cost(indep.batch(4, 0, 64, 64))
    assert ot.shape == target.shape and ot.num_classes == target.num_classes


def test_count_views_decode_exactly():
    base = data.build(data_config(name="cells", dim=20))
    x = base.batch(0, 0, 64)["x"]
    points = CountView(base, "log1p")
    y = points.batch(0, 0, 64)["x"]
    assert y.dtype == np.float32 and points.kind == "points"
    np.testing.assert_array_equal(points.to_counts(y), x)  # floor(expm1(log1p(x + u))) = x
    tokens = CountView(base, "tokens", cap=31)
    z = tokens.batch(0, 0, 64)["x"]
    assert tokens.vocab_size == 32 and z.max() <= 31
    np.testing.assert_array_equal(z, np.minimum(x, 31))
    with pytest.raises(ValueError, match="count_cap must be >= 1"):
        CountView(base, "tokens", cap=0)


def test_family_and_network_must_fit_count_data():
    c = tiny_config()
    c.data.name, c.data.dim = "cells", 10
    c.model.net = "count_mlp"
    with pytest.raises(ValueError, match="cannot model the counts"):
        build(c)  # flow family on counts
    c.process = counts_process()
    c.model.net = "mlp"
    with pytest.raises(ValueError, match="does not fit config.process.family='counts'"):
        build(c)
    c.process.source = "data"
    c.model.net = "count_mlp"
    with pytest.raises(ValueError, match="source='data' needs a data set with a source"):
        build(c)


def test_count_metrics_separate_data_from_a_wrong_law():
    d = data.build(data_config(name="cells", dim=50))
    ref = d.reference(2000, 0)
    same = count_metrics.count_report(d.reference(1000, 5), ref)
    # a wrong law: halved counts with every gene shuffled independently (no correlations)
    rng = np.random.default_rng(0)
    halved = d.reference(1000, 5) // 2
    wrong = count_metrics.count_report(rng.permuted(halved, axis=0), ref)
    for key in count_metrics.KEYS:
        assert abs(same[key] - same[f"{key}_data"]) < 0.5 * wrong[key] + 1e-3, key
        assert wrong[key] > 2 * abs(same[f"{key}_data"]), key

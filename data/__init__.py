"""Embedded data sets and file loaders, with batches that are pure functions of (seed, step, index).

A data set serves `batch(step, start, size)`: examples [start, start + size) of the global batch
of training step `step`. A process asks only for its own slice, and the same global batch comes out
whatever the number of processes or devices, so a resumed run needs nothing but the step.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from collections.abc import Callable

import jax
import numpy as np

from difflab.data import counts, files, markov, tokens, toy
from difflab.data.validate import check_counts, check_finite, check_labels, check_rank

REFERENCE_CHUNK = 1024  # rows per reference draw when no other row count is compiled


def on_host():
    """A context that draws data on this host's first CPU device, whatever the accelerator:
    batches and reference rows come from the same compiled programs (jit keys on the device)."""
    return jax.default_device(jax.local_devices(backend="cpu")[0])


@dataclasses.dataclass(frozen=True)
class GeneratedDataset:
    """An infinite generated distribution: example i of step n is generator(fold_in(key_n, i))."""

    name: str
    generator: Callable
    seed: int
    shape: tuple[int, ...]
    kind: str = "points"
    num_classes: int = 0
    vocab_size: int = 0  # token data: the number of real tokens
    law: object = None  # the known distribution, where there is one (data.markov.MarkovChain)
    source: Callable | None = None  # a source population draw(key, n) (count transport)

    @functools.cached_property
    def _draw(self):
        def draw(root, fold, indices):  # key_n = fold_in(key(root), fold), all in one call
            key = jax.random.fold_in(jax.random.key(root), fold)
            return jax.vmap(lambda i: self.generator(jax.random.fold_in(key, i)))(indices)

        return jax.jit(draw)

    @functools.cached_property
    def _compiled_sizes(self) -> set:
        """The row counts `_draw` has been compiled for in this process."""
        return set()

    def _rows(self, root: int, fold: int, start: int, size: int) -> dict:
        """Rows [start, start + size) of key stream (root, fold), drawn on the host's CPU (as
        training batches are: the same device keeps one compiled program per size)."""
        self._compiled_sizes.add(size)
        rows = np.arange(start, start + size, dtype=np.uint32)
        with on_host():
            out = self._draw(np.uint32(root), np.uint32(fold), rows)
        return {k: np.asarray(v) for k, v in (out if isinstance(out, dict) else {"x": out}).items()}

    def batch(self, step: int, start: int, size: int, global_batch: int | None = None) -> dict:
        del global_batch  # examples are keyed by their index: no epochs to track
        return self._rows(self.seed, step, start, size)

    def _reference(self, n: int, seed: int) -> dict:
        """Examples 0..n-1 of the reference stream. Example i depends only on i, so they are
        drawn in chunks of a row count the draw is already compiled for (a training batch;
        else REFERENCE_CHUNK), and every n reuses that program: compiling a generator again
        for a second row count took 0.5-4 s (the count generators, optimised)."""
        chunk = max(self._compiled_sizes, default=REFERENCE_CHUNK)
        chunks = [
            self._rows(self.seed + 1_000_003, seed, start, chunk)
            for start in range(0, max(n, 1), chunk)
        ]
        return {k: np.concatenate([c[k] for c in chunks])[:n] for k in chunks[0]}

    def reference(self, n: int, seed: int) -> np.ndarray:
        """n fresh draws, independent of every training batch (a different key stream)."""
        return self._reference(n, seed)["x"]

    def reference_labels(self, n: int, seed: int) -> np.ndarray | None:
        """The labels of `reference(n, seed)` (generators that return {'x', 'label'})."""
        return self._reference(n, seed).get("label")


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A finite data set, visited in a fresh permutation each epoch (a function of seed, epoch)."""

    name: str
    x: np.ndarray
    label: np.ndarray | None
    seed: int
    kind: str
    num_classes: int = 0
    dequantize: float = 0.0  # bin width of uniform dequantisation noise (0: off)
    vocab_size: int = 0  # token data: the number of real tokens

    @property
    def shape(self):
        return self.x.shape[1:]

    def dequantization_noise(self, step: int, start: int, size: int) -> np.ndarray:
        """bin_width (u - 1/2), u ~ U(0, 1), keyed by (seed, step, global row)."""
        noise = counts.row_uniforms(self.seed + 2_000_003, step, start, size, self.x.shape[1:])
        return self.dequantize * (noise - 0.5)

    @functools.lru_cache(maxsize=4)  # noqa: B019 -- a few epochs' permutations per data set
    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def indices(self, step: int, start: int, size: int, global_batch: int) -> np.ndarray:
        pos = step * global_batch + start + np.arange(size)
        epochs, offsets = np.divmod(pos, len(self.x))
        return np.array([self.permutation(int(e))[o] for e, o in zip(epochs, offsets, strict=True)])

    def batch(self, step: int, start: int, size: int, global_batch: int | None = None) -> dict:
        idx = self.indices(step, start, size, global_batch or size)
        out = {"x": self.x[idx]}
        if self.dequantize:
            out["x"] = out["x"] + self.dequantization_noise(step, start, size)
        if self.label is not None:
            out["label"] = self.label[idx]
        return out

    def _reference_indices(self, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 7919, seed]).permutation(len(self.x))[:n]

    def reference(self, n: int, seed: int) -> np.ndarray:
        """n examples drawn without replacement (all of them if n exceeds the set)."""
        return self.x[self._reference_indices(n, seed)]

    def reference_labels(self, n: int, seed: int) -> np.ndarray | None:
        """The labels of `reference(n, seed)`, in the same order."""
        return None if self.label is None else self.label[self._reference_indices(n, seed)]


def digits_table() -> np.ndarray:
    """scikit-learn's digits.csv.gz (1797 rows: 64 pixel values 0..16, then the digit), the file
    `sklearn.datasets.load_digits` reads, read here without importing scikit-learn (2.5 s)."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the digits ship with scikit-learn: pip install scikit-learn")
    folder = spec.submodule_search_locations[0]
    return np.loadtxt(os.path.join(folder, "datasets", "data", "digits.csv.gz"), delimiter=",")


def digits(seed: int, split: str = "all") -> ArrayDataset:
    """scikit-learn's 1797 8x8 digits, x = v / 8 - 1 in [-1, 1] (NHWC), labels 0..9.

    split: 'all', or a fixed 90/10 'train'/'test' split (seeded independently of `seed`).
    """
    table = digits_table()
    x = (table[:, :64].reshape(-1, 8, 8).astype(np.float32) / 8.0 - 1.0)[..., None]
    label = table[:, 64].astype(np.int32)
    if split != "all":
        order = np.random.default_rng(20240101).permutation(len(x))
        cut = int(0.9 * len(x))
        if split not in ("train", "test"):
            raise ValueError(f"digits split must be 'all', 'train' or 'test', got {split!r}")
        keep = order[:cut] if split == "train" else order[cut:]
        x, label = x[keep], label[keep]
    return ArrayDataset("digits", x, label, seed, "images", 10)


def from_arrays(name: str, x: np.ndarray, label, seed: int, num_classes: int = 0) -> ArrayDataset:
    """Validate user arrays (finite, rank 2 or 4, labels in range) and wrap them."""
    check_rank(f"{name} x", x, (2, 4))
    check_finite(f"{name} x", x)
    if label is not None:
        num_classes = num_classes or int(label.max()) + 1
        check_labels(f"{name} label", label, num_classes, len(x))
    return ArrayDataset(
        name,
        x,
        label,
        seed,
        "images" if x.ndim == 4 else "points",
        num_classes if label is not None else 0,
    )


def digit_tokens(seed: int, split: str = "all") -> ArrayDataset:
    """The digits as 64 pixel tokens v in 0..16 (17 levels), labels 0..9."""
    d = digits(seed, split)
    x = tokens.digit_tokens(d.x)
    return dataclasses.replace(d, name="digits_tokens", x=x, kind="tokens", vocab_size=17)


def markov_source(vocab_size: int, seq_len: int, seed: int) -> GeneratedDataset:
    """Sequences of the chain data.markov.source_chain(vocab_size), whose law is known."""
    if vocab_size < 2 or seq_len < 2:
        raise ValueError(
            f"the markov source needs config.data.vocab_size >= 2 and config.data.seq_len >= 2, "
            f"got {vocab_size} and {seq_len}"
        )
    chain = markov.source_chain(vocab_size)
    sample = functools.partial(chain.sample, length=seq_len)
    return GeneratedDataset(
        "markov", sample, seed, (seq_len,), "tokens", vocab_size=vocab_size, law=chain
    )


def token_arrays(path: str, vocab_size: int, seq_len: int, seed: int) -> ArrayDataset:
    """A user's .npz of int tokens x [N, L] (optional labels), checked against the config."""
    x, label = files.read_npz(path)
    tokens.check_array_tokens(f"{path}['x']", x, vocab_size, seq_len)
    num_classes = 0
    if label is not None:
        num_classes = int(label.max()) + 1
        check_labels(f"{path}['label']", label, num_classes, len(x))
    return ArrayDataset(
        path, x.astype(np.int32), label, seed, "tokens", num_classes, vocab_size=vocab_size
    )


TOKEN_DATA = ("text", "text_file", "markov", "digits_tokens", "tokens_npz")
COUNT_DATA = ("cells", "cells_transport", "spikes", "digits_counts", "counts_npz", "counts_h5ad")


def cells(seed: int, genes: int = 100, condition: str = "base") -> GeneratedDataset:
    """Simulated scRNA-seq counts (data.counts.cell_law), labels = cell type."""
    law = counts.cell_law(genes, condition=condition)
    return GeneratedDataset(
        "cells", law.sample, seed, (genes,), "counts", num_classes=law.types, law=law
    )


def cells_transport(seed: int, genes: int = 100) -> GeneratedDataset:
    """Target: the 'aged' tissue; its source population (`source`): the base tissue."""
    source = counts.generated_draw(counts.cell_law(genes, condition="base").sample)
    return dataclasses.replace(cells(seed, genes, "aged"), name="cells_transport", source=source)


def spikes(seed: int, neurons: int = 24, bins: int = 16) -> GeneratedDataset:
    """Simulated binned spike counts of a population with 2-D latent dynamics, [bins * neurons]."""
    law = counts.spike_law(neurons, bins)
    return GeneratedDataset("spikes", law.sample, seed, (bins * neurons,), "counts", law=law)


def digit_counts(seed: int, split: str = "all") -> ArrayDataset:
    """The digits' 64 pixel intensities 0..16 as counts, labels 0..9."""
    d = digits(seed, split)
    x = np.rint((d.x[..., 0] + 1.0) * 8.0).astype(np.int32).reshape(len(d.x), -1)
    return dataclasses.replace(d, name="digits_counts", x=x, kind="counts")


def count_arrays(name: str, x, label, seed: int, columns=None) -> ArrayDataset:
    """A user's count matrix, checked (non-negative integers; errors name the column)."""
    x = check_counts(name, np.asarray(x), columns)
    num_classes = 0
    if label is not None:
        num_classes = int(label.max()) + 1
        check_labels(f"{name} label", label, num_classes, len(x))
    return ArrayDataset(name, x, label, seed, "counts", num_classes)


def count_data(dc):
    """The count data set of config.data (before any view)."""
    name, seed = dc.name, dc.seed
    if name == "cells":
        return cells(seed, dc.dim or 100)
    if name == "cells_transport":
        return cells_transport(seed, dc.dim or 100)
    if name == "spikes":
        return spikes(seed)
    if name == "digits_counts":
        return digit_counts(seed, dc.get("split", "train"))
    if name == "counts_npz":
        x, label = files.read_npz(dc.path)
        return count_arrays(f"{dc.path}['x']", x, label, seed)
    x, label, columns = files.read_h5ad(dc.path, dc.label_key)
    return count_arrays(dc.path, x, label, seed, columns)


def with_view(dataset, dc):
    """Counts as they are, or seen as points / tokens by config.data.count_view (baselines)."""
    view = dc.get("count_view", "counts")
    if view == "counts":
        return dataset
    return counts.CountView(dataset, view, dc.get("count_cap", 0))


def build(data_config):
    """The data set described by config.data."""
    name, seed = data_config.name, data_config.seed
    seq_len = data_config.get("seq_len", 0)
    split = data_config.get("split", "train")
    if name in ("text", "text_file"):
        path = data_config.path if name == "text_file" else ""
        if name == "text_file" and not path:
            raise ValueError("config.data.name='text_file' needs config.data.path")
        mode = data_config.get("text_mode", "chars")
        return tokens.text(name, seq_len, seed, split, mode, path)
    if name == "markov":
        return markov_source(data_config.vocab_size, seq_len, seed)
    if name == "digits_tokens":
        d = digit_tokens(seed, split)
        if seq_len and seq_len != d.shape[0]:
            raise ValueError(
                f"digits_tokens sequences have length 64, got config.data.seq_len={seq_len}"
            )
        return d
    if name == "tokens_npz":
        return token_arrays(data_config.path, data_config.vocab_size, seq_len, seed)
    if name in COUNT_DATA:
        return with_view(count_data(data_config), data_config)
    if name in toy.GENERATORS:
        return GeneratedDataset(name, toy.GENERATORS[name], seed, (2,))
    if name == "digits":
        d = digits(seed, data_config.get("split", "train"))
        return dataclasses.replace(d, dequantize=data_config.get("dequantize", 0.0))
    if name == "npz":
        x, label = files.load_npz(data_config.path)
        return from_arrays(data_config.path, x, label, seed, data_config.get("num_classes", 0))
    if name == "image_folder":
        x, label = files.load_image_folder(data_config.path)
        return from_arrays(data_config.path, x, label, seed, data_config.get("num_classes", 0))
    known = sorted([*toy.GENERATORS, *TOKEN_DATA, *COUNT_DATA, "digits", "npz", "image_folder"])
    raise ValueError(f"config.data.name must be one of {known}, got {name!r}")

"""Checks on user and embedded data: each error names the array and the bad value."""

from __future__ import annotations

import numpy as np


def check_finite(name: str, x: np.ndarray) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must be finite, got {x[idx]} at index {idx} "
            f"({int(bad.sum())} non-finite values)"
        )


def check_rank(name: str, x: np.ndarray, ranks: tuple[int, ...]) -> None:
    if x.ndim not in ranks:
        raise ValueError(
            f"{name} must have rank {' or '.join(map(str, ranks))}, "
            f"got shape {x.shape} (rank {x.ndim})"
        )


def check_range(name: str, x: np.ndarray, lo: float, hi: float) -> None:
    mn, mx = float(x.min()), float(x.max())
    if mn < lo or mx > hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got min={mn:g}, max={mx:g}")


def check_labels(name: str, label: np.ndarray, num_classes: int, num_examples: int) -> None:
    if label.ndim != 1 or len(label) != num_examples:
        raise ValueError(f"{name} must have shape [{num_examples}], got {label.shape}")
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {label.dtype}")
    lo, hi = int(label.min()), int(label.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{name} must lie in [0, {num_classes - 1}], got min={lo}, max={hi}")


def check_tokens(name: str, x: np.ndarray, vocab_size: int) -> None:
    """Token sequences: an integer [N, L] array with every token in [0, vocab_size)."""
    if x.ndim != 2:
        raise ValueError(f"{name} must be token sequences [N, L], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must be integer token ids, got dtype {x.dtype}")
    if vocab_size < 1:
        raise ValueError(f"config.data.vocab_size must be positive for {name}, got {vocab_size}")
    bad = (x < 0) | (x >= vocab_size)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} holds token {int(x[idx])} at index {idx}, outside the vocabulary "
            f"[0, {vocab_size - 1}] (config.data.vocab_size={vocab_size}; {int(bad.sum())} bad)"
        )


def check_counts(name: str, x: np.ndarray, columns=None) -> np.ndarray:
    """Counts: a numeric [N, D] array of finite, non-negative integers (integer-valued floats are
    accepted exactly); returns int32. Errors name the column (and its name, if given)."""
    if x.ndim != 2:
        raise ValueError(f"{name} must be a count matrix [N, D], got shape {x.shape}")
    if x.dtype == bool or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name} must hold numbers, got dtype {x.dtype}")

    def where(bad, what):
        i, j = (int(v) for v in np.argwhere(bad)[0])
        col = f"column {j}" + (f" ({columns[j]!r})" if columns is not None else "")
        raise ValueError(
            f"counts must be non-negative integers, got {what} {x[i, j].item():g} in {col} of "
            f"{name} (row {i}; {int(bad.sum())} such values)"
        )

    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            where(bad, "non-finite")
    bad = x < 0
    if bad.any():
        where(bad, "negative")
    if np.issubdtype(x.dtype, np.floating):
        bad = x != np.floor(x)
        if bad.any():
            where(bad, "non-integer")
    if x.size and x.max() > np.iinfo(np.int32).max:
        where(x > np.iinfo(np.int32).max, "too large (int32)")
    return x.astype(np.int32)

"""Count-data quality: RBF-MMD on log1p counts, Wasserstein on PCA projections, per-feature mean /
variance / zero-fraction errors and the correlation-matrix error, each next to the same number
between two independent draws of the data."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def log1p(x) -> np.ndarray:
    return np.log1p(np.asarray(x, np.float64))


def rbf_mmd2(x, y, scales=(0.5, 1.0, 2.0, 4.0), bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 with the kernel sum_s exp(-|a - b|^2 / (2 (s h)^2)), h = the median
    pairwise distance of y (Gretton et al. 2012), on log1p counts."""
    x, y = log1p(x).astype(np.float32), log1p(y).astype(np.float32)
    return float(_rbf_mmd2(x, y, tuple(scales), bandwidth))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _rbf_mmd2(x, y, scales: tuple, bandwidth: float | None) -> jax.Array:
    def sq(a, b):
        return jnp.maximum(jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None] - 2 * a @ b.T, 0.0)

    dyy = sq(y, y)
    h2 = bandwidth**2 if bandwidth else jnp.median(dyy[jnp.triu_indices(len(y), 1)])

    def kernel(d):
        return sum(jnp.exp(-d / (2 * s * s * h2)) for s in scales)

    def off_diagonal_mean(k):
        n = k.shape[0]
        return (jnp.sum(k) - jnp.trace(k)) / (n * (n - 1))

    kxx, kyy, kxy = kernel(sq(x, x)), kernel(dyy), kernel(sq(x, y))
    return off_diagonal_mean(kxx) + off_diagonal_mean(kyy) - 2 * jnp.mean(kxy)


def pca_wasserstein(x, y, components: int = 10) -> float:
    """Mean over the top principal axes of y (log1p counts) of the 1-D W_1 between projections."""
    x, y = log1p(x), log1p(y)
    mean = y.mean(0)
    _, _, vt = np.linalg.svd(y - mean, full_matrices=False)
    axes = vt[: min(components, vt.shape[0])].T
    px, py = (x - mean) @ axes, (y - mean) @ axes
    n = min(len(px), len(py))
    q = (np.arange(n) + 0.5) / n
    return float(np.mean(np.abs(np.quantile(px, q, axis=0) - np.quantile(py, q, axis=0))))


def feature_statistics(x) -> dict:
    """Per-feature mean, variance and fraction of zeros."""
    x = np.asarray(x, np.float64)
    return {"mean": x.mean(0), "var": x.var(0), "zero_fraction": (x == 0).mean(0)}


def correlation(x) -> np.ndarray:
    """Pearson correlation of log1p counts (constant features count as uncorrelated)."""
    z = log1p(x)
    z = z - z.mean(0)
    sd = np.sqrt((z * z).mean(0))
    z = z / np.where(sd > 0, sd, 1.0)
    return (z.T @ z) / len(z)


def statistic_errors(x, y) -> dict:
    """|log1p mean|, |log1p variance| and |zero fraction| differences averaged over features, and
    the correlation-matrix error |C_x - C_y|_F / D."""
    sx, sy = feature_statistics(x), feature_statistics(y)
    d = np.asarray(x).shape[1]
    return {
        "mean_error": float(np.mean(np.abs(np.log1p(sx["mean"]) - np.log1p(sy["mean"])))),
        "var_error": float(np.mean(np.abs(np.log1p(sx["var"]) - np.log1p(sy["var"])))),
        "zero_fraction_error": float(np.mean(np.abs(sx["zero_fraction"] - sy["zero_fraction"]))),
        "correlation_error": float(np.linalg.norm(correlation(x) - correlation(y)) / d),
    }


def count_distances(x, y) -> dict:
    return {
        "mmd": rbf_mmd2(x, y),
        "pca_wasserstein": pca_wasserstein(x, y),
        **statistic_errors(x, y),
    }


def count_report(samples, reference) -> dict:
    """Every statistic of all samples vs reference[:m] next to reference[m:2m] vs reference[:m],
    m = min(len(samples), len(reference) // 2): a finite data set (digits: 1617 training rows)
    may hold fewer than two halves of the sample size."""
    samples = np.asarray(samples)
    reference = np.asarray(reference)
    m = min(len(samples), len(reference) // 2)
    if m < 2:
        raise ValueError(
            f"count_report needs at least 4 reference rows and 2 samples, got "
            f"{len(reference)} reference rows and {len(samples)} samples"
        )
    a, b = reference[:m], reference[m : 2 * m]
    model, data = count_distances(samples, a), count_distances(b, a)
    return {**model, **{f"{k}_data": v for k, v in data.items()}, "reference_rows": m}


KEYS = (
    "mmd",
    "pca_wasserstein",
    "mean_error",
    "var_error",
    "zero_fraction_error",
    "correlation_error",
)

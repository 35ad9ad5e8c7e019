"""Samples that depend only on their own key: a sampler run once per sample under `vmap`, so that
sample i drawn with key k_i is the same whatever batch, chunk or device it is drawn in."""

from __future__ import annotations

import jax
import numpy as np

from difflab.models.protocols import Conditioned


def independent(sampler):
    """`sampler(keys, denoiser, process, shape, cond, grid)` with keys [B]: x_i = sampler(k_i,
    ..., (1, *shape[1:]), cond_i)[0]. info keeps one entry per sample (`reduce_info` sums them)."""

    def run(keys, denoiser, process, shape, cond, grid):
        def one(key, c, proc):
            c = None if c is None else c[None]
            x, info = sampler(key, denoiser, proc, (1, *shape[1:]), c, grid)
            return x[0], info

        # a process with per-sample leaves (observations) gives each sample its own row
        batched = isinstance(process, Conditioned) and process.batched
        return jax.vmap(one, (0, 0, 0 if batched else None))(keys, cond, process)

    return run


def sample_keys(key, indices):
    """k_i = fold_in(key, i): sample i's key from the seed's key and its index alone."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, indices)


def reduce_info(info: dict) -> dict:
    """Per-sample info of `independent` (host arrays, one row per sample) as batch info: call
    counts (nfe, denoiser, classifier and value calls) are the most any sample took (the batch's
    passes), other counts are summed, per-example
    arrays (like `events`) keep one entry per sample."""
    out = {}
    for name, value in info.items():
        value = np.asarray(value)
        if value.ndim >= 2:
            out[name] = value.reshape(value.shape[0], *value.shape[2:])
        elif name in ("nfe", "denoiser_calls", "classifier_calls", "value_calls"):
            out[name] = value.max(initial=0)
        else:
            out[name] = value.sum()
    return out

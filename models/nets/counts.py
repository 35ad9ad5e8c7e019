"""The count net: log-rates of births and (per-capita) deaths for every coordinate of a count
vector, from library-size-aware log1p features, time and an optional label (docs/math.md §4.3)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from difflab.models.nets.mlp import MLP


def count_features(x):
    """[log1p(x), log1p(sum_d x_d)]: per-coordinate log counts and the log library size."""
    x = jnp.asarray(x, jnp.float32)
    library = jnp.log1p(jnp.sum(x, axis=-1, keepdims=True))
    return jnp.concatenate([jnp.log1p(x), library], axis=-1)


class CountNet(MLP):
    """x int [B, D] -> pred [B, D, 2] = (log birth rate, log per-capita death rate): the residual
    MLP on count_features with 2D outputs (same parameter names, so saved runs load).

    The head outputs log-rates directly. (Subtracting log t, as if the rates were remaining
    jumps / t, is wrong for the *marginal* rates, which stay bounded as t -> 0 because the
    expected remaining jumps are O(t): it made the C5 rate-learning test fail, RMSE 1.09 vs a
    typical rate of 6.0, and did not help on counts_cells.)"""

    def __init__(
        self,
        dim: int,
        width: int = 256,
        depth: int = 3,
        num_classes: int = 0,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            dim + 1, width, depth, num_classes, out_dim=2 * dim, dtype=dtype, rngs=rngs
        )

    def __call__(self, x, t, cond=None):
        return super().__call__(count_features(x), t, cond).reshape(*x.shape, 2)

"""The count net: log-rates of births and (per-capita) deaths for every coordinate of a count
vector, from library-size-aware log1p features, time and an optional label (MATH.md §4.3)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from models.nets.embeddings import Conditioning
from models.nets.mlp import ResidualBlock


def count_features(x):
    """[log1p(x), log1p(sum_d x_d)]: per-coordinate log counts and the log library size."""
    x = jnp.asarray(x, jnp.float32)
    library = jnp.log1p(jnp.sum(x, axis=-1, keepdims=True))
    return jnp.concatenate([jnp.log1p(x), library], axis=-1)


class CountNet(nnx.Module):
    """x int [B, D] -> pred [B, D, 2] = (log birth rate, log per-capita death rate).

    The conditional rates are (remaining jumps) / t, so the head predicts the log of the expected
    remaining births / per-capita deaths and the net subtracts log t (MATH.md §4.7: a model of
    E[x_0 - x_t | x_t] gives the birth rate / t); the 1/t blow-up near t = 0 is then exact rather
    than learned."""

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
        self.dtype = dtype
        self.dim = dim
        self.embed = Conditioning(width, num_classes, dtype=dtype, rngs=rngs)
        self.inp = nnx.Linear(dim + 1, width, dtype=dtype, rngs=rngs)
        self.blocks = nnx.List([ResidualBlock(width, dtype=dtype, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(width, 2 * dim, dtype=dtype, rngs=rngs)

    def __call__(self, x, t, cond=None):
        emb = nnx.silu(self.embed(t, cond))
        h = self.inp(count_features(x).astype(self.dtype))
        for block in self.blocks:
            h = block(h, emb)
        out = self.out(nnx.silu(self.norm(h))).astype(jnp.float32).reshape(*x.shape, 2)
        log_t = jnp.log(jnp.maximum(jnp.asarray(t, jnp.float32), 1e-6))
        return out - log_t.reshape(-1, *(1,) * (out.ndim - 1))

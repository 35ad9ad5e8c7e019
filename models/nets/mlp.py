"""Residual MLP for vector data, conditioned on time (and optionally a label)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from difflab.models.nets.embeddings import Conditioning


class ResidualBlock(nnx.Module):
    """h + W2 silu(W1 LN(h) + emb): a pre-norm residual block with additive conditioning."""

    def __init__(self, width: int, *, dtype, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        self.dense1 = nnx.Linear(width, width, dtype=dtype, rngs=rngs)
        self.cond = nnx.Linear(width, width, dtype=dtype, rngs=rngs)
        self.dense2 = nnx.Linear(width, width, dtype=dtype, rngs=rngs)

    def __call__(self, h, emb):
        y = nnx.silu(self.dense1(self.norm(h)) + self.cond(emb))
        return h + self.dense2(y)


class MLP(nnx.Module):
    """x [B, D] -> prediction [B, out_dim] (out_dim = D unless given)."""

    def __init__(
        self,
        dim: int,
        width: int = 256,
        depth: int = 3,
        num_classes: int = 0,
        step_conditioning: bool = False,
        time_scale: float = 1000.0,
        out_dim: int | None = None,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.dtype = dtype
        self.embed = Conditioning(
            width,
            num_classes,
            use_step=step_conditioning,
            time_scale=time_scale,
            dtype=dtype,
            rngs=rngs,
        )
        self.inp = nnx.Linear(dim, width, dtype=dtype, rngs=rngs)
        self.blocks = nnx.List([ResidualBlock(width, dtype=dtype, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(width, out_dim or dim, dtype=dtype, rngs=rngs)

    def __call__(self, x, t, cond=None, h=None):
        emb = nnx.silu(self.embed(t, cond, h))
        h = self.inp(x.astype(self.dtype))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nnx.silu(self.norm(h))).astype(jnp.float32)

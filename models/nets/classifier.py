"""A noise-conditional classifier network: data [B, ...] and t -> class logits [B, C]."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from difflab.models.nets.mlp import MLP


class ClassifierMLP(nnx.Module):
    """The residual MLP on the flattened input, time-conditioned, with C outputs."""

    def __init__(self, dim: int, width: int, depth: int, classes: int, *, dtype, rngs):
        self.mlp = MLP(dim, width, depth, out_dim=classes, dtype=dtype, rngs=rngs)

    def __call__(self, x, t, cond=None, h=None):
        del cond, h
        return self.mlp(x.reshape(x.shape[0], -1), t).astype(jnp.float32)

"""Noise-conditional heads: data [B, ...] and t -> class logits [B, C] (classifier guidance) or
one value [B, 1] (SVDD-MC)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from difflab.models.nets.mlp import MLP


class ClassifierMLP(nnx.Module):
    """The residual MLP on the flattened input (tokens: one-hot over vocab + 1 ids; a float
    input of that shape is taken as given, which first-order masked classifier guidance
    differentiates), time-conditioned, with `classes` outputs."""

    def __init__(
        self, dim: int, width: int, depth: int, classes: int, vocab: int = 0, *, dtype, rngs
    ):
        self.vocab = vocab
        self.mlp = MLP(dim, width, depth, out_dim=classes, dtype=dtype, rngs=rngs)

    def __call__(self, x, t, cond=None, h=None):
        del cond, h
        if self.vocab and not jnp.issubdtype(x.dtype, jnp.floating):
            x = jax.nn.one_hot(x, self.vocab + 1)  # tokens; float input is already one-hot
        return self.mlp(x.reshape(x.shape[0], -1), t).astype(jnp.float32)

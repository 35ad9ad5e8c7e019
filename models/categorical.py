"""Categorical sampling by Gumbel-max in float64 (docs/math.md §3.5; Zheng et al. 2024).

With float32 uniforms the largest u < 1 is 1 - 2^-23, so the Gumbel noise g = -log(-log u) is
capped at ~15.9 and categories whose logit lies more than ~16 below a competitor's are almost
never drawn: samples come out colder than the model. Here the uniforms carry 52 random bits and
the Gumbel-max runs in float64 (largest finite g = -log(-log(1 - 2^-53)) = 36.74), inside a local
`jax.enable_x64` context, so the rest of the program stays 32-bit. `float64=False` gives the
float32 behaviour, for measuring that skew.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_TWO_26 = 67108864.0
_TWO_52 = 4503599627370496.0


def uniform_from_bits(hi: jax.Array, lo: jax.Array) -> jax.Array:
    """u = (a 2^26 + b + 1/2) / 2^52 in float64, a, b the top 26 bits of two uint32 words: u in
    [2^-53, 1 - 2^-53], step 2^-52. (With 53 bits the all-ones draw gives 1 - 2^-54, which
    rounds to exactly 1.0 and a Gumbel of +inf.)"""
    with jax.enable_x64(True):
        a = (hi >> 6).astype(jnp.float64)
        b = (lo >> 6).astype(jnp.float64)
        return (a * _TWO_26 + b + 0.5) / _TWO_52


def uniform52(key: jax.Array, shape) -> jax.Array:
    """float64 uniforms in (0, 1) with 52 random bits (`uniform_from_bits`).

    Built from two uint32 draws, because 64-bit random bits cannot be generated inside a local
    x64 context under an outer jit (they are lowered after the context has closed).
    """
    bits = jax.random.bits(key, (2, *shape), jnp.uint32)
    return uniform_from_bits(bits[0], bits[1])


def gumbel_from_uniform(u: jax.Array) -> jax.Array:
    """g = -log(-log u): a standard Gumbel draw from a uniform u in (0, 1), in u's dtype."""
    return -jnp.log(-jnp.log(u))


def argmax_last(scores: jax.Array) -> jax.Array:
    """The first index of the maximum along the last axis, as int32 (no 64-bit iota under x64)."""
    ids = jnp.arange(scores.shape[-1], dtype=jnp.int32)
    top = jnp.max(scores, axis=-1, keepdims=True)
    return jnp.min(jnp.where(scores == top, ids, scores.shape[-1]), axis=-1)


def gumbel_max(logits: jax.Array, u: jax.Array) -> jax.Array:
    """argmax_v (logits_v + g(u_v)), computed in u's dtype (float64 or float32)."""
    with jax.enable_x64(u.dtype == jnp.float64):
        scores = logits.astype(u.dtype) + gumbel_from_uniform(u)
        if scores.dtype != u.dtype:
            raise TypeError(f"Gumbel-max scores must be {u.dtype}, got {scores.dtype}")
        return argmax_last(scores)


def categorical(key: jax.Array, logits: jax.Array, float64: bool = True) -> jax.Array:
    """x ~ Cat(softmax(logits)) over the last axis, int32; float64 Gumbel-max by default."""
    if float64:
        u = uniform52(key, logits.shape)
    else:
        u = jax.random.uniform(key, logits.shape, jnp.float32, minval=jnp.finfo(jnp.float32).tiny)
    return gumbel_max(logits, u)

"""Particle weights and resampling, all in log space (docs/math.md §7.1).

A resampling scheme maps (key, log-weights [N]) to ancestor indices a [N] with
E[#{n : a_n = j}] = N w_j, w = softmax(log-weights): multinomial, stratified, systematic
(the default: every offspring count is floor(N w_j) or ceil(N w_j)) and residual.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from difflab.models.categorical import argmax_last, uniform52


def normalized(log_w):
    """w = softmax(l), computed from l - max l."""
    return jax.nn.softmax(log_w)


def ess(log_w):
    """ESS = exp(2 LSE(l) - LSE(2 l)), in [1, N] (Kong et al.; docs/math.md §7.1)."""
    return jnp.exp(2.0 * jax.nn.logsumexp(log_w) - jax.nn.logsumexp(2.0 * log_w))


def log_mean_weight(log_w):
    """log (1/N sum_n exp l_n): the factor a resampling step contributes to log Z."""
    return jax.nn.logsumexp(log_w) - jnp.log(log_w.shape[0])


def offspring(ancestors, n: int):
    """How many copies of each particle the ancestor indices make: [N] counts."""
    return jnp.bincount(ancestors, length=n)


def weights64(log_w):
    """w_j = exp(l_j - max l) in float64 (unnormalised; zero exactly where l_j = -inf)."""
    with jax.enable_x64(True):
        log_w = log_w.astype(jnp.float64)
        return jnp.exp(log_w - jnp.max(log_w))


def select(w, positions):
    """a_n = the first j with C_j > p_n C_N, C the float64 cumulative sum of w (held flat
    across zero weights, so a weight of exactly 0 never has offspring), p_n in [0, 1); an
    index past the end (p_n C_N rounding up to C_N) goes to the last positive weight.

    float64 because float32 sums lose weights below half an ulp of the running sum: at
    N = 2^22 a particle of weight 0.01 / N beside ones of weight 1 / N got no offspring."""
    with jax.enable_x64(True):
        c = jnp.cumsum(w)
        c = jax.lax.cummax(jnp.where(w > 0, c, 0.0))
        a = jnp.searchsorted(c, positions * c[-1], side="right").astype(jnp.int32)
        return jnp.minimum(a, argmax_last(c))


def grid_positions(u, n: int):
    """p_k = (k + u_k) / N in float64 (float32 would round k + u_k to 0.5 above 2^22)."""
    with jax.enable_x64(True):
        return (jnp.arange(n, dtype=jnp.int32).astype(jnp.float64) + u) / n


def multinomial(key, log_w):
    """a_n ~ Cat(w) independently: inverse-CDF lookups of 52-bit uniforms u_n (O(N log N);
    jax.random.categorical with N draws would build an N x N array)."""
    return select(weights64(log_w), uniform52(key, log_w.shape))


def stratified(key, log_w):
    """p_n = (n + u_n) / N, u_n ~ U(0, 1) independently."""
    n = log_w.shape[0]
    return select(weights64(log_w), grid_positions(uniform52(key, (n,)), n))


def systematic(key, log_w):
    """p_n = (n + u) / N with one shared u ~ U(0, 1)."""
    n = log_w.shape[0]
    return select(weights64(log_w), grid_positions(uniform52(key, ()), n))


def residual(key, log_w):
    """floor(N w_j) copies of each j, then the remaining R = N - sum floor(N w_j) drawn
    multinomially from the residuals N w_j - floor(N w_j)."""
    n = log_w.shape[0]
    with jax.enable_x64(True):
        w = weights64(log_w)
        scaled = n * w / jnp.sum(w)
        copies = jnp.floor(scaled)
        slots = jnp.arange(n, dtype=jnp.int32)
        fixed = jnp.searchsorted(jnp.cumsum(copies), slots.astype(jnp.float64), side="right")
        fixed = jnp.minimum(fixed.astype(jnp.int32), n - 1)
        drawn = select(scaled - copies, uniform52(key, (n,)))
        return jnp.where(slots < jnp.sum(copies), fixed, drawn)


SCHEMES = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
}


def get(name: str):
    """The resampling scheme `name`."""
    if name not in SCHEMES:
        raise ValueError(f"resampling scheme must be one of {sorted(SCHEMES)}, got {name!r}")
    return SCHEMES[name]

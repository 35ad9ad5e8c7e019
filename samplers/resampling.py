"""Particle weights and resampling, all in log space (MATH.md §7.1).

A resampling scheme maps (key, log-weights [N]) to ancestor indices a [N] with
E[#{n : a_n = j}] = N w_j, w = softmax(log-weights): multinomial, stratified, systematic
(the default: every offspring count is floor(N w_j) or ceil(N w_j)) and residual.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normalized(log_w):
    """w = softmax(l), computed from l - max l."""
    return jax.nn.softmax(log_w)


def ess(log_w):
    """ESS = exp(2 LSE(l) - LSE(2 l)), in [1, N] (Kong et al.; MATH.md §7.1)."""
    return jnp.exp(2.0 * jax.nn.logsumexp(log_w) - jax.nn.logsumexp(2.0 * log_w))


def log_mean_weight(log_w):
    """log (1/N sum_n exp l_n): the factor a resampling step contributes to log Z."""
    return jax.nn.logsumexp(log_w) - jnp.log(log_w.shape[0])


def offspring(ancestors, n: int):
    """How many copies of each particle the ancestor indices make: [N] counts."""
    return jnp.bincount(ancestors, length=n)


def _inverse_cdf(log_w, positions):
    """a_n = searchsorted(cumsum(w), p_n, right), with the last cumulative weight set to 1 and
    indices clamped to N - 1 (float32 cumulative sums fall short of 1)."""
    n = log_w.shape[0]
    c = jnp.cumsum(normalized(log_w)).at[-1].set(1.0)
    return jnp.minimum(jnp.searchsorted(c, positions, side="right"), n - 1)


def multinomial(key, log_w):
    """a_n ~ Cat(w) independently: a_n = searchsorted(cumsum(w), u_n), u_n ~ U(0, 1) (O(N log N);
    jax.random.categorical with N draws would build an N x N array)."""
    return _inverse_cdf(log_w, jax.random.uniform(key, log_w.shape))


def stratified(key, log_w):
    """p_n = (n + u_n) / N, u_n ~ U(0, 1) independently."""
    n = log_w.shape[0]
    return _inverse_cdf(log_w, (jnp.arange(n) + jax.random.uniform(key, (n,))) / n)


def systematic(key, log_w):
    """p_n = (n + u) / N with one shared u ~ U(0, 1)."""
    n = log_w.shape[0]
    return _inverse_cdf(log_w, (jnp.arange(n) + jax.random.uniform(key)) / n)


def residual(key, log_w):
    """floor(N w_j) copies of each j, then the remaining R = N - sum floor(N w_j) drawn
    multinomially from the residuals N w_j - floor(N w_j)."""
    n = log_w.shape[0]
    scaled = n * normalized(log_w)
    copies = jnp.floor(scaled)
    fixed = jnp.minimum(jnp.searchsorted(jnp.cumsum(copies), jnp.arange(n), side="right"), n - 1)
    rest = scaled - copies
    drawn = multinomial(key, jnp.where(rest > 0, jnp.log(rest), -jnp.inf))
    return jnp.where(jnp.arange(n) < jnp.sum(copies), fixed, drawn)


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

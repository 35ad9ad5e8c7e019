"""Closed forms for Gaussian mixtures under Gaussian paths x_t = alpha_t x0 + sigma_t eps
(docs/math.md §8.1a-c): marginal density, score, posterior mean, exact velocity, 1-D flow map.

Used as exact denoisers by the oracle tests: a sampler driven by these must reproduce the mixture.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

from difflab.models.common import time_derivative


def _components(gmm, path, t):
    """Per-component (log w_k, alpha_t mu_k, C_k diagonal) at scalar or [B] time t."""
    t = jnp.asarray(t, jnp.float32)
    a, s = path.alpha(t), path.sigma(t)
    mu = jnp.asarray(gmm.means, jnp.float32)
    var = jnp.asarray(gmm.stds, jnp.float32) ** 2
    a_ = jnp.reshape(a, a.shape + (1, 1))
    s_ = jnp.reshape(s, s.shape + (1, 1))
    return jnp.log(jnp.asarray(gmm.weights, jnp.float32)), a_ * mu, a_**2 * var + s_**2


def _log_normals(x, mean, cov):
    """log N(x; mean_k, diag cov_k) for x [B, D] -> [B, K]."""
    diff = x[:, None, :] - mean
    return -0.5 * jnp.sum(diff**2 / cov + jnp.log(2 * jnp.pi * cov), axis=-1)


def responsibilities(gmm, path, x, t):
    """r_k(x, t) = softmax_k(log pi_k + log N(x; alpha_t mu_k, C_k))."""
    return jnp.exp(log_responsibilities(gmm, path, x, t))


def log_responsibilities(gmm, path, x, t):
    """log r_k(x, t) = log p(k | x_t): the exact noise-conditional classifier of a mixture whose
    components are the classes (docs/math.md A10)."""
    logw, mean, cov = _components(gmm, path, t)
    return jax.nn.log_softmax(logw + _log_normals(x, mean, cov), axis=-1)


def log_density(gmm, path, x, t):
    """log p_t(x) = logsumexp_k(log pi_k + log N(x; alpha_t mu_k, C_k))."""
    logw, mean, cov = _components(gmm, path, t)
    return jax.nn.logsumexp(logw + _log_normals(x, mean, cov), axis=-1)


def score(gmm, path, x, t):
    """grad log p_t(x) = -sum_k r_k C_k^-1 (x - alpha_t mu_k)."""
    logw, mean, cov = _components(gmm, path, t)
    r = jax.nn.softmax(logw + _log_normals(x, mean, cov), axis=-1)
    return -jnp.sum(r[..., None] * (x[:, None, :] - mean) / cov, axis=1)


def velocity(gmm, path, x, t):
    """u = sum_k r_k [alpha' mu_k + (alpha alpha' Sigma_k + sigma sigma') C_k^-1 (x - alpha mu_k)].

    The component form, smooth at t = 0 and t = 1 (docs/math.md §8.1a).
    """
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
    logw, mean, cov = _components(gmm, path, t)
    r = jax.nn.softmax(logw + _log_normals(x, mean, cov), axis=-1)
    a, s = path.alpha(t)[:, None, None], path.sigma(t)[:, None, None]
    da = time_derivative(path.alpha, t)[:, None, None]
    ds = time_derivative(path.sigma, t)[:, None, None]
    mu = jnp.asarray(gmm.means, jnp.float32)
    var = jnp.asarray(gmm.stds, jnp.float32) ** 2
    comp = da * mu + (a * da * var + s * ds) / cov * (x[:, None, :] - mean)
    return jnp.sum(r[..., None] * comp, axis=1)


def posterior_mean(gmm, path, x, t):
    """x_hat = E[x0 | x_t = x] = sum_k r_k [mu_k + alpha_t Sigma_k C_k^-1 (x - alpha_t mu_k)]."""
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
    logw, mean, cov = _components(gmm, path, t)
    r = jax.nn.softmax(logw + _log_normals(x, mean, cov), axis=-1)
    a = path.alpha(t)[:, None, None]
    var = jnp.asarray(gmm.stds, jnp.float32) ** 2
    comp = jnp.asarray(gmm.means, jnp.float32) + a * var / cov * (x[:, None, :] - mean)
    return jnp.sum(r[..., None] * comp, axis=1)


def velocity_denoiser(gmm, path):
    """The exact velocity as a difflab denoiser (xt, t, cond) -> u."""
    return lambda xt, t, cond=None: velocity(gmm, path, xt, t)


def exact_denoiser(gmm, process):
    """The exact prediction in the process's own parameterization: velocity for flows; eps,
    x0 or v for diffusion (from the closed-form score and posterior mean)."""
    kind = getattr(process, "parameterization", "velocity")
    path = getattr(process, "path", None)
    if kind == "velocity" and path is not None and path.gamma is not None:
        # a stochastic interpolant's network predicts the drift b from the posterior mean
        return lambda xt, t, cond=None: process.drift_from_x0(
            posterior_mean(gmm, process, xt, t), xt, t
        )
    if kind == "velocity":
        return velocity_denoiser(gmm, process)

    def denoiser(xt, t, cond=None):
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), xt.shape[:1])
        a, s = process.alpha(t)[:, None], process.sigma(t)[:, None]
        x0 = posterior_mean(gmm, process, xt, t)
        eps = -s * score(gmm, process, xt, t)
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0}[kind]

    return denoiser


# -- 1-D exact flow map (float64 numpy) --------------------------------------------------------


def cdf_1d(gmm, path, x, t):
    """F_t(x) = sum_k pi_k Phi((x - alpha_t mu_k) / sqrt(C_k))."""
    a, s = float(path.alpha(t)), float(path.sigma(t))
    mu, sd = np.asarray(gmm.means)[:, 0], np.asarray(gmm.stds)[:, 0]
    scale = np.sqrt(a**2 * sd**2 + s**2)
    z = (np.asarray(x, np.float64)[..., None] - a * mu) / scale
    return np.sum(np.asarray(gmm.weights) * ndtr(z), axis=-1)


def flow_map_1d(gmm, path, x, t: float, r: float, iters: int = 80):
    """Phi_{t->r}(x) = F_r^-1(F_t(x)) by bisection in float64 (docs/math.md §8.1b)."""
    target = cdf_1d(gmm, path, x, t)
    a, s = float(path.alpha(r)), float(path.sigma(r))
    mu, sd = np.asarray(gmm.means)[:, 0], np.asarray(gmm.stds)[:, 0]
    width = 12 * np.max(np.sqrt(a**2 * sd**2 + s**2))
    lo = np.full_like(target, np.min(a * mu) - width)
    hi = np.full_like(target, np.max(a * mu) + width)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = cdf_1d(gmm, path, mid, r) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)

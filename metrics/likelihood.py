"""Exact log-likelihood through the probability-flow ODE, and bits per dimension (docs/math.md
§2.5).

Integrate the augmented state (x, l) forward from t_min to 1 with dx/dt = u(x, t) and
dl/dt = div u(x, t); then log p_0(x_0) = log p_1(x_1) + l(1), p_1 = N(0, sigma_1^2 I).
Works for every process that exposes a velocity (flow matching and diffusion). Sources: Chen et al.
(Neural ODEs); Grathwohl et al. (FFJORD, Hutchinson estimator); Song et al. (score SDE).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from difflab.samplers.solvers import Bound, solve_ode


def exact_divergence(velocity, x, t, cond=None):
    """div u = tr(du/dx) per example, by a forward-mode Jacobian (small dimensions).

    velocity(x, t, cond) acts on a batch; each example is differentiated with its own condition.
    """
    shape = x.shape[1:]

    def single(xi, ci):
        ci = jax.tree.map(lambda c: c[None], ci)
        return velocity(xi[None], t, ci)[0].reshape(-1)

    jac = jax.vmap(jax.jacfwd(single))(x, cond)  # [B, d, *shape]
    d = math.prod(shape)
    return jnp.trace(jac.reshape(x.shape[0], d, d), axis1=1, axis2=2)


def hutchinson_divergence(velocity, x, t, probe):
    """div u ~ eps^T (du/dx) eps with a fixed probe eps (Hutchinson; FFJORD)."""
    u, jvp = jax.jvp(lambda y: velocity(y, t), (x,), (probe,))
    return jnp.sum((probe * jvp).reshape(x.shape[0], -1), axis=1), u


def log_likelihood(
    denoiser,
    process,
    x0,
    cond=None,
    *,
    key=None,
    divergence: str = "exact",
    num_probes: int = 1,
    probe: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "tsit5",
    max_steps: int = 8192,
):
    """log p_0(x0) in nats per example; Hutchinson estimates average `num_probes` solves, each
    with its probe drawn once and kept fixed along the trajectory (an argument of the solve).

    Returns (log_p [B], info) with info["nfe"] summed over solves.
    """
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    model = Bound(denoiser, process, cond)
    x0 = jnp.asarray(x0, jnp.float32)

    def velocity(x, t, c):
        return Bound(denoiser, process, c).velocity(x, t)

    d = math.prod(x0.shape[1:])
    t0, t1 = float(process.t_min), 1.0
    sigma1 = process.sigma(t1)

    def prior_logp(x1):
        sq = jnp.sum(jnp.square(x1).reshape(x1.shape[0], -1), axis=1)
        return -0.5 * sq / sigma1**2 - 0.5 * d * jnp.log(2 * jnp.pi * sigma1**2)

    def solve(eps):
        def field(t, state, eps):
            x, _ = state
            if eps is None:
                return model.velocity(x, t), exact_divergence(velocity, x, t, cond)
            div, u = hutchinson_divergence(model.velocity, x, t, eps)
            return u, div

        (x1, ell), nfe = solve_ode(
            field,
            (x0, jnp.zeros(x0.shape[0])),
            t0,
            t1,
            solver=solver,
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
            args=eps,
        )
        return prior_logp(x1) + ell, nfe

    if divergence == "exact":
        logp, nfe = solve(None)
        return logp, {"nfe": nfe}
    if key is None:
        raise ValueError("the Hutchinson estimator needs a random key for its probes")
    draw = jax.random.rademacher if probe == "rademacher" else jax.random.normal
    probes = draw(key, (num_probes, *x0.shape), dtype=jnp.float32)
    logps, nfes = jax.lax.map(solve, probes)
    return jnp.mean(logps, axis=0), {"nfe": jnp.sum(nfes), "per_probe": logps}


def bits_per_dim(nll_nats, d: int, bin_width: float | None = None):
    """bpd = (NLL - d log bin_width) / (d ln 2): with uniform dequantisation of data on a grid of
    spacing bin_width this bounds the discrete negative log-likelihood (docs/math.md §2.5)."""
    offset = 0.0 if bin_width is None else -d * math.log(bin_width)
    return (nll_nats + offset) / (d * math.log(2))


def dequantize(key, x, bin_width: float):
    """x + bin_width (u - 1/2), u ~ U(0, 1): uniform dequantisation of grid-valued data."""
    return x + bin_width * (jax.random.uniform(key, x.shape) - 0.5)

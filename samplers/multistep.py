"""Multistep solvers of the probability-flow ODE in data prediction (docs/math.md §1.5f): they
reuse the denoised estimates of earlier steps, so one network call per step buys second or third
order. With lambda = log(alpha / sigma) and h = lambda_s - lambda_t on a step t -> s, the exact
solution is x_s = (sigma_s / sigma_t) x_t + alpha_s int e^(lambda - lambda_s) x_hat d lambda, and:

- `dpmpp_2m`, `dpmpp_3m` (DPM-Solver++, Lu et al. 2022): x_hat extrapolated linearly (2M) or
  quadratically (3M) in lambda from the last two or three estimates;
- `dpmpp_2m_sde`: the SDE variant (noise scale 1), one call per step, so particle methods can
  propagate with it;
- `unipc` (UniPC-bh2, Zhao et al. 2023): the 2M predictor, then a corrector that reuses the next
  step's network call (at the predicted point) to refine the state: order 3 at one call per step.

Each starts at lower order while the history fills and, like every sampler here, returns the
denoised estimate on the final step to t_min. Every Gaussian family runs them
through its own conversions (`process.x0_eps`), whatever the network predicts.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from difflab.samplers.solvers import Step, make_sampler


class History(NamedTuple):
    """What a multistep solver carries between steps: the last three estimates x_hat (newest
    first), the last two steps in lambda, and how many steps are done; per sample (steps and
    counts [B, 1, ...], broadcasting against x), so particle methods can resample it."""

    m: tuple  # (x_hat at t_{k-1}, t_{k-2}, t_{k-3})
    h: tuple  # (lambda_{k-1} - lambda_{k-2}, lambda_{k-2} - lambda_{k-3})
    k: jax.Array


def half_log_snr(process, t):
    """lambda_t = log(alpha_t / sigma_t) (-inf at a flow's t = 1, +inf at its t = 0)."""
    return 0.5 * process.log_snr(t)


def phi(h):
    """(1 - e^-h, (e^-h - 1) / h + 1, (e^-h - 1 + h) / h^2 - 1/2): the exponential integrator's
    weights of x_hat and its first two derivatives in lambda over a step h (series below h =
    0.05, where the direct forms cancel in float32; their limits at h = +inf)."""
    e = jnp.expm1(-h)
    small = h < 0.05
    hs = jnp.where(small, 1.0, h)  # no 0/0 in the unused branch
    c1 = jnp.where(small, h / 2 - h**2 / 6 + h**3 / 24, e / hs + 1.0)
    c2 = jnp.where(small, -h / 6 + h**2 / 24 - h**3 / 120, (e + hs) / hs**2 - 0.5)
    c1, c2 = jnp.where(jnp.isinf(h), 1.0, c1), jnp.where(jnp.isinf(h), -0.5, c2)
    return -e, c1, c2


def data_step(process, x, t, s, d0, d1=None, d2=None):
    """x_s = (sigma_s / sigma_t) x_t + alpha_s [(1 - e^-h) d0 + c1(h) d1 - c2(h) d2], the
    DPM-Solver++ update (Lu et al. 2022) with the derivative terms d1, d2 of x_hat in lambda
    (scaled by h and h^2 / 2 as they write them); h = +inf from a flow's t = 1 is exact."""
    h = half_log_snr(process, s) - half_log_snr(process, t)
    w0, c1, c2 = phi(h)
    out = process.sigma(s) / process.sigma(t) * x + process.alpha(s) * w0 * d0
    if d1 is not None:
        out = out + process.alpha(s) * c1 * d1
    if d2 is not None:
        out = out - process.alpha(s) * c2 * d2
    return out


def differences(m, h_now, h):
    """(d1 of 2M, d1 of 3M, d2 of 3M): divided differences of x_hat in lambda scaled to the step
    h_now (Lu et al.'s D1, D2), from the estimates m (newest first) and the past steps h; written
    with ratios of steps, so that an infinite past step (from a flow's t = 1) makes them 0."""
    d1_0 = h_now / h[0] * (m[0] - m[1])
    d1_1 = h_now / h[1] * (m[1] - m[2])
    d2 = h_now / (h[0] + h[1]) * (d1_0 - d1_1)
    return 0.5 * d1_0, d1_0 + h[0] / (h[0] + h[1]) * (d1_0 - d1_1), d2


def finished(process, s, x, x_hat):
    """The denoised estimate x_hat on the final step (s at the process's t_min, where lambda is
    +inf or far larger than before: an extrapolation over that step would blow up), else x; as
    every sampler of difflab ends (`solvers.final_or`)."""
    return jnp.where(s <= process.t_min, x_hat, x)


def empty(x) -> History:
    """No past estimates yet (their steps infinite, so every difference is 0)."""
    zeros = jnp.zeros_like(x)
    inf = jnp.full(per_sample(x), jnp.inf, jnp.float32)
    return History((zeros, zeros, zeros), (inf, inf), jnp.zeros(per_sample(x), jnp.int32))


def per_sample(x) -> tuple:
    """[B, 1, ...]: the shape of a per-sample scalar broadcasting against x."""
    return x.shape[:1] + (1,) * (x.ndim - 1)


def remembered(model, x, t, s, history: History):
    """(the estimates with x_hat(x_t, t) first, the step h = lambda_s - lambda_t in lambda, per
    sample)."""
    m = (model.x0_eps(x, t)[0], *history.m[:2])
    h = half_log_snr(model.process, s) - half_log_snr(model.process, t)
    return m, jnp.broadcast_to(h, per_sample(x))


def dpmpp_step(order: int) -> Step:
    """DPM-Solver++(order M), order 1, 2 or 3 (1 = DDIM with eta = 0): one network call per
    step, the order lowered while the history fills."""
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3, got {order}")

    def move(key, model, x, t, s, history):
        del key
        p = model.process
        m, h_now = remembered(model, x, t, s, history)
        d1_2m, d1, d2 = differences(m, h_now, history.h)
        use = jnp.minimum(order, history.k + 1)
        x_s = jnp.where(
            use == 1,
            data_step(p, x, t, s, m[0]),
            jnp.where(
                use == 2, data_step(p, x, t, s, m[0] + d1_2m), data_step(p, x, t, s, m[0], d1, d2)
            ),
        )
        return finished(p, s, x_s, m[0]), History(m, (h_now, history.h[0]), history.k + 1)

    return Step(move, nfe=1, start=empty)


def dpmpp_2m_sde_step() -> Step:
    """DPM-Solver++(2M) SDE (midpoint form, noise scale 1): x_s = (sigma_s / sigma_t) e^-h x_t +
    alpha_s (1 - e^-2h) (x_hat + d1) + sigma_s sqrt(1 - e^-2h) xi, d1 = h / (2 h_prev) (x_hat -
    x_hat_prev); its first-order step is the DDPM posterior draw. One call per step, so particle
    methods propagate with it (the history is resampled with the particles)."""

    def move(key, model, x, t, s, history):
        p = model.process
        m, h_now = remembered(model, x, t, s, history)
        d1 = differences(m, h_now, history.h)[0]
        keep = -jnp.expm1(-2.0 * h_now)  # 1 - e^-2h
        d = jnp.where(history.k == 0, m[0], m[0] + d1)
        x_s = p.sigma(s) / p.sigma(t) * jnp.exp(-h_now) * x + p.alpha(s) * keep * d
        x_s = x_s + p.sigma(s) * jnp.sqrt(keep) * jax.random.normal(key, x.shape)
        return finished(p, s, x_s, m[0]), History(m, (h_now, history.h[0]), history.k + 1)

    return Step(move, nfe=1, start=empty)


def dpmpp(order: int):
    """DPM-Solver++(order M) as a sampler `(key, denoiser, process, shape, cond, grid) -> (x,
    info)` (`dpmpp_step`)."""
    return make_sampler(dpmpp_step(order))


def dpmpp_2m_sde():
    """DPM-Solver++(2M) SDE as a sampler (`dpmpp_2m_sde_step`)."""
    return make_sampler(dpmpp_2m_sde_step())


def unic_weights(h, h_prev):
    """(rho_prev, rho_now): UniC's weights (bh2, order 2) of the two divided differences, from
    the linear system R rho = b of Zhao et al. with r = -h_prev / h; order 1 (rho_now alone,
    h_prev infinite) where there is one difference."""
    hh = -h
    e = jnp.expm1(hh)
    small = h < 0.05
    hs = jnp.where(small, -1.0, hh)
    # b1 = (phi_1(hh) / hh - 1) / B_h, b2 = 2 ((phi_1 / hh - 1) / hh - 1/2) / B_h, B_h = e^hh - 1
    k1 = jnp.where(small, hh / 2 + hh**2 / 6 + hh**3 / 24, e / hs - 1.0)
    k2 = jnp.where(small, hh / 6 + hh**2 / 24 + hh**3 / 120, (e / hs - 1.0) / hs - 0.5)
    b1 = jnp.where(jnp.isinf(h), 1.0, k1 / e)
    b2 = jnp.where(jnp.isinf(h), 1.0, 2.0 * k2 / e)
    r = -h_prev / h
    rho_prev = jnp.where(jnp.isinf(h_prev) | jnp.isinf(h), 0.0, (b1 - b2) / (1.0 - r))
    return rho_prev, b1 - rho_prev


class Predicted(NamedTuple):
    """UniPC's carry: the corrected state and time the last prediction left from, and the
    multistep history."""

    x_prev: jax.Array
    t_prev: jax.Array
    history: History


def unipc_step() -> Step:
    """UniPC-bh2 (Zhao et al. 2023): each step's network call at the predicted x_t first corrects
    the step that led there (UniC: x_t = (sigma_t / sigma_p) x_p + alpha_t (1 - e^-h) (x_hat_p
    + rho_prev D_prev + rho_now (x_hat_t - x_hat_p))), then predicts the next point with the 2M
    step from the corrected x_t; the last step is not corrected (it would cost a call). One call
    per step."""

    def start(x):
        return Predicted(x, jnp.full(per_sample(x), jnp.inf, jnp.float32), empty(x))

    def move(key, model, x_pred, t, s, carry):
        del key
        p, history = model.process, carry.history
        m, h_now = remembered(model, x_pred, t, s, history)
        h, h_pp = history.h  # the last step (t_prev -> t) and the one before
        rho_prev, rho_now = unic_weights(h, h_pp)
        d_prev = jnp.where(jnp.isinf(h_pp), 0.0, h / h_pp) * (m[1] - m[2])
        t_prev = jnp.where(history.k > 0, carry.t_prev, t)
        update = m[1] + rho_prev * d_prev + rho_now * (m[0] - m[1])
        x = jnp.where(history.k > 0, data_step(p, carry.x_prev, t_prev, t, update), x_pred)
        d1 = differences(m, h_now, history.h)[0]
        x_next = data_step(p, x, t, s, jnp.where(history.k == 0, m[0], m[0] + d1))
        x_next = finished(p, s, x_next, m[0])
        t_now = jnp.broadcast_to(t, per_sample(x))
        return x_next, Predicted(x, t_now, History(m, (h_now, h), history.k + 1))

    return Step(move, nfe=1, start=start)


def unipc():
    """UniPC-bh2 as a sampler (`unipc_step`)."""
    return make_sampler(unipc_step())

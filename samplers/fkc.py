"""Feynman-Kac correctors for the Gaussian families (docs/math.md §7.4; Skreta et al. 2025).

Experts p^(i)_t that share the forward process (scores s_i), exponents beta_i, B = sum_i beta_i:
the target path q_t ~ prod_i p^(i)_t^beta_i is sampled by particles that follow the
marginal-preserving reverse SDE of the guided score S = sum_i beta_i s_i,

    x_s = x_t - h [f_t x - (1 + eta^2)/2 g_t^2 S] + eta g_t sqrt(h) xi,      h = t - s,

and carry log-weights l += h G_t(x_t) with (the box of §7.4)

    G_t(x) = (B - 1) f_t d + 1/2 g_t^2 (||S||^2 - sum_i beta_i ||s_i||^2),

inside the SMC particle system (`samplers.smc`). Instances: annealing p^beta (one expert),
products and geometric averages p1^a p2^b of two models, and the CFG target
p(x)^(1 - w) p(x | c)^w (the conditional and unconditional passes of one network, in one
batched call). Flow models give scores from velocities (their `score`), away from the endpoints.
eta must be > 0 (with eta = 0 resampled copies never separate) and at least `eta_bound(betas)`
(eta^2 >= 1 - 1/B, or 1 - 1/w for the CFG target; below it the weighted population moves away
from the target: docs/fkc_stability.md). Increments may be clamped
(centred and clipped; biased, off by default) and restricted to a t-window.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from difflab.models.mixing import conditional_and_null
from difflab.samplers.smc import Potential, smc
from difflab.samplers.solvers import Bound, Step, em_move


def experts(*denoisers):
    """One denoiser whose prediction stacks those of several models, batch first: [B, E, ...]."""

    def stacked(x, t, cond=None):
        return jnp.stack([d(x, t, cond) for d in denoisers], axis=1)

    stacked.network_passes = len(denoisers)
    return stacked


def cfg_experts(denoiser):
    """The conditional and unconditional predictions of one network, stacked [B, 2, ...], from
    one call on the doubled batch [x; x] with labels [c; null]."""

    def stacked(x, t, cond=None):
        return jnp.stack(conditional_and_null(denoiser, x, t, cond), axis=1)

    stacked.network_passes = 2
    return stacked


def expert_scores(model, pred, x, t):
    """s_i = grad log p^(i)_t(x) for each stacked prediction [B, E, ...] (`experts`), or for one
    model's prediction [B, ...] (the rank of x): [B, E, ...]."""
    stacked = pred if pred.ndim == x.ndim + 1 else pred[:, None]
    return jax.vmap(lambda p: model.process.score(p, x, t), in_axes=1, out_axes=1)(stacked)


def guided_score(betas, scores):
    """S = sum_i beta_i s_i."""
    if len(betas) != scores.shape[1]:
        raise ValueError(
            f"{len(betas)} exponents need as many experts, got a prediction of "
            f"{scores.shape[1]} stacked experts (stack them with samplers.fkc.experts)"
        )
    return jnp.einsum("e,be...->b...", jnp.asarray(betas, jnp.float32), scores)


def coefficients(process, x, t):
    """(f_t, g_t^2 / 2) at a scalar time t, as scalars."""
    return tuple(jnp.reshape(v, ()) for v in process.drift_and_diffusion(x[:1], t))


def corrector_rate(betas, scores, f, half_g2):
    """G_t(x) = (B - 1) f_t d + 1/2 g_t^2 (||S||^2 - sum_i beta_i ||s_i||^2), per example."""
    b = jnp.asarray(betas, jnp.float32)
    per_example = lambda v, first: jnp.sum(v**2, axis=tuple(range(first, v.ndim)))
    spread = per_example(guided_score(betas, scores), 1) - per_example(scores, 2) @ b
    d = math.prod(scores.shape[2:])
    return (jnp.sum(b) - 1.0) * f * d + half_g2 * spread


@dataclasses.dataclass(frozen=True)
class GuidedModel(Bound):
    """The bound experts whose score is the guided S = sum_i beta_i s_i."""

    betas: tuple = ()

    def score(self, x, t):
        return guided_score(self.betas, expert_scores(self, self.pred(x, t), x, t))


def guided_move(betas, eta: float):
    """The reverse SDE step (solvers.em_move) of the guided score S (noise scale eta)."""

    def move(key, model, x, t, s):
        pred = model.pred(x, t)  # the step's one evaluation (reused under SMC)
        guided = GuidedModel(lambda *_: pred, model.process, model.cond, tuple(betas))
        return em_move(key, guided, x, t, s, eta)

    return Step(move, nfe=1)


def clamped(log_g, bound):
    """Centred increments clipped to [-bound, bound] (biases the target; docs/math.md §7.4)."""
    return jnp.clip(log_g - jnp.mean(log_g), -bound, bound)


def corrector_weights(betas, clamp=None, window=(0.0, 1.0)) -> Potential:
    """log G = h G_t(x_t) for steps that start inside the t-window (else 0)."""

    def step(key, model, pred, x, t, s, memory):
        del key
        f, half_g2 = coefficients(model.process, x, t)
        rate = corrector_rate(betas, expert_scores(model, pred, x, t), f, half_g2)
        log_g = (t - s) * rate
        log_g = log_g if clamp is None else clamped(log_g, clamp)
        inside = (t >= window[0]) & (t <= window[1])
        return jnp.where(inside, log_g, 0.0), memory

    return Potential(
        start=lambda x: (), step=step, final=lambda key, model, x, memory: jnp.zeros(x.shape[:1])
    )


def tempered_init(total):
    """x ~ N(0, sigma_t^2 / B): the normalised product of the experts' t = 1 marginals when
    alpha_1 ~ 0."""

    def init(key, process, shape, t):
        return process.prior(key, shape, t) / jnp.sqrt(total)

    return init


def eta_bound(betas) -> float:
    """The smallest stable noise scale: eta^2 >= sup (1 - Q / P^2) over Gaussian experts with
    precisions u_i, P = sum_i beta_i u_i, Q = sum_i beta_i u_i^2 (docs/fkc_stability.md).
    Non-negative exponents: sqrt(max(0, 1 - 1/B)) (equal precisions, the t -> 1 limit); with
    negative exponents, their experts as broad as or broader than the others (the CFG
    target's unconditional model), the supremum over their relative precision r in [0, 1]
    (CFG at w > 1: sqrt(1 - 1/w))."""
    b = np.asarray(betas, np.float64)
    pos, neg = float(b[b > 0].sum()), float(b[b < 0].sum())
    r = np.linspace(0.0, 1.0, 10_001) if neg else np.ones(1)
    precision = pos + neg * r
    r, precision = r[precision > 0], precision[precision > 0]
    if not len(r):
        return math.inf
    worst = np.max(1.0 - (pos + neg * r**2) / precision**2)
    return math.sqrt(max(0.0, float(worst)))


def check(betas, eta, clamp, window):
    if len(betas) < 1:
        raise ValueError("Feynman-Kac correctors need at least one expert exponent, got none")
    if not eta > 0:
        raise ValueError(
            f"Feynman-Kac correctors need eta > 0 (with eta = 0 resampled copies never separate "
            f"and the population collapses), got eta={eta}"
        )
    if not sum(betas) > 0:
        raise ValueError(f"the exponents must have a positive sum, got {list(betas)}")
    bound = eta_bound(betas)
    if eta < bound:
        raise ValueError(
            f"eta={eta:g} is below the stability bound eta >= {bound:.4g} of the exponents "
            f"{list(betas)}: the weighted population drifts from the target there (eta^2 >= 1 - "
            f"1/B for B = sum of non-negative exponents, 1 - 1/w for the CFG target; "
            f"docs/fkc_stability.md)"
        )
    if clamp is not None and not clamp > 0:
        raise ValueError(f"clamp must be a positive bound on the increments, got {clamp}")
    if not 0.0 <= window[0] < window[1] <= 1.0:
        raise ValueError(f"window must be (t_lo, t_hi) with 0 <= t_lo < t_hi <= 1, got {window}")


def fkc(betas, eta: float = 1.0, clamp=None, window=(0.0, 1.0), init=None, **smc_settings):
    """The FKC-SMC sampler for prod_i p^(i)^beta_i.

    Args:
        betas: the exponents beta_i, one per expert (annealing: one).
        eta: the SDE's noise scale, at least `eta_bound(betas)` (docs/fkc_stability.md).
        clamp, window: optional clipping of the increments and the t-window they act on.
        init: the particles' start (default: the tempered prior N(0, sigma_1^2 / B)).
        smc_settings: scheme, ess_threshold, resample_every, output, mesh (`samplers.smc`).

    Returns:
        sampler(key, denoiser, process, shape, cond, grid) -> (x [shape], info) whose denoiser
        gives the experts' predictions stacked [B, E, ...] (`experts`, `cfg_experts`) or, for
        one expert, the model's own [B, ...]; info as `samplers.smc.smc` (log_z, ess, ...).
    """
    betas = tuple(float(b) for b in betas)
    check(betas, eta, clamp, window)
    potential = corrector_weights(betas, clamp, tuple(window))
    start = init or tempered_init(sum(betas))
    return smc(guided_move(betas, eta), potential, init=start, **smc_settings)

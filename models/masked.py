"""Masked (absorbing-state) diffusion for discrete tokens (docs/math.md §3; MDLM, MD4).

Tokens x in {0..V-1}^L, mask id m = V. Each position is masked independently with probability
1 - alpha_t, and masked positions stay masked going forward. The network gives logits over the
V real tokens (the mask is never predicted), and unmasked positions are carried over ("SUBS").
Sources: Sahoo et al. (MDLM); Shi et al. (MD4); Zheng et al. 2024 (time-agnostic denoiser).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from difflab.models.categorical import categorical
from difflab.models.common import (
    TokenNelbo,
    antithetic_times,
    invert_decreasing,
    time_derivative,
)

# A large negative *finite* log-probability for impossible tokens (-inf breaks bfloat16 math).
NEG = -1e9

# -- schedules, written through the mask probability 1 - alpha_t (accurate near t = 0) ----------


@dataclasses.dataclass(frozen=True)
class MaskSchedule:
    """1 - alpha_t = (1 - 2 eps) m(t) + eps for an increasing m with m(0) = 0, m(1) = 1.

    eps > 0 is MD4's clip (alpha_0 = 1 - eps, alpha_1 = eps); eps = 0 gives the exact endpoints.
    """

    name: str
    m: Callable[[jax.Array], jax.Array]
    eps: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.eps < 0.5:
            raise ValueError(
                f"mask schedule clip eps (config.process.mask_eps) must lie in [0, 0.5), "
                f"got {self.eps}"
            )

    def mask_prob(self, t):
        """1 - alpha_t: the probability that a position is masked at time t."""
        return (1.0 - 2.0 * self.eps) * self.m(jnp.asarray(t, jnp.float32)) + self.eps

    def alpha(self, t):
        return 1.0 - self.mask_prob(t)

    def weight(self, t):
        """w(t) = -alpha'_t / (1 - alpha_t), the continuous-time ELBO weight (MD4); >= 0 (the
        mask probability never decreases), so float32 rounding below 0 is clamped (cosine at
        t = 1: cos(pi / 2) gave -6.9e-8)."""
        return jnp.maximum(time_derivative(self.mask_prob, t) / self.mask_prob(t), 0.0)

    def unmask_prob(self, s, t):
        """p_u(s, t) = (alpha_s - alpha_t) / (1 - alpha_t): a position masked at t is unmasked at
        s < t with this probability."""
        return (self.mask_prob(t) - self.mask_prob(s)) / self.mask_prob(t)

    def time_of_mask_prob(self, target):
        """The t with 1 - alpha_t = target (0 if target is below the clip eps)."""
        return invert_decreasing(lambda t: -self.mask_prob(t), -jnp.asarray(target, jnp.float32))


def linear(eps: float = 0.0) -> MaskSchedule:
    """alpha_t = 1 - t, w = 1/t (MD4's text default; MDLM's log-linear)."""
    return MaskSchedule("linear", lambda t: t, eps)


def cosine(eps: float = 0.0) -> MaskSchedule:
    """alpha_t = 1 - cos(pi/2 (1 - t)), w = pi/2 tan(pi/2 (1 - t)) (MD4).

    The mask probability cos(pi/2 (1 - t)) is written sin(pi t / 2), which is exactly 0 at t = 0
    (float32 cos(pi / 2) is -4.4e-8)."""
    return MaskSchedule("cosine", lambda t: jnp.sin(0.5 * math.pi * t), eps)


def polynomial(power: float = 2.0, eps: float = 0.0) -> MaskSchedule:
    """alpha_t = 1 - t^k, w = k / t (MD4)."""
    if power <= 0:
        raise ValueError(f"polynomial schedule power must be positive, got {power}")
    return MaskSchedule(f"polynomial{power:g}", lambda t: t**power, eps)


# -- the process ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MaskedDiffusion(TokenNelbo):
    """Absorbing-state diffusion over `vocab_size` tokens; the denoiser returns [..., V] logits.

    loss_steps = 0 trains the continuous-time NELBO; T > 0 the discrete-time one with T steps.
    time_agnostic: the network ignores t, so samplers may reuse its output while z is unchanged.
    """

    vocab_size: int
    schedule: MaskSchedule = dataclasses.field(default_factory=linear)
    loss_steps: int = 0
    label_dropout: float = 0.0
    time_agnostic: bool = False
    # training times on [t_eps, 1] (docs/math.md §3.2: never clip more than 1e-5)
    t_eps: float = 1e-5

    t_min = 0.0  # sampling grids end at t = 0, where every token is unmasked
    grid_power = 1.0  # uniform grids in t

    def __post_init__(self):
        if self.vocab_size < 1:
            raise ValueError(f"masked diffusion needs vocab_size >= 1, got {self.vocab_size}")
        if self.loss_steps < 0:
            raise ValueError(
                f"loss_steps must be 0 (continuous time) or T > 0, got {self.loss_steps}"
            )

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    # -- forward process ------------------------------------------------------------------------
    def prior(self, key, shape, t=1.0):
        """The all-masked sequence (alpha_1 ~ 0): mask_id [shape] int32 (shape (B, L))."""
        del key, t
        return jnp.full(shape, self.mask_id, jnp.int32)

    def corrupt(self, key, x0, t):
        """z_t^i = m with probability 1 - alpha_t, else x^i, independently per position."""
        p = self.schedule.mask_prob(jnp.reshape(jnp.asarray(t, jnp.float32), (-1, 1)))
        return jnp.where(jax.random.uniform(key, x0.shape) < p, self.mask_id, x0).astype(jnp.int32)

    def log_probs(self, pred, zt):
        """log p_theta(x^i | z_t): log-softmax of the logits at masked positions, one-hot(z_t^i)
        at unmasked ones (carry-over), with NEG for impossible tokens (docs/math.md §3.2).

        Args:
            pred: logits [B, L, V'] (V' >= vocab_size; the mask's logit and beyond are dropped).
            zt: tokens [B, L] int32, mask_id at masked positions.

        Returns:
            log-probabilities [B, L, vocab_size] float32.
        """
        lp = jax.nn.log_softmax(pred.astype(jnp.float32)[..., : self.vocab_size], axis=-1)
        carried = jnp.where(jax.nn.one_hot(zt, self.vocab_size) > 0, 0.0, NEG)
        return jnp.where((zt == self.mask_id)[..., None], lp, carried)

    # -- training -------------------------------------------------------------------------------
    def masked_nll(self, denoiser, x0, zt, t, cond):
        """sum_{i: z_t^i = m} -log p_theta(x^i | z_t), per sequence."""
        lp = self.log_probs(denoiser(zt, t, cond), zt)
        picked = jnp.take_along_axis(lp, x0[..., None], axis=-1)[..., 0]
        return -jnp.sum(jnp.where(zt == self.mask_id, picked, 0.0), axis=-1)

    def reconstruction(self, length: int):
        """L (1 - alpha_0) log V: MD4's approximation of the reconstruction term."""
        return length * self.schedule.mask_prob(0.0) * math.log(self.vocab_size)

    def nelbo_draw(self, denoiser, key, x0, cond=None, steps: int | None = None):
        """A one-sample estimate of the per-sequence NELBO in nats, one t per sequence.

        steps = 0: L_inf = int_0^1 w(t) E[sum_masked -log p] dt with antithetic t on [t_eps, 1];
        steps = T: L_T = T E_i[p_u(s_i, t_i) sum_masked -log p], t_i = i/T, s_i = (i-1)/T.
        """
        steps = self.loss_steps if steps is None else steps
        k_t, k_mask = jax.random.split(key)
        u = antithetic_times(k_t, x0.shape[0])
        if steps:
            i = jnp.floor(u * steps) + 1.0
            t, s = i / steps, (i - 1.0) / steps
            weight = steps * self.schedule.unmask_prob(s, t)
        else:
            t = self.t_eps + (1.0 - self.t_eps) * u
            weight = (1.0 - self.t_eps) * self.schedule.weight(t)
        zt = self.corrupt(k_mask, x0, t)
        nll = self.masked_nll(denoiser, x0, zt, t, cond)
        return weight * nll + self.reconstruction(x0.shape[-1])

    # -- reverse process ------------------------------------------------------------------------
    def posterior(self, key, zt, t, s, log_probs, float64: bool = True):
        """One ancestral move t -> s (decoupled, docs/math.md §3.3A): each masked position is
        unmasked with probability p_u(s, t) (1 on the final step to t_min) and, if so, takes a token
        drawn from p_theta(. | z_t); unmasked positions never change."""
        k_b, k_y = jax.random.split(key)
        p_u = jnp.where(s <= self.t_min, 1.0, self.schedule.unmask_prob(s, t))
        unmask = jax.random.uniform(k_b, zt.shape) < p_u
        y = categorical(k_y, log_probs, float64)
        return jnp.where((zt == self.mask_id) & unmask, y, zt)


SCHEDULES = ("linear", "cosine", "polynomial")


def build_schedule(name: str, eps: float, power: float = 2.0) -> MaskSchedule:
    if name == "linear":
        return linear(eps)
    if name == "cosine":
        return cosine(eps)
    if name == "polynomial":
        return polynomial(power, eps)
    raise ValueError(f"config.process.schedule must be one of {SCHEDULES}, got {name!r}")


def build_process(config, vocab_size: int) -> MaskedDiffusion:
    pc = config.process
    return MaskedDiffusion(
        vocab_size,
        build_schedule(pc.schedule, pc.mask_eps, pc.schedule_power),
        pc.loss_steps,
        pc.label_dropout,
        time_agnostic=not config.model.time_conditioning,
    )

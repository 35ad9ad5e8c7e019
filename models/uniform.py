"""Uniform-state diffusion for discrete tokens (docs/math.md §3.9; UDLM, Schiff et al. 2024; Duo,
Sahoo et al. 2025).

Tokens x in {0..V-1}^L. Each position keeps its token with probability alpha_t and is otherwise
replaced by a uniformly random token, independently: q_t(z | x) = alpha_t [z = x] + (1 -
alpha_t) / V, so every position can change at every step and there is no mask. The network gives
logits of p_theta(x^i | z_t) over the V tokens at every position; the reverse step mixes the
exact posteriors q(z_s | z_t, x) over that distribution. alpha_t is any of the masked family's
schedules (1 - alpha_t is their mask probability), unclipped: alpha_0 = 1, alpha_1 = 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from difflab.models.categorical import categorical
from difflab.models.common import TokenNelbo, antithetic_times, time_derivative
from difflab.models.masked import MaskSchedule, build_schedule, linear


def per_position(v, z):
    """A time's scalar or [B] array shaped to broadcast against tokens z [B, L] (as [B, 1])."""
    v = jnp.asarray(v, jnp.float32)
    return v.reshape((-1,) + (1,) * (z.ndim - 1)) if v.ndim else v


@dataclasses.dataclass(frozen=True)
class UniformDiffusion(TokenNelbo):
    """Uniform-state diffusion over `vocab_size` tokens; the denoiser returns [..., V'] logits
    (V' >= V; logits past V are dropped).

    loss_steps = 0 trains the continuous-time NELBO; T > 0 the discrete-time one with T steps.
    """

    vocab_size: int
    schedule: MaskSchedule = dataclasses.field(default_factory=linear)
    loss_steps: int = 0
    label_dropout: float = 0.0
    # training times on [t_eps, 1] (the continuous-time weight grows like 1/t at t = 0)
    t_eps: float = 1e-5

    t_min = 0.0  # sampling grids end at t = 0, where z_0 = x
    grid_power = 1.0  # uniform grids in t

    def __post_init__(self):
        if self.vocab_size < 2:
            raise ValueError(
                f"uniform-state diffusion needs vocab_size >= 2, got {self.vocab_size}"
            )
        if self.loss_steps < 0:
            raise ValueError(
                f"loss_steps must be 0 (continuous time) or T > 0, got {self.loss_steps}"
            )
        if self.schedule.eps != 0.0:
            raise ValueError(
                f"uniform-state diffusion needs an unclipped schedule (config.process.mask_eps = "
                f"0: alpha_0 = 1, alpha_1 = 0), got eps = {self.schedule.eps}"
            )

    def alpha(self, t):
        return self.schedule.alpha(t)

    # -- forward process ------------------------------------------------------------------------
    def prior(self, key, shape, t=1.0):
        """Uniformly random tokens [shape] int32 (alpha_1 = 0)."""
        del t
        return jax.random.randint(key, shape, 0, self.vocab_size, jnp.int32)

    def corrupt(self, key, x0, t):
        """z_t^i = x^i with probability alpha_t, else a uniform token, independently."""
        k_keep, k_tok = jax.random.split(key)
        keep = jax.random.uniform(k_keep, x0.shape) < per_position(self.alpha(t), x0)
        noise = jax.random.randint(k_tok, x0.shape, 0, self.vocab_size, jnp.int32)
        return jnp.where(keep, x0, noise).astype(jnp.int32)

    def log_probs(self, pred, zt):
        """log p_theta(x^i | z_t) [B, L, V]: the log-softmax of the first V logits at every
        position (uniform noise hides which positions are clean)."""
        del zt
        return jax.nn.log_softmax(pred.astype(jnp.float32)[..., : self.vocab_size], axis=-1)

    # -- the reverse step ---------------------------------------------------------------------
    def posterior_probs(self, zt, t, s, probs):
        """p(z_s^i = j | z_t) = sum_x probs^i(x) q(z_s^i = j | z_t^i, x) [B, L, V] (docs/math.md
        §3.9): q(j | z, x) = A_j B_xj / D_x with A_j = q(z | j) over (s, t], B_xj = q_s(j | x),
        D_x = q_t(z | x); so p(j) = A_j (alpha_s w_j + (1 - alpha_s) / V sum_x w_x), w = probs / D.
        probs = one-hot(x) gives the forward posterior itself."""
        v = self.vocab_size
        a_t = per_position(self.alpha(t), zt)[..., None]
        a_s = per_position(self.alpha(s), zt)[..., None]
        a_ts = a_t / jnp.maximum(a_s, 1e-30)
        here = jax.nn.one_hot(zt, v, dtype=jnp.float32)
        stay = a_ts * here + (1.0 - a_ts) / v  # A_j
        w = probs / (a_t * here + (1.0 - a_t) / v)  # probs_x / D_x
        out = stay * (a_s * w + (1.0 - a_s) / v * jnp.sum(w, axis=-1, keepdims=True))
        return out / jnp.sum(out, axis=-1, keepdims=True)

    def posterior(self, key, zt, t, s, log_probs, float64: bool = True, log_tilt=None):
        """One ancestral move t -> s: z_s^i ~ p(. | z_t) of `posterior_probs` with probs =
        exp(log_probs), independently per position; on the final step to t_min a draw of x from
        p_theta itself (equal to the formula there, where alpha_0 = 1). log_tilt [B, L, V]: each
        position's next-token law times exp(log_tilt), renormalised (classifier guidance)."""
        probs = jnp.exp(log_probs)
        step = jnp.log(jnp.maximum(self.posterior_probs(zt, t, s, probs), 1e-37))
        lp = jnp.where(s <= self.t_min, log_probs, step)
        return categorical(key, lp if log_tilt is None else lp + log_tilt, float64)

    # -- training -------------------------------------------------------------------------------
    def rate_bracket(self, zt, t, probs, x0):
        """sum_{j != z^i} [s_j - r_j log s_j + r_j (log r_j - 1)] [B, L]: the reverse-rate ratios
        s_j = sum_x probs(x) q_t(j | x) / q_t(z^i | x) of the model against r_j of the data x0
        (docs/math.md §3.9); >= 0, 0 where they agree."""
        v = self.vocab_size
        a_t = per_position(self.alpha(t), zt)[..., None]
        inv = 1.0 + v * a_t / jnp.maximum(1.0 - a_t, 1e-30)  # q_t(j | j) / q_t(z | j), j != z
        here = jax.nn.one_hot(zt, v, dtype=jnp.float32)

        def ratios(p):  # 1 + p_z (1 / inv - 1) + p_j (inv - 1), for every j
            p_z = jnp.sum(p * here, axis=-1, keepdims=True)
            return 1.0 + p_z * (1.0 / inv - 1.0) + p * (inv - 1.0)

        s, r = ratios(probs), ratios(jax.nn.one_hot(x0, v, dtype=jnp.float32))
        s = jnp.maximum(s, 1e-30)
        terms = s - r * jnp.log(s) + r * (jnp.log(r) - 1.0)
        return jnp.sum(jnp.where(here > 0, 0.0, terms), axis=-1)

    def step_kl(self, zt, t, s, probs, x0):
        """KL(q(z_s | z_t, x0) || p_theta(z_s | z_t)) per position [B, L]."""
        q = self.posterior_probs(zt, t, s, jax.nn.one_hot(x0, self.vocab_size, dtype=jnp.float32))
        p = self.posterior_probs(zt, t, s, probs)
        log_ratio = jnp.log(jnp.maximum(q, 1e-37)) - jnp.log(jnp.maximum(p, 1e-37))
        return jnp.sum(jnp.where(q > 0, q * log_ratio, 0.0), axis=-1)

    def nelbo_draw(self, denoiser, key, x0, cond=None, steps: int | None = None):
        """A one-sample estimate of the per-sequence NELBO in nats, one t per sequence.

        steps = 0: L_inf = int_0^1 (beta_t / V) E[sum_i bracket_i] dt, beta_t = -alpha'_t /
        alpha_t, antithetic t on [t_eps, 1]; steps = T: L_T = T E_k[sum_i KL_i(t_k -> t_{k-1})],
        t_k = k / T (the last step's KL is the reconstruction -log p_theta(x | z_{t_1})).
        """
        steps = self.loss_steps if steps is None else steps
        k_t, k_noise = jax.random.split(key)
        u = antithetic_times(k_t, x0.shape[0])
        if steps:
            k = jnp.floor(u * steps) + 1.0
            t, s = k / steps, (k - 1.0) / steps
        else:
            t = self.t_eps + (1.0 - self.t_eps) * u
        zt = self.corrupt(k_noise, x0, t)
        probs = jnp.exp(self.log_probs(denoiser(zt, t, cond), zt))
        if steps:
            return steps * jnp.sum(self.step_kl(zt, t, s, probs, x0), axis=-1)
        beta = time_derivative(self.schedule.mask_prob, t) / jnp.maximum(self.alpha(t), 1e-30)
        bracket = jnp.sum(self.rate_bracket(zt, t, probs, x0), axis=-1)
        return (1.0 - self.t_eps) * beta / self.vocab_size * bracket


def build_process(config, vocab_size: int) -> UniformDiffusion:
    pc = config.process
    return UniformDiffusion(
        vocab_size,
        build_schedule(pc.schedule, pc.mask_eps, pc.schedule_power),
        pc.loss_steps,
        pc.label_dropout,
    )

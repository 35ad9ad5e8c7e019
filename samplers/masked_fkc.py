"""Feynman-Kac correctors for masked diffusion: annealing p^beta and products of differently
conditioned models prod_i p_i^beta_i (derivation: docs/masked_fkc.md).

Target path q_t(z) = m_t(z) prod_i p_i(z_U)^beta_i (m_t: the mask factors of the forward process,
z_U: the unmasked tokens). Particles take ancestral steps whose tokens are drawn from the mixed
conditionals prod_i p_i(v | z_t)^beta_i / Z(z_t, j) (the naive guided sampler), and each time
position j is unmasked from state z_t the weight is multiplied by

    Z(z_t, j) = sum_v prod_i p_i(v | z_t, j)^beta_i.

(For the continuous-time chain this is the Feynman-Kac weight of the path q_t with the jump
normalisers moved from the rates into the weights; the continuous part of the weight is zero.)
For a T-step ancestral chain the weighted law is the chain's own law with token factors
prod_i p_i^beta_i, which tends to prod_i p_i^beta_i / Z as T grows; first-hitting-like steps
(one token at a time) make it exact. One network call per step (experts stacked in one
denoiser, `samplers.fkc.experts`; one expert for annealing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from difflab.samplers.discrete import ancestral_step
from difflab.samplers.smc import Potential, smc
from difflab.samplers.solvers import Step


def mixed_log_probs(model, pred, z, betas):
    """sum_i beta_i log p_i(v | z_t) per position [B, L, V]; pred stacks the experts [B, E, ...]
    (`fkc.experts`), or is one model's prediction [B, L, ...] (told apart by its rank)."""
    b = jnp.asarray(betas, jnp.float32)
    stacked = pred if pred.ndim == z.ndim + 2 else pred[:, None]
    check_experts(len(betas), stacked.shape[1])
    lps = jax.vmap(lambda p: model.process.log_probs(p, z), in_axes=1, out_axes=1)(stacked)
    return jnp.einsum("e,be...->b...", b, lps)


def mixed_step(betas, float64: bool = True) -> Step:
    """An ancestral move t -> s whose tokens are drawn from the mixed conditionals."""

    def logits(model, z, t):
        return mixed_log_probs(model, model.pred(z, t), z, betas)

    return ancestral_step(float64, logits)


def unmasking_weights(betas, mask_id: int) -> Potential:
    """log Z(z_t, j) summed over the positions j that the previous move unmasked. The memory
    holds the previous state and its log-normalisers; the final increment covers the last
    move."""

    def newly_unmasked(z_prev, log_norm, z):
        fresh = (z_prev == mask_id) & (z != mask_id)
        return jnp.sum(jnp.where(fresh, log_norm, 0.0), axis=-1)

    def start(z):
        return z, jnp.zeros(z.shape, jnp.float32)

    def step(key, model, pred, z, t, s, memory):
        del key, s
        log_norm = jax.nn.logsumexp(mixed_log_probs(model, pred, z, betas), axis=-1)
        return newly_unmasked(*memory, z), (z, log_norm)

    def final(key, model, z, memory):
        del key, model
        return newly_unmasked(*memory, z)

    return Potential(start, step, final)


def check_experts(exponents: int, experts: int) -> None:
    if exponents != experts:
        raise ValueError(
            f"{exponents} exponents need as many experts, got a prediction of {experts} stacked "
            f"experts (stack them with samplers.fkc.experts)"
        )


def check(betas) -> None:
    if len(betas) < 1:
        raise ValueError("masked Feynman-Kac correctors need at least one exponent, got none")


def masked_fkc(betas, mask_id: int, float64: bool = True, **smc_settings):
    """The SMC sampler of prod_i p_i^beta_i for a masked model (mask_id: the process's mask
    token); smc_settings: scheme, ess_threshold, resample_every, output, mesh."""
    betas = tuple(float(b) for b in betas)
    check(betas)
    return smc(mixed_step(betas, float64), unmasking_weights(betas, mask_id), **smc_settings)

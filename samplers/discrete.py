"""Samplers of masked (absorbing-state) diffusion, through the shared `solvers.scan_grid` loop
(MATH.md §3.3). Each is `sampler(key, denoiser, process, shape, cond, grid) -> (tokens, info)`.

- `ancestral`: the exact T-step reverse chain in decoupled form; a time-agnostic network's output
  is reused while no token of the batch has changed (MDLM's cache), so NFE <= min(T, L).
- `first_hitting`: exactly one token per network call at a time drawn from the first-hitting law
  (Zheng et al. 2024); equal in distribution to the ancestral sampler as T -> infinity.
- `confidence`: MaskGIT-style unmasking of the most confident positions. A heuristic: it does not
  sample the model's distribution (biased), so never use it for likelihoods or oracle tests.

Categorical draws are float64 Gumbel-max by default (`float64=False` for the float32 variant).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from models.categorical import categorical
from samplers.solvers import Bound, scan_grid


def log_probs(model: Bound, z, t):
    """log p_theta(x | z_t) [B, L, V] from one network call."""
    return model.process.log_probs(model.pred(z, t), z)


def ancestral(float64: bool = True):
    """The decoupled ancestral sampler on the grid (MATH.md §3.3A), with output caching."""

    def sampler(key, denoiser, process, shape, cond, grid):
        model = Bound(denoiser, process, cond)
        z = process.prior(None, shape)
        lp = jnp.zeros((*shape, process.vocab_size), jnp.float32)
        cache = bool(process.time_agnostic)

        def move(k, state, t, s):
            z, lp, fresh, nfe = state
            call = ~fresh & jnp.any(z == process.mask_id)  # nothing left to unmask: no call
            lp = jax.lax.cond(call, lambda: log_probs(model, z, t), lambda: lp)
            nfe = nfe + call.astype(jnp.int32)
            z_s = process.posterior(k, z, t, s, lp, float64)
            return z_s, lp, cache & jnp.all(z_s == z), nfe

        state = (z, lp, jnp.array(False), jnp.array(0, jnp.int32))
        z, _, _, nfe = scan_grid(move, key, state, grid)
        return z, {"nfe": nfe}

    return sampler


def first_hitting(float64: bool = True):
    """First-hitting sampler (MATH.md §3.3B): with n masked positions at time t, the next
    unmasking happens at 1 - alpha_s = (1 - alpha_t) u^(1/n); a uniformly chosen masked position
    takes a token from p_theta(. | z, s). Exactly L network calls, whatever the grid (only
    grid[0], the start time, is used)."""

    def sampler(key, denoiser, process, shape, cond, grid):
        model = Bound(denoiser, process, cond)
        z = process.prior(None, shape)
        batch, length = shape
        sched = process.schedule

        def move(k, state, t_unused, s_unused):
            del t_unused, s_unused
            z, t = state
            k_time, k_pos, k_tok = jax.random.split(k, 3)
            masked = z == process.mask_id
            n = jnp.sum(masked, axis=1)
            u = jax.random.uniform(k_time, (batch,), minval=jnp.finfo(jnp.float32).tiny)
            target = sched.mask_prob(t) * u ** (1.0 / jnp.maximum(n, 1))
            s = jnp.where(n > 0, sched.time_of_mask_prob(target), t)
            # a uniformly random masked position: argmax of uniform scores over masked positions
            scores = jnp.where(masked, jax.random.uniform(k_pos, (batch, length)), -1.0)
            pos = jnp.argmax(scores, axis=1)
            lp = model.process.log_probs(model.denoiser(z, s, cond), z)
            lp_pos = jnp.take_along_axis(lp, pos[:, None, None], axis=1)[:, 0]
            token = categorical(k_tok, lp_pos, float64)
            hit = jax.nn.one_hot(pos, length, dtype=jnp.bool_) & (n > 0)[:, None]
            return jnp.where(hit, token[:, None], z), s

        t0 = jnp.full((batch,), grid[0], jnp.float32)
        steps = jnp.linspace(grid[0], 0.0, length + 1)  # only the trip count matters
        z, _ = scan_grid(move, key, (z, t0), steps)
        return z, {"nfe": jnp.array(length, jnp.int32)}

    return sampler


def confidence(float64: bool = True):
    """Confidence-ordered unmasking (MaskGIT; SMDM "greedy"), a biased heuristic (MATH.md §3.3C):
    draw a candidate y^i ~ p_theta(. | z_t) at every masked position, then unmask the
    k = round(n_masked p_u(s, t)) positions whose candidates are most probable (all on the final
    step)."""

    def sampler(key, denoiser, process, shape, cond, grid):
        model = Bound(denoiser, process, cond)
        z = process.prior(None, shape)

        def move(k, z, t, s):
            lp = log_probs(model, z, t)
            y = categorical(k, lp, float64)
            conf = jnp.take_along_axis(lp, y[..., None], axis=-1)[..., 0]
            masked = z == process.mask_id
            n = jnp.sum(masked, axis=1)
            p_u = jnp.where(s <= process.t_min, 1.0, process.schedule.unmask_prob(s, t))
            k_new = jnp.round(n * p_u).astype(jnp.int32)
            order = jnp.argsort(-jnp.where(masked, conf, -jnp.inf), axis=1)
            rank = jnp.argsort(order, axis=1)
            return jnp.where(masked & (rank < k_new[:, None]), y, z)

        z = scan_grid(move, key, z, grid)
        return z, {"nfe": jnp.array(grid.shape[0] - 1, jnp.int32)}

    return sampler

"""SVDD: derivative-free guidance by soft value-based decoding (Li et al. 2024; docs/math.md §6.4).

Target p(x) exp(r(x) / alpha) / Z. Each step t -> s of any stochastic sampler `Step` (DDPM,
Euler-Maruyama, DDIM eta > 0, masked ancestral, count tau-leaping):

1. one network call at (x_t, t), shared by all candidates;
2. M candidates x_s^(m) from the step's move with M independent keys;
3. values v_s(x_s^(m)); candidate m* ~ softmax_m(v / alpha) (alpha = 0: argmax);
4. x_s = x_s^(m*).

Values `value(key, model, x, s) -> [B]`: `posterior_mean_value` (SVDD-PM: the reward at the
denoised estimate, one network call on the M B candidates), `network_value` (SVDD-MC: a value
network trained by `train.py` on the model's rollouts, `models.value`), or any exact soft value.
On the last step (s at the process's t_min) the value is the reward itself (v_0 = r). With exact
values, alpha > 0 and M -> infinity each step samples the optimal kernel and the output follows
the target; at finite M the bias is O(1 / M). Rewards may be JAX functions or host functions
(`steering.host_reward`, through `jax.pure_callback`): they are called once per step on all
M B candidates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from difflab.models.categorical import categorical
from difflab.samplers.solvers import Bound, Evaluated, Step, advance, scan_grid, started
from difflab.samplers.steering import count_estimate, gaussian_estimate
from difflab.samplers.steering import estimate_for as steering_estimate_for


def check(candidates: int, alpha: float) -> None:
    if int(candidates) != candidates or candidates < 1:
        raise ValueError(f"SVDD needs a positive integer number of candidates, got {candidates}")
    if not alpha >= 0:
        raise ValueError(f"SVDD's temperature alpha must be >= 0 (0: argmax), got {alpha}")


def select(key, values, alpha: float):
    """m* per row from values [M, B]: argmax (alpha = 0) or a draw from softmax(v / alpha)."""
    if alpha == 0:
        return jnp.argmax(values, axis=0)
    return categorical(key, values.T / alpha)


def posterior_mean_value(reward, estimate):
    """SVDD-PM: v_s(x) = r(x_hat(x, s)), x_hat the first of `estimate(key, model, pred, x, s)`
    (the denoised estimates of `samplers.steering`: Gaussian Tweedie, counts the rate-implied
    mean; masked: `masked_estimate`, the argmax tokens); one network call. On the last step
    v = r(x)."""

    def value(key, model, x, s):
        def at_estimate():
            x_hat = estimate(key, model, model.pred(x, s), x, s)[0]
            return reward(x_hat).astype(jnp.float32)

        last = s <= model.process.t_min
        return jax.lax.cond(last, lambda: reward(x).astype(jnp.float32), at_estimate)

    value.reward_on_last_step = True  # no value pass on the last step (counted by `svdd`)
    return value


def network_value(values):
    """SVDD-MC: v_s(x) = f_psi(x, s) from values(x, s) -> [B] (a value network, regressed on
    rewards of rollouts: the alpha -> infinity soft value E[r(x_0) | x_s]). On the last step the
    network is still used (it was trained down to t_min)."""

    def value(key, model, x, s):
        del key, model
        return values(x, s).astype(jnp.float32)

    return value


def masked_estimate(key, model, pred, z, t):
    """The most probable token at each masked position, unmasked positions kept (SVDD's
    "tweedie" option for masked models), [1, B, L] like the draws of `steering`'s estimates."""
    del key, t
    return jnp.argmax(model.process.log_probs(pred, z), axis=-1)[None]


def uniform_estimate(key, model, pred, z, t):
    """The most probable token at every position (uniform-state models), [1, B, L]."""
    del key, t
    return jnp.argmax(model.process.log_probs(pred, z), axis=-1)[None]


# SVDD's "tweedie" option: the argmax tokens for token models (steering's estimates otherwise)
ESTIMATES = {
    "tweedie": gaussian_estimate,
    "masked": masked_estimate,
    "uniform": uniform_estimate,
    "counts": count_estimate,
}


def estimate_for(family: str):
    """SVDD-PM's denoised estimate of a model family (`steering.estimate_for` with these)."""
    return steering_estimate_for(family, ESTIMATES)


def svdd(step: Step, value, candidates: int = 10, alpha: float = 0.0, denoiser_values: bool = True):
    """The SVDD sampler `sampler(key, denoiser, process, shape, cond, grid) -> (x, info)` around a
    one-evaluation stochastic `step` (see the module doc). info: value_calls (value passes, in
    units of the batch: M per step, none on the last step for values that take the reward
    there, as SVDD-PM's do) and nfe (denoiser passes of the batch: one per step, plus the value
    calls when the values call the denoiser, as SVDD-PM does; denoiser_values=False for exact
    or learned values).

    Args:
        step: a one-evaluation stochastic `solvers.Step` (ddpm, ddim eta > 0, em, ancestral,
            tau-leaping).
        value: (key, model, x [M B, ...], s) -> values [M B] (`posterior_mean_value`,
            `network_value`, or exact soft values).
        candidates: M. alpha: the temperature (0: argmax).

    Returns:
        sampler(key, denoiser, process, shape, cond, grid) -> (x [shape], {nfe, value_calls}).
    """
    check(candidates, alpha)
    if step.nfe != 1:
        raise ValueError(f"SVDD shares one network evaluation per step; this step makes {step.nfe}")

    def sampler(key, denoiser, process, shape, cond, grid):
        k_prior, k_loop = jax.random.split(key)
        x = process.prior(k_prior, shape, grid[0])
        model = Bound(denoiser, process, cond)
        batch = shape[0]

        def move(k, state, t, s):
            x, carry = state
            k_move, k_value, k_pick = jax.random.split(k, 3)
            fixed = Evaluated(denoiser, process, cond, model.pred(x, t))
            keys = jax.random.split(k_move, candidates)
            cands = jax.vmap(lambda kk: advance(step, kk, fixed, x, t, s, carry))(keys)
            flat = cands[0].reshape(candidates * batch, *cands[0].shape[2:])  # [M B, ...]
            wide = Bound(
                denoiser, _repeat(process, candidates, x.ndim), _repeat(cond, candidates, 1)
            )
            values = value(k_value, wide, flat, s).reshape(candidates, batch)
            pick = select(k_pick, values, alpha)
            return jax.tree.map(lambda v: chosen(v, pick), cands)

        x, _ = scan_grid(move, k_loop, (x, started(step, x)), grid)
        steps = grid.shape[0] - 1
        calls = candidates * (steps - int(getattr(value, "reward_on_last_step", False)))
        nfe = steps + (calls if denoiser_values else 0)
        return x, {"nfe": jnp.array(nfe, jnp.int32), "value_calls": jnp.array(calls, jnp.int32)}

    return sampler


def chosen(rows, pick):
    """rows [M, B, ...] -> [B, ...]: the candidate pick[b] of every batch row b."""
    return jnp.take_along_axis(rows, pick.reshape(1, -1, *[1] * (rows.ndim - 2)), 0)[0]


def _repeat(tree, m: int, batched_ndim: int):
    """A condition (or an observed process's per-row leaves) for M stacked copies of the batch:
    leaves with batched_ndim axes have a batch axis and are tiled; others (a single sample's
    observation under `independent`) broadcast as they are."""
    if tree is None or not (isinstance(tree, jax.Array) or getattr(tree, "batched", False)):
        return tree

    def tile(v):
        return jnp.tile(v, (m,) + (1,) * (v.ndim - 1)) if v.ndim == batched_ndim else v

    return jax.tree.map(tile, tree)

"""Particle Gibbs: iterated conditional SMC around a one-evaluation step (docs/math.md §7.5;
Andrieu, Doucet and Holenstein 2010; for discrete diffusion, PG-DLM 2025).

The target is the path measure of the particle system of `samplers.smc`: the sampler's proposal
path times the potential's increments, whose marginal at the end is the steered law (FK
steering: q_T(x) exp(lam r(x)) / Z, with q_T the sampler's own T-step law). One sweep runs N
particles of which one, the reference, is held to a trajectory kept from the previous sweep:
its ancestor is itself at every resampling (multinomial, every step) and its state is
overwritten by the reference's after every move. At the end one trajectory is drawn by the
final weights and traced back through the ancestors; it is the next reference. Each sweep
leaves the path measure invariant for any N >= 2, so the references converge to the target as
the sweeps go on, at a fixed number of particles (where plain SMC keeps an O(1/N) bias). The
first sweep has no reference (plain SMC, the usual start).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from difflab.samplers import resampling
from difflab.samplers.smc import Potential, check_step
from difflab.samplers.solvers import Bound, Evaluated, Step


def sweep(step: Step, potential: Potential, particles: int):
    """One conditional-SMC sweep `(key, model, reference [K + 1, ...], held) -> (trajectory
    [K + 1, ...], log Z estimate)` over the grid of `model`'s loop: N = particles, particle 0
    held to the reference where `held` (a bool), drawn freely otherwise."""

    def run(key, model, grid, reference, held):
        steps = grid.shape[0] - 1
        k_prior, k_loop, k_final, k_pick = jax.random.split(key, 4)
        shape = (particles, *reference.shape[1:])
        x = model.process.prior(k_prior, shape, grid[0])
        x = x.at[0].set(jnp.where(held, reference[0], x[0]))

        def body(carry, inputs):
            x, memory, log_z = carry
            k, t, s = inputs
            k_weight, k_res, k_move = jax.random.split(jax.random.fold_in(k_loop, k), 3)
            pred = model.pred(x, t)
            log_g, memory = potential.step(k_weight, model, pred, x, t, s, memory)
            a = resampling.multinomial(k_res, log_g)
            a = a.at[0].set(jnp.where(held, 0, a[0]))
            x, pred, memory = jax.tree.map(lambda v: v[a], (x, pred, memory))
            evaluated = Evaluated(model.denoiser, model.process, model.cond, pred)
            x = step.move(k_move, evaluated, x, t, s)
            x = x.at[0].set(jnp.where(held, reference[k + 1], x[0]))
            return (x, memory, log_z + resampling.log_mean_weight(log_g)), (a, x)

        ks = jnp.arange(steps)
        carry = (x, potential.start(x), jnp.zeros((), jnp.float32))
        (x_end, memory, log_z), (ancestors, states) = jax.lax.scan(
            body, carry, (ks, grid[:-1], grid[1:])
        )
        log_w = potential.final(k_final, model, x_end, memory)
        pick = resampling.multinomial(k_pick, log_w)[0]
        states = jnp.concatenate([x[None], states])  # [K + 1, N, ...]
        return traced(states, ancestors, pick), log_z + resampling.log_mean_weight(log_w)

    return run


def traced(states, ancestors, last):
    """The trajectory [K + 1, ...] ending at particle `last`: its state at step k + 1 is
    states[k + 1][j_k], then j_{k-1} = ancestors[k][j_k] (the parent the move started from)."""

    def back(j, inputs):
        state, a = inputs
        return a[j], state[j]

    first, path = jax.lax.scan(back, last, (states[1:], ancestors), reverse=True)
    return jnp.concatenate([states[0][first][None], path])


def chains(step: Step, potential: Potential, particles: int, iterations: int):
    """`run(key, denoiser, process, cond, grid, references [B, K + 1, ...], held) -> (paths
    [B, K + 1, ...], ends [iterations, B, ...], log_z [iterations, B])`: B independent chains
    (vmapped) of `iterations` sweeps from the given references (held from the first sweep if
    `held`, else the first sweep is plain SMC); ends are each sweep's final states."""
    one = sweep(step, potential, particles)

    def run(key, denoiser, process, cond, grid, references, held: bool):
        keys = jax.random.split(key, references.shape[0])
        conds = jnp.zeros(references.shape[0], jnp.int32) if cond is None else cond

        def chain(key, c, reference):
            model = Bound(denoiser, process, None if cond is None else jnp.full(particles, c))

            def body(reference, inputs):
                i, k = inputs
                path, log_z = one(k, model, grid, reference, held | (i > 0))
                return path, (path[-1], log_z)

            ks = jax.random.split(key, iterations)
            return jax.lax.scan(body, reference, (jnp.arange(iterations), ks))

        paths, (ends, log_z) = jax.vmap(chain)(keys, conds, references)
        return paths, jnp.swapaxes(ends, 0, 1), jnp.swapaxes(log_z, 0, 1)

    return run


def particle_gibbs(step: Step, potential: Potential, particles: int, iterations: int):
    """The particle Gibbs sampler `sampler(key, denoiser, process, shape, cond, grid) -> (x,
    info)`: shape[0] = B independent chains, each of `particles` particles run for `iterations`
    sweeps (the first without a reference); x [B, ...] the last references' final states.
    info: nfe (network calls per chain: particles x steps x sweeps, in units of one chain's
    batch), references [iterations, B, ...] (each sweep's final states, for convergence checks)
    and log_z [iterations, B] (each sweep's estimate; a conditional sweep's is not unbiased).

    Args:
        step: a one-evaluation stochastic `solvers.Step` (as for `smc`).
        potential: the log-weight increments (`steering.reward_potential`, ...).
        particles: N >= 2 per chain (one is the reference). iterations: sweeps >= 1.
    """
    check_step(step)
    if int(particles) != particles or particles < 2:
        raise ValueError(f"particle Gibbs needs >= 2 particles per chain, got {particles}")
    if int(iterations) != iterations or iterations < 1:
        raise ValueError(f"particle Gibbs needs >= 1 sweeps, got {iterations}")
    run = chains(step, potential, particles, iterations)

    def sampler(key, denoiser, process, shape, cond, grid):
        k_start, k_run = jax.random.split(key)
        start = process.prior(k_start, (shape[0], grid.shape[0], *shape[1:]), grid[0])
        _, ends, log_z = run(k_run, denoiser, process, cond, grid, start, False)
        steps = grid.shape[0] - 1
        info = {
            "nfe": jnp.array(particles * steps * iterations, jnp.int32),
            "references": ends,
            "log_z": log_z,
        }
        return ends[-1], info

    return sampler

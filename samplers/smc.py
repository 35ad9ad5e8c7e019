"""Sequential Monte Carlo around any one-evaluation sampler step (MATH.md §7.1).

N particles (the batch rows) move with a sampler `Step` inside the one `lax.scan` of
`solvers.scan_grid` and carry log-weights. Each step t -> s:

1. one network call gives pred = denoiser(x_t, t);
2. a `Potential` turns (pred, x_t) into log-weight increments log G (FK steering rewards at the
   denoised estimate, Feynman-Kac corrector weights);
3. if the effective sample size ESS < kappa N (or every `resample_every` steps), ancestors are
   drawn with a resampling scheme, particles (and their predictions and potential memory) are
   copied, the log-normaliser estimate grows by log mean w and the log-weights reset to 0;
4. the step moves x_t -> x_s reusing pred (no second call: steps must evaluate the network once,
   at (x_t, t), as DDPM, DDIM, Euler-Maruyama, masked ancestral and tau-leaping steps do).

After the last move the potential's final increment makes the target exact, log Z gets the last
log mean w, and the particles are resampled once (output="resample") or returned with their
log-weights (output="weighted", in `info["log_weights"]`). All particles form one population
(one condition); for several conditions vmap the sampler.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from difflab.samplers import resampling
from difflab.samplers.solvers import Bound, Evaluated, Step

OUTPUTS = ("resample", "weighted")


@dataclasses.dataclass(frozen=True)
class Potential:
    """Log-weight increments along the reverse path (MATH.md §7.2, §7.4).

    start(x) -> memory: per-particle memory (a pytree with leading axis N) at grid[0];
    step(key, model, pred, x, t, s, memory) -> (log_g [N], memory): before the move t -> s;
    final(key, model, x, memory) -> log_g [N]: after the last move (corrections that make the
    product of all increments the target's density ratio).
    """

    start: Callable
    step: Callable
    final: Callable


def check_step(step: Step) -> None:
    """SMC reuses the step's one network evaluation at (x_t, t)."""
    if step.nfe != 1 or (step.nfe_last or 1) != 1:
        raise ValueError(
            f"SMC reuses the one network evaluation of a step at (x_t, t); this step makes "
            f"{step.nfe} evaluations (use ddpm, ddim with eta > 0, em, ancestral or tau_leaping)"
        )


def check_settings(scheme: str, ess_threshold, resample_every: int, output: str) -> None:
    """Clear errors for settings the particle system cannot run with."""
    resampling.get(scheme)
    if not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must be in [0, 1] (a fraction of N), got {ess_threshold}")
    if int(resample_every) != resample_every or resample_every < 0:
        raise ValueError(f"resample_every must be a non-negative integer, got {resample_every}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


def particle_constraint(mesh, spec=None):
    """x -> x with every leaf's leading (particle) axis split over the mesh's first axis, or laid
    out by `spec` (PartitionSpec() replicates); the identity without a mesh."""
    if mesh is None:
        return lambda tree: tree
    sharding = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]) if spec is None else spec)
    return lambda tree: jax.tree.map(lambda v: jax.lax.with_sharding_constraint(v, sharding), tree)


def default_init(key, process, shape, t):
    """The process's prior at t."""
    return process.prior(key, shape, t)


def smc(
    step: Step,
    potential: Potential,
    scheme: str = "systematic",
    ess_threshold: float = 0.5,
    resample_every: int = 0,
    output: str = "resample",
    init=None,
    mesh=None,
):
    """A particle sampler `sampler(key, denoiser, process, shape, cond, grid) -> (x, info)`;
    shape[0] is the number of particles N. Resampling is adaptive (ESS < ess_threshold N) unless
    resample_every > 0 (then every that many steps). info: nfe, ess [K] (before each resampling
    decision), resampled [K], unique_ancestors [K] (distinct parents after the step),
    resamplings, log_weights [N] (final, before the output resampling) and log_z (the estimate
    of log Z, Z = E[product of all increments]; unbiased for Z, not log Z). init(key, process,
    shape, t) -> x, or (x, initial log-weights), draws the particles at grid[0] (default: the
    process's prior).

    mesh: a jax.sharding.Mesh whose first axis splits the particles over its devices; weights,
    ESS and log Z are global reductions and ancestors are drawn over all N particles (one key),
    so resampling moves particles between devices and the result is one device's: the same
    ancestors, resampling steps and log Z; samples bit-identical for FK steering's DDPM steps
    and within float32 rounding for FKC's (8 virtual devices: max |diff| 1.7e-5 after 40
    steps, tests/scripts/eight_devices.py)."""
    check_step(step)
    check_settings(scheme, ess_threshold, resample_every, output)
    draw_ancestors = resampling.get(scheme)

    spread = particle_constraint(mesh)
    # the N log-weights are gathered on every device, so ESS, log Z and the ancestors are
    # computed exactly as on one device (the same reductions in the same order)
    gathered = particle_constraint(mesh, PartitionSpec())

    def sampler(key, denoiser, process, shape, cond, grid):
        n = shape[0]
        model = Bound(denoiser, process, cond)
        k_prior, k_loop, k_final, k_out = jax.random.split(key, 4)
        start = (init or default_init)(k_prior, process, shape, grid[0])
        x, log_w0 = start if isinstance(start, tuple) else (start, 0.0)
        log_w0 = jnp.broadcast_to(jnp.asarray(log_w0, jnp.float32), (n,))
        x = spread(x)

        def body(state, inputs):
            (x, memory, log_w, log_z), (k, t, s) = state, inputs
            k_weight, k_res, k_move = jax.random.split(jax.random.fold_in(k_loop, k), 3)
            pred = model.pred(x, t)
            log_g, memory = potential.step(k_weight, model, pred, x, t, s, memory)
            log_w = gathered(log_w + log_g)
            size = resampling.ess(log_w)
            if resample_every:
                due = (k + 1) % resample_every == 0
            else:
                due = size < ess_threshold * n
            a = jnp.where(due, draw_ancestors(k_res, log_w), jnp.arange(n))
            x, pred, memory = spread(jax.tree.map(lambda v: v[a], (x, pred, memory)))
            log_z = log_z + jnp.where(due, resampling.log_mean_weight(log_w), 0.0)
            log_w = jnp.where(due, jnp.zeros_like(log_w), log_w)
            x = spread(step.move(k_move, Evaluated(denoiser, process, cond, pred), x, t, s))
            unique = jnp.sum(resampling.offspring(a, n) > 0)
            return (x, memory, log_w, log_z), (size, due, unique)

        state = (x, potential.start(x), gathered(log_w0), jnp.zeros((), jnp.float32))
        ks = jnp.arange(grid.shape[0] - 1)
        (x, memory, log_w, log_z), (sizes, due, unique) = jax.lax.scan(
            body, state, (ks, grid[:-1], grid[1:])
        )
        log_w = gathered(log_w + potential.final(k_final, model, x, memory))
        log_z = log_z + resampling.log_mean_weight(log_w)
        if output == "resample":
            x = jax.tree.map(lambda v: v[draw_ancestors(k_out, log_w)], x)
        info = {
            "nfe": jnp.array(grid.shape[0] - 1, jnp.int32),
            "ess": sizes,
            "resampled": due,
            "unique_ancestors": unique,
            "resamplings": jnp.sum(due),
            "log_weights": log_w,
            "log_z": log_z,
        }
        return x, info

    return sampler

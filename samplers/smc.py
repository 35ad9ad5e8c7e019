"""Sequential Monte Carlo around any one-evaluation sampler step (docs/math.md §7.1).

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

The kernel is open: `build_kernel` gives a `Kernel` with `init`, one step (`__call__`, returning
the new `State` and a `StepInfo`) and `finish`, which `smc` scans over the grid. Stepped by hand
with the same keys it gives `smc`'s result bit for bit; between steps a researcher can look at
the population, change the resampling rule (`due`: `ess_below`, `every`, or any function of
(k, log_w)) or move the particles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from difflab.samplers import resampling
from difflab.samplers.solvers import Bound, Evaluated, Step, advance, started

OUTPUTS = ("resample", "weighted")


@dataclasses.dataclass(frozen=True)
class Potential:
    """Log-weight increments along the reverse path (docs/math.md §7.2, §7.4).

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
            f"{step.nfe} evaluations (use ddpm, ddim with eta > 0, em, dpmpp_2m_sde, ancestral "
            f"or tau_leaping)"
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


class State(NamedTuple):
    """A particle population at one time: x [N, ...], the potential's memory (leading axis N),
    log-weights [N] since the last resampling, the log-normaliser estimate so far, and the
    step's carried state (a multistep move's history, leading axis N; None for most steps)."""

    x: object
    memory: object
    log_w: jax.Array
    log_z: jax.Array
    carry: object = None


class StepInfo(NamedTuple):
    """What one kernel step reports: the ESS before the resampling decision, whether it
    resampled, and the number of distinct parents after it."""

    ess: jax.Array
    resampled: jax.Array
    unique_ancestors: jax.Array


def ess_below(fraction: float):
    """Resample when ESS < fraction N (adaptive resampling; 0: never, 1: almost always)."""
    return lambda k, log_w: resampling.ess(log_w) < fraction * log_w.shape[0]


def every(steps: int):
    """Resample after every `steps`-th step (k + 1 divisible by steps)."""
    return lambda k, log_w: (k + 1) % steps == 0


@dataclasses.dataclass(frozen=True)
class Kernel:
    """The particle system's pieces, to step a population by hand (`init`, `__call__` for one
    step t -> s, `finish`) or through `smc`:

        state = kernel.init(key, model, shape, grid[0])
        state, info = kernel(step_key, model, state, k, grid[k], grid[k + 1])   # k = 0..K-1
        state = kernel.finish(key, model, state)                                # log Z complete

    model: the denoiser bound to its process and condition (`solvers.Bound`). `due(k, log_w)`
    decides resampling (`ess_below`, `every`, or any rule); `scheme` draws ancestors
    (`resampling`); `init(key, process, shape, t)` draws the particles (and optionally their
    initial log-weights). mesh: split the particles over its first axis (see `smc`)."""

    step: Step
    potential: Potential
    scheme: Callable = resampling.systematic
    due: Callable = ess_below(0.5)
    draw: Callable = default_init
    mesh: object = None

    def spread(self, tree):
        return particle_constraint(self.mesh)(tree)

    def gathered(self, tree):
        """The N log-weights on every device, so ESS, log Z and ancestors are computed as on
        one device (the same reductions in the same order)."""
        return particle_constraint(self.mesh, PartitionSpec())(tree)

    def init(self, key, model, shape, t) -> State:
        """Particles x ~ draw at time t with their log-weights (0 unless draw gives them).

        Args:
            key: a PRNG key. model: `solvers.Bound(denoiser, process, cond)`.
            shape: (N, ...) the population (N particles of the data's shape). t: scalar, grid[0].

        Returns:
            State(x [N, ...], memory (leading axis N), log_w [N] float32, log_z = 0, the step's
            carried state or None).
        """
        start = self.draw(key, model.process, shape, t)
        x, log_w = start if isinstance(start, tuple) else (start, 0.0)
        log_w = jnp.broadcast_to(jnp.asarray(log_w, jnp.float32), (shape[0],))
        x = self.spread(x)
        memory, carry = self.potential.start(x), started(self.step, x)
        return State(x, memory, self.gathered(log_w), jnp.zeros((), jnp.float32), carry)

    def __call__(self, key, model, state: State, k, t, s) -> tuple[State, StepInfo]:
        """One step t -> s: one network call, the potential's log-weight increment, resampling
        if due (log Z grows by log mean w, weights reset), then the move reusing the call.

        Args:
            key: this step's PRNG key (`smc` uses split(key, K)[k]). model: `solvers.Bound`.
            state: the population at t. k: the step's index (int32 scalar; `due` reads it).
            t, s: scalars, the step's start and end times (s < t).

        Returns:
            (State at s, StepInfo(ess: scalar before the resampling decision, resampled: bool
            scalar, unique_ancestors: int32 scalar, the distinct parents after it)).
        """
        k_weight, k_res, k_move = jax.random.split(key, 3)
        n = state.log_w.shape[0]
        pred = model.pred(state.x, t)
        log_g, memory = self.potential.step(k_weight, model, pred, state.x, t, s, state.memory)
        log_w = self.gathered(state.log_w + log_g)
        size = resampling.ess(log_w)
        due = self.due(k, log_w)
        a = jnp.where(due, self.scheme(k_res, log_w), jnp.arange(n))
        x, pred, memory, carry = self.spread(
            jax.tree.map(lambda v: v[a], (state.x, pred, memory, state.carry))
        )
        log_z = state.log_z + jnp.where(due, resampling.log_mean_weight(log_w), 0.0)
        log_w = jnp.where(due, jnp.zeros_like(log_w), log_w)
        evaluated = Evaluated(model.denoiser, model.process, model.cond, pred)
        x, carry = self.spread(advance(self.step, k_move, evaluated, x, t, s, carry))
        unique = jnp.sum(resampling.offspring(a, n) > 0)
        return State(x, memory, log_w, log_z, carry), StepInfo(size, due, unique)

    def finish(self, key, model, state: State) -> State:
        """After the last move: the potential's final increment, and log Z's last factor.

        Args:
            key: a PRNG key. model: `solvers.Bound`. state: the population at the grid's end.

        Returns:
            State with log_w [N] the final weights (not reset) and log_z the complete estimate of
            log Z (scalar); `smc` then resamples by log_w or returns them (output="weighted").
        """
        log_w = self.gathered(state.log_w + self.potential.final(key, model, state.x, state.memory))
        return state._replace(log_w=log_w, log_z=state.log_z + resampling.log_mean_weight(log_w))


def build_kernel(
    step: Step,
    potential: Potential,
    scheme: str = "systematic",
    ess_threshold: float = 0.5,
    resample_every: int = 0,
    init=None,
    mesh=None,
) -> Kernel:
    """The `Kernel` of these settings, checked: resampling every `resample_every` steps if > 0,
    else when ESS < ess_threshold N.

    Args:
        step: a one-evaluation stochastic `solvers.Step` (`samplers.smc_step(family, name)`).
        potential: the log-weight increments (`steering.reward_potential`, FKC's potentials).
        scheme: "systematic", "stratified", "multinomial" or "residual".
        ess_threshold: resample when ESS < ess_threshold N (in [0, 1]).
        resample_every: > 0: resample after every k-th step instead.
        init: (key, process, shape, t) -> x [N, ...] or (x, log_w [N]); default: the prior.
        mesh: a device mesh whose first axis splits the particles.

    Returns:
        Kernel with `init`, one step (`__call__`) and `finish` (see `Kernel`).

    Raises:
        ValueError naming a step with more than one evaluation, or a bad scheme or threshold.
    """
    check_step(step)
    check_settings(scheme, ess_threshold, resample_every, "resample")
    due = every(resample_every) if resample_every else ess_below(ess_threshold)
    return Kernel(step, potential, resampling.get(scheme), due, init or default_init, mesh)


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
    shape[0] is the number of particles N: `build_kernel`'s kernel stepped over the grid in one
    lax.scan (step k uses the key fold_in(k_loop, k), so a population stepped by hand with the
    same keys is the same). Resampling is adaptive (ESS < ess_threshold N) unless
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
    steps, tests/scripts/eight_devices.py).

    Args:
        step: a one-evaluation stochastic `solvers.Step` (the particles' proposal).
        potential: the log-weight increments (`steering.reward_potential`,
            `fkc.corrector_weights`, `masked_fkc.unmasking_weights`, or your own `Potential`).
        scheme: "systematic", "stratified", "multinomial" or "residual".
        output: "resample" (unweighted samples) or "weighted" (with info["log_weights"]).

    Returns:
        sampler(key, denoiser, process, shape, cond, grid) -> (x [shape], info): shape[0] = N
        particles; info: nfe, ess [K], resampled [K], unique_ancestors [K], resamplings,
        log_weights [N], log_z.
    """
    check_settings(scheme, ess_threshold, resample_every, output)
    kernel = build_kernel(step, potential, scheme, ess_threshold, resample_every, init, mesh)

    def sampler(key, denoiser, process, shape, cond, grid):
        model = Bound(denoiser, process, cond)
        k_prior, k_loop, k_final, k_out = jax.random.split(key, 4)
        state = kernel.init(k_prior, model, shape, grid[0])

        def body(state, inputs):
            k, t, s = inputs
            return kernel(jax.random.fold_in(k_loop, k), model, state, k, t, s)

        ks = jnp.arange(grid.shape[0] - 1)
        state, infos = jax.lax.scan(body, state, (ks, grid[:-1], grid[1:]))
        state = kernel.finish(k_final, model, state)
        x = state.x
        if output == "resample":
            x = jax.tree.map(lambda v: v[kernel.scheme(k_out, state.log_w)], x)
        info = {
            "nfe": jnp.array(grid.shape[0] - 1, jnp.int32),
            "ess": infos.ess,
            "resampled": infos.resampled,
            "unique_ancestors": infos.unique_ancestors,
            "resamplings": jnp.sum(infos.resampled),
            "log_weights": state.log_w,
            "log_z": state.log_z,
        }
        return x, info

    return sampler

"""Time grids, the one `lax.scan` sampling loop, ODE steps, and the adaptive diffrax path.

Every fixed-step sampler is `make_sampler(step)`: a step function
`step(key, velocity, x, t, s) -> x_s` that moves x from t to s < t, plus its NFE per step.
Samplers have the interface `sampler(key, denoiser, process, shape, cond, grid) -> (x, info)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp

# -- time grids (walked from t = 1 down to t_min) ----------------------------------------------


def uniform_grid(steps: int, t_max: float = 1.0, t_min: float = 0.0) -> jax.Array:
    """t_k = t_max - k (t_max - t_min) / K, k = 0..K."""
    _check_steps(steps)
    return jnp.linspace(t_max, t_min, steps + 1, dtype=jnp.float32)


def shifted_grid(steps: int, shift: float, t_max: float = 1.0, t_min: float = 0.0) -> jax.Array:
    """Uniform grid mapped by t' = kappa t / (1 + (kappa - 1) t) (MATH.md §2.4; SD3 shift)."""
    t = uniform_grid(steps, t_max, t_min)
    return shift * t / (1.0 + (shift - 1.0) * t)


def rho_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> jax.Array:
    """EDM: sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0."""
    _check_steps(steps)
    i = jnp.arange(steps, dtype=jnp.float32) / max(steps - 1, 1)
    inv = sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return jnp.concatenate([inv**rho, jnp.zeros(1)])


def rho_grid(
    steps: int,
    t_of_sigma: Callable,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
) -> jax.Array:
    """The EDM rho grid mapped to process time by the schedule's inverse t(sigma~) (MATH.md §1.5d).

    sigma~ = sigma_t / alpha_t; linear flow path: t = sigma~ / (1 + sigma~).
    """
    return t_of_sigma(rho_sigmas(steps, sigma_min, sigma_max, rho))


def linear_path_t_of_sigma(sigma_tilde):
    """t(sigma~) = sigma~ / (1 + sigma~) for alpha = 1 - t, sigma = t (MATH.md §1.2)."""
    return sigma_tilde / (1.0 + sigma_tilde)


def _check_steps(steps):
    if int(steps) != steps or steps < 1:
        raise ValueError(f"number of sampling steps must be a positive integer, got {steps!r}")


# -- the shared loop --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Step:
    """One reverse move x_t -> x_s and the network evaluations it costs."""

    move: Callable  # (key, velocity, x, t, s) -> x_s
    nfe: int


def scan_grid(move: Callable, key: jax.Array, x: jax.Array, grid: jax.Array):
    """x <- move(key_k, x, t_k, t_{k+1}) for k = 0..K-1 in one lax.scan; key_k = fold_in(key, k)."""

    def body(x, inputs):
        k, t, s = inputs
        return move(jax.random.fold_in(key, k), x, t, s), None

    ks = jnp.arange(grid.shape[0] - 1)
    x, _ = jax.lax.scan(body, x, (ks, grid[:-1], grid[1:]))
    return x


def velocity_field(denoiser, process, cond):
    """(x, t) -> the process's flow velocity at scalar time t, from the denoiser's prediction."""

    def velocity(x, t):
        tb = jnp.full(x.shape[:1], t, jnp.float32)
        return process.velocity(denoiser(x, tb, cond), x, tb)

    return velocity


def make_sampler(step: Step):
    """A fixed-step sampler from a step: prior at grid[0], then the shared scan over the grid."""

    def sampler(key, denoiser, process, shape, cond, grid):
        k_prior, k_loop = jax.random.split(key)
        x = process.prior(k_prior, shape)
        velocity = velocity_field(denoiser, process, cond)
        move = lambda k, x, t, s: step.move(k, velocity, x, t, s)
        x = scan_grid(move, k_loop, x, grid)
        return x, {"nfe": step.nfe * (grid.shape[0] - 1)}

    return sampler


# -- ODE steps --------------------------------------------------------------------------------


def euler_move(key, velocity, x, t, s):
    """x_s = x_t - (t - s) u(x_t, t) (MATH.md §2.4)."""
    del key
    return x - (t - s) * velocity(x, t)


def heun_move(key, velocity, x, t, s):
    """x' = x_t - h u(x_t, t); x_s = x_t - h/2 [u(x_t, t) + u(x', s)] (MATH.md §2.4)."""
    del key
    h = t - s
    u = velocity(x, t)
    x_pred = x - h * u
    return x - 0.5 * h * (u + velocity(x_pred, s))


euler = make_sampler(Step(euler_move, nfe=1))
heun = make_sampler(Step(heun_move, nfe=2))


# -- adaptive ODE through diffrax -------------------------------------------------------------

DIFFRAX_SOLVERS = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5}


def solve_ode(
    vector_field,
    y0,
    t0: float,
    t1: float,
    *,
    solver: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    args=None,
):
    """diffeqsolve of dy/dt = vector_field(t, y, args) from t0 to t1 with PID step control.

    Returns (y(t1), number of vector-field evaluations).
    """
    if solver not in DIFFRAX_SOLVERS:
        known = sorted(DIFFRAX_SOLVERS)
        raise ValueError(f"adaptive solver must be one of {known}, got {solver!r}")
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        DIFFRAX_SOLVERS[solver](),
        t0=t0,
        t1=t1,
        dt0=(t1 - t0) / 64,
        y0=y0,
        args=args,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
    )
    # Tsit5 / Dopri5 are FSAL: 6 new evaluations per attempted step, plus the initial one.
    nfe = 6 * sol.stats["num_steps"] + 1
    return jax.tree.map(lambda y: y[0], sol.ys), nfe


def adaptive(
    key,
    denoiser,
    process,
    shape,
    cond,
    grid,
    *,
    solver: str = "tsit5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
):
    """Adaptive probability-flow ODE from grid[0] to grid[-1] (MATH.md §1.5e)."""
    k_prior, _ = jax.random.split(key)  # the same x1 as the fixed-step samplers for this key
    x1 = process.prior(k_prior, shape)
    velocity = velocity_field(denoiser, process, cond)
    x, nfe = solve_ode(
        lambda t, x, args: velocity(x, t),
        x1,
        grid[0],
        grid[-1],
        solver=solver,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )
    return x, {"nfe": nfe}

"""Time grids, the one `lax.scan` sampling loop, ODE/SDE steps, and the adaptive diffrax path.

Every fixed-step sampler is `make_sampler(Step(move, nfe))`: a move
`move(key, model, x, t, s) -> x_s` takes x from t to s < t, where `model` binds the denoiser to
its process and condition (`Bound`). Samplers have the interface
`sampler(key, denoiser, process, shape, cond, grid) -> (x, info)`.
ODE steps need only `process.velocity`; the ancestral and SDE steps need a Gaussian path
(`models.gaussian.GaussianPath`), which flow and diffusion processes both are.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from difflab.models.common import invert_decreasing
from difflab.models.protocols import Conditioned

# -- time grids (walked from t_max down to t_min) ----------------------------------------------


def uniform_grid(steps: int, t_max: float = 1.0, t_min: float = 0.0) -> jax.Array:
    """t_k = t_max - k (t_max - t_min) / K, k = 0..K."""
    _check_steps(steps)
    return jnp.linspace(t_max, t_min, steps + 1, dtype=jnp.float32)


def shifted_grid(steps: int, shift: float, t_max: float = 1.0, t_min: float = 0.0) -> jax.Array:
    """Uniform grid mapped by t' = kappa t / (1 + (kappa - 1) t) (docs/math.md §2.4; SD3 shift)."""
    t = uniform_grid(steps, t_max, t_min)
    return shift * t / (1.0 + (shift - 1.0) * t)


def power_grid(steps: int, power: float, t_min: float = 0.0) -> jax.Array:
    """t_k = t_min + (1 - t_min) (1 - k/K)^power: power < 1 packs steps near t = 1."""
    _check_steps(steps)
    if not power > 0:
        raise ValueError(f"grid power must be positive, got {power}")
    u = jnp.linspace(1.0, 0.0, steps + 1, dtype=jnp.float32)
    return t_min + (1.0 - t_min) * u**power


def rho_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> jax.Array:
    """EDM: sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0."""
    _check_steps(steps)
    i = jnp.arange(steps, dtype=jnp.float32) / max(steps - 1, 1)
    inv = sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return jnp.concatenate([inv**rho, jnp.zeros(1)])


def edm_grid(
    process, steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> jax.Array:
    """The EDM rho grid in sigma~ = sigma_t / alpha_t = e^(-lambda/2), clamped to the process's
    range and mapped to process time by t(sigma~) = lambda^-1(-2 log sigma~); the final sigma~ = 0
    maps to t = 0 (docs/math.md §1.5d)."""
    t_min = process.t_min
    lo = float(jnp.exp(-0.5 * process.log_snr(max(t_min, 1e-6))))
    hi = float(jnp.exp(-0.5 * process.log_snr(1.0))) if process.log_snr(1.0) > -jnp.inf else 1e30
    s = rho_sigmas(steps, max(sigma_min, lo), min(sigma_max, hi), rho)
    t = invert_decreasing(process.log_snr, -2.0 * jnp.log(s[:-1]), t_min, 1.0)
    return jnp.concatenate([t, jnp.zeros(1)])


def logsnr_grid(process, steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0):
    """Steps uniform in lambda = log(alpha / sigma) between sigma~ = sigma / alpha = sigma_max and
    sigma_min (clamped to the process's range, as `edm_grid`), from t = 1 and to the process's
    t_min: [steps + 1] times, the first and last step reaching the ends (docs/math.md §1.5f)."""
    _check_steps(steps)
    t_min = process.t_min
    lo = max(-2.0 * float(jnp.log(sigma_max)), float(process.log_snr(1.0)))
    hi = min(-2.0 * float(jnp.log(sigma_min)), float(process.log_snr(max(t_min, 1e-6))))
    lam = jnp.linspace(lo, hi, max(steps - 1, 1), dtype=jnp.float32)
    inner = invert_decreasing(process.log_snr, lam, t_min, 1.0)
    inner = inner if steps > 1 else inner[:0]
    return jnp.concatenate([jnp.ones(1), inner, jnp.full(1, t_min)]).astype(jnp.float32)


def _check_steps(steps):
    if int(steps) != steps or steps < 1:
        raise ValueError(f"number of sampling steps must be a positive integer, got {steps!r}")


# -- the denoiser bound to its process --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Bound:
    """The denoiser with its process and condition: predictions at (x, scalar t)."""

    denoiser: Callable
    process: object
    cond: object = None

    def pred(self, x, t):
        """The denoiser at (x, t); a process conditioned on observations (`samplers.observed`)
        makes the call itself."""
        t = jnp.full(x.shape[:1], t, jnp.float32)
        if isinstance(self.process, Conditioned):
            return self.process.predict(self.denoiser, x, t, self.cond)
        return self.denoiser(x, t, self.cond)

    def velocity(self, x, t):
        return self.process.velocity(self.pred(x, t), x, t)

    def finish(self, x):
        """The final samples; a process conditioned on observations puts them in place."""
        return self.process.finish(x) if isinstance(self.process, Conditioned) else x

    def x0_eps(self, x, t):
        return self.process.x0_eps(self.pred(x, t), x, t)

    def score(self, x, t):
        return self.process.score(self.pred(x, t), x, t)


@dataclasses.dataclass(frozen=True)
class Evaluated(Bound):
    """The bound denoiser whose prediction at the current (x, t) is already computed: moves
    that reuse one network call (particle systems, SVDD candidates) read it from here."""

    value: object = None

    def pred(self, x, t):
        del x, t
        return self.value


# -- the shared loop --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Step:
    """One reverse move x_t -> x_s and the network evaluations it costs (the last may differ).

    A step with `start` carries per-sample state between moves (a multistep solver's past
    estimates): `start(x) -> carry` at grid[0] (leading axis = the batch), and then
    `move(key, model, x, t, s, carry) -> (x_s, carry)`; without it, `move(key, model, x, t, s)
    -> x_s`. Loops call `advance`, which treats both alike."""

    move: Callable
    nfe: int
    nfe_last: int | None = None
    start: Callable | None = None


def advance(step: Step, key, model, x, t, s, carry=None):
    """(x_s, carry): the step's move t -> s, threading its carried state where it has one."""
    if step.start is None:
        return step.move(key, model, x, t, s), carry
    return step.move(key, model, x, t, s, carry)


def started(step: Step, x):
    """The carried state of `step` at the first time (None for a step without one)."""
    return None if step.start is None else step.start(x)


@dataclasses.dataclass(frozen=True)
class Memory:
    """A denoiser that remembers across calls (APG's momentum): `init(x) -> buffer` and
    `call(x, t [B], cond, buffer) -> (pred, buffer)`. Fixed-step samplers of one call per step
    thread it (`remembering`); calling such a denoiser plainly is an error."""

    init: Callable
    call: Callable


def remembering(step: Step, memory: Memory) -> Step:
    """`step` with the denoiser's memory threaded through its carry: each move makes the one
    network call at (x_t, t) with the buffer, and the step reuses that prediction."""
    if step.nfe != 1 or (step.nfe_last or 1) != 1:
        raise ValueError(
            f"a denoiser with memory across calls (APG momentum) needs a sampler of one network "
            f"call per step (euler, ddim, ddpm, em, dpmpp_2m, dpmpp_3m, dpmpp_2m_sde, unipc); "
            f"this one makes {step.nfe} per step"
        )

    def start(x):
        return started(step, x), memory.init(x)

    def move(key, model, x, t, s, carry):
        inner, buffer = carry
        if isinstance(model.process, Conditioned):
            raise ValueError("APG momentum does not combine with observations (inpainting)")
        pred, buffer = memory.call(x, jnp.full(x.shape[:1], t, jnp.float32), model.cond, buffer)
        evaluated = Evaluated(model.denoiser, model.process, model.cond, pred)
        x, inner = advance(step, key, evaluated, x, t, s, inner)
        return x, (inner, buffer)

    return Step(move, 1, step.nfe_last, start)


def scan_grid(move: Callable, key: jax.Array, x: jax.Array, grid: jax.Array, keep: bool = False):
    """x <- move(key_k, x, t_k, t_{k+1}) for k = 0..K-1 in one lax.scan; key_k = fold_in(key, k).

    keep=True also returns the states after every move, stacked [K, ...] (trajectories)."""

    def body(x, inputs):
        k, t, s = inputs
        x = move(jax.random.fold_in(key, k), x, t, s)
        return x, (x if keep else None)

    ks = jnp.arange(grid.shape[0] - 1)
    x, path = jax.lax.scan(body, x, (ks, grid[:-1], grid[1:]))
    return (x, path) if keep else x


def walk(step: Step, key, denoiser, process, x, cond, grid, keep: bool = False):
    """`step` from x at grid[0] over the grid in one scan (threading its carry, and the memory
    of a denoiser that has one): (x at grid[-1], the model), or with keep=True the states after
    every move [K, ...] too."""
    memory = getattr(denoiser, "memory", None)
    step = remembering(step, memory) if memory is not None else step
    model = Bound(denoiser, process, cond)

    def move(k, state, t, s):
        return advance(step, k, model, state[0], t, s, state[1])

    out = scan_grid(move, key, (x, started(step, x)), grid, keep=keep)
    if keep:
        return out[0][0], model, out[1][0]
    return out[0], model


def trajectory(step: Step, key, denoiser, process, x, cond, grid):
    """The states [K + 1, ...] of a fixed-step sampler started from the given x at grid[0]."""
    _, _, path = walk(step, key, denoiser, process, x, cond, grid, keep=True)
    return jnp.concatenate([x[None], path])


def make_sampler(step: Step):
    """A fixed-step sampler: x ~ prior at grid[0], then the shared scan over the grid.

    Returns:
        sampler(key, denoiser, process, shape, cond, grid) -> (x [shape], {"nfe": int}), with
        `step.move` applied from grid[k] to grid[k + 1] for k = 0..K-1 (grid [K + 1]).
    """

    def sampler(key, denoiser, process, shape, cond, grid):
        k_prior, k_loop = jax.random.split(key)
        x = process.prior(k_prior, shape, grid[0])
        x, model = walk(step, k_loop, denoiser, process, x, cond, grid)
        x = model.finish(x)
        last = step.nfe if step.nfe_last is None else step.nfe_last
        return x, {"nfe": step.nfe * (grid.shape[0] - 2) + last}

    return sampler


# -- ODE steps (docs/math.md §2.4) -----------------------------------------------------------------


def euler_move(key, model, x, t, s):
    """x_s = x_t - (t - s) u(x_t, t)."""
    del key
    return x - (t - s) * model.velocity(x, t)


def heun_move(key, model, x, t, s):
    """x' = x_t - h u(x_t, t); x_s = x_t - h/2 [u(x_t, t) + u(x', s)]."""
    del key
    h = t - s
    u = model.velocity(x, t)
    return x - 0.5 * h * (u + model.velocity(x - h * u, s))


def heun_edm_move(key, model, x, t, s):
    """Heun on dx~/dsigma~ = (x~ - D) / sigma~ = eps_hat in x~ = z / alpha; Euler on the final
    step to sigma~ = 0 (Karras et al.; docs/math.md §1.5d)."""
    del key
    p = model.process
    sig_t = jnp.exp(-0.5 * p.log_snr(t))
    sig_s = jnp.exp(-0.5 * p.log_snr(s))
    xt = x / p.alpha(t)
    d = model.x0_eps(x, t)[1]
    x_euler = xt + (sig_s - sig_t) * d

    def corrector(_):
        d2 = model.x0_eps(p.alpha(s) * x_euler, s)[1]
        return xt + (sig_s - sig_t) * 0.5 * (d + d2)

    return p.alpha(s) * jax.lax.cond(s > 0, corrector, lambda _: x_euler, None)


# -- ancestral and stochastic steps (docs/math.md §1.5a-c) -----------------------------------------


def final_or(model, s, x0, z):
    """x_hat on the final step (s at the process's t_min), else z (docs/math.md §1.5a)."""
    return jnp.where(s <= model.process.t_min, x0, z)


def ddpm_move(key, model, x, t, s):
    """z_s ~ q(z_s | z_t, x_hat(z_t, t)) (Ho et al.); x_hat itself on the final step."""
    x0, _ = model.x0_eps(x, t)
    mean, var = model.process.posterior_mean_var(x, x0, t, s)
    return final_or(model, s, x0, mean + jnp.sqrt(var) * jax.random.normal(key, x.shape))


def ddim_move(key, model, x, t, s, eta: float = 0.0):
    """z_s = alpha_s x_hat + sqrt(sigma_s^2 - c^2) eps_hat + c xi, c = eta sigma_post (DDIM);
    x_hat itself on the final step."""
    p = model.process
    x0, eps = model.x0_eps(x, t)
    _, var = p.posterior_mean_var(x, x0, t, s)
    c2 = eta**2 * var
    z = p.alpha(s) * x0 + jnp.sqrt(jnp.maximum(p.sigma(s) ** 2 - c2, 0.0)) * eps
    z = z + jnp.sqrt(c2) * jax.random.normal(key, x.shape) if eta else z
    return final_or(model, s, x0, z)


def em_move(key, model, x, t, s, eta: float = 1.0):
    """z_s = z_t - h [f z - (1 + eta^2)/2 g^2 s_hat] + eta g sqrt(h) xi (reverse SDE family)."""
    h = t - s
    f, half_g2 = model.process.drift_and_diffusion(x, t)
    z = x - h * (f * x - (1.0 + eta**2) * half_g2 * model.score(x, t))
    if eta:
        z = z + eta * jnp.sqrt(2.0 * half_g2 * h) * jax.random.normal(key, x.shape)
    return z


euler = make_sampler(Step(euler_move, nfe=1))
heun = make_sampler(Step(heun_move, nfe=2))
heun_edm = make_sampler(Step(heun_edm_move, nfe=2, nfe_last=1))
ddpm = make_sampler(Step(ddpm_move, nfe=1))


def ddim(eta: float = 0.0):
    """DDIM(eta): eta = 0 deterministic, eta = 1 equal in law to DDPM."""
    return make_sampler(Step(functools.partial(ddim_move, eta=eta), nfe=1))


def euler_maruyama(eta: float = 1.0):
    """Euler-Maruyama on the reverse SDE with noise scale eta (eta = 0: probability-flow ODE)."""
    return make_sampler(Step(functools.partial(em_move, eta=eta), nfe=1))


# -- adaptive ODE through diffrax -------------------------------------------------------------

DIFFRAX_SOLVERS = ("dopri5", "tsit5")  # diffrax.Dopri5, diffrax.Tsit5 (the capitalised names)
ADAPTIVE_TOLERANCE = 1e-5  # rtol = atol of the adaptive samplers


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
        raise ValueError(f"adaptive solver must be one of {list(DIFFRAX_SOLVERS)}, got {solver!r}")
    import diffrax  # on first use: importing it costs every process 0.7 s at start otherwise

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        getattr(diffrax, solver.capitalize())(),
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
    rtol: float = ADAPTIVE_TOLERANCE,
    atol: float = ADAPTIVE_TOLERANCE,
    max_steps: int = 4096,
):
    """Adaptive probability-flow ODE from grid[0] to grid[-1] (docs/math.md §1.5f)."""
    k_prior, _ = jax.random.split(key)  # the same x1 as the fixed-step samplers for this key
    x1 = process.prior(k_prior, shape, grid[0])
    model = Bound(denoiser, process, cond)
    x, nfe = solve_ode(
        lambda t, x, args: model.velocity(x, t),
        x1,
        grid[0],
        grid[-1],
        solver=solver,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
    )
    return model.finish(x), {"nfe": nfe}

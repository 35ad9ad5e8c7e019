"""How samples are drawn: every sampler is
`sampler(key, denoiser, process, shape, cond, grid) -> (samples, info)`.

`get(family, name, eta)` gives the sampler and `grid(name, process, steps)` its time grid.
Gaussian families (flow, diffusion) share `solvers`; masked diffusion and count flows have
`discrete`.
"""

import dataclasses
import functools
from collections.abc import Callable

from difflab.models import families
from difflab.models.protocols import ShortcutProcess
from difflab.samplers import discrete, few_step, multistep, solvers


@dataclasses.dataclass(frozen=True)
class Spec:
    """One sampler: how to build it and what it can do. Adding a sampler is one `SPECS` entry
    (and its move); the families that walk with its `kind` get it, and the oracle tests, which
    parametrise over `SPECS`, fail until it has one."""

    build: Callable  # (eta, float64) -> sampler(key, denoiser, process, shape, cond, grid)
    kind: str  # what it walks: "gaussian", "flow_map", "masked", "uniform" or "counts"
    # (eta, float64) -> its one-evaluation stochastic `solvers.Step`, which particle methods
    # (samplers.smc) and SVDD propagate with; None: not one (deterministic, or several calls)
    move: Callable | None = None
    eta: float | None = None  # its default noise scale; None: it takes none
    grid: str = "process"  # "process" (the process's power grid), "edm" (EDM's rho grid in
    # sigma / alpha) or "ends" (adaptive: only the end points; it chooses its own steps)
    categoricals: bool = False  # draws categoricals (float64 Gumbel-max; float32 on request)
    eta_noise: bool = False  # eta scales its only noise: deterministic at eta = 0 (ddim, em)


def step(move, takes_eta: bool = False) -> Callable:
    """(eta, float64) -> the one-evaluation Step of `move` (with its noise scale eta)."""
    if takes_eta:
        return lambda eta, f64: solvers.Step(functools.partial(move, eta=eta), nfe=1)
    return lambda eta, f64: solvers.Step(move, nfe=1)


SPECS = {
    "euler": Spec(lambda eta, f64: solvers.euler, "gaussian"),
    "heun": Spec(lambda eta, f64: solvers.heun, "gaussian"),
    # Heun on EDM's rho grid (Karras et al. 2022), Euler on its last step to sigma~ = 0
    "heun_edm": Spec(lambda eta, f64: solvers.heun_edm, "gaussian", grid="edm"),
    "ddpm": Spec(lambda eta, f64: solvers.ddpm, "gaussian", move=step(solvers.ddpm_move)),
    "ddim": Spec(
        lambda eta, f64: solvers.ddim(eta), "gaussian", step(solvers.ddim_move, True), eta=0.0,
        eta_noise=True,
    ),
    # EDM's grid keeps explicit Euler-Maruyama stable (see `grid`)
    "em": Spec(
        lambda eta, f64: solvers.euler_maruyama(eta), "gaussian", step(solvers.em_move, True),
        eta=1.0, grid="edm", eta_noise=True,
    ),
    # multistep exponential integrators in data prediction, one call per step (docs/math.md §1.5f)
    "dpmpp_2m": Spec(lambda eta, f64: multistep.dpmpp(2), "gaussian"),
    "dpmpp_3m": Spec(lambda eta, f64: multistep.dpmpp(3), "gaussian"),
    "dpmpp_2m_sde": Spec(
        lambda eta, f64: multistep.dpmpp_2m_sde(), "gaussian",
        move=lambda eta, f64: multistep.dpmpp_2m_sde_step(),
    ),
    "unipc": Spec(lambda eta, f64: multistep.unipc(), "gaussian"),
    # adaptive: PID-controlled at rtol = atol = solvers.ADAPTIVE_TOLERANCE (diffrax)
    "adaptive": Spec(lambda eta, f64: solvers.adaptive, "gaussian", grid="ends"),  # Tsit5
    "tsit5": Spec(
        lambda eta, f64: functools.partial(solvers.adaptive, solver="tsit5"), "gaussian",
        grid="ends",
    ),
    "dopri5": Spec(
        lambda eta, f64: functools.partial(solvers.adaptive, solver="dopri5"), "gaussian",
        grid="ends",
    ),
    # average-velocity models: K-step flow maps (they also walk every Gaussian sampler, at the
    # step their flow rows were trained on: process.sampling_denoiser)
    "few_step": Spec(lambda eta, f64: few_step.flow_map, "flow_map"),
    "ancestral": Spec(
        lambda eta, f64: discrete.ancestral(f64), "masked",
        move=lambda eta, f64: discrete.ancestral_step(f64), categoricals=True,
    ),
    "first_hitting": Spec(
        lambda eta, f64: discrete.first_hitting(f64), "masked", categoricals=True
    ),
    # ReMDM remasking (cap, rescale, loop at t_on 0.55, t_off 0.05, alpha_on 0.9), eta at the
    # defaults of its reference code; eta = 0 is the ancestral sampler
    **{
        f"remdm_{kind}": Spec(
            functools.partial(lambda kind, eta, f64: discrete.remdm(kind, eta, f64), kind),
            "masked",
            functools.partial(lambda kind, eta, f64: discrete.remdm_step(kind, eta, f64), kind),
            eta=eta, categoricals=True,
        )
        for kind, eta in (("cap", 0.008), ("rescale", 0.015), ("loop", 0.02))
    },
    # several tokens per call while sum H - max H <= gamma (EB-sampler); eta is gamma
    "entropy_bounded": Spec(
        lambda eta, f64: discrete.entropy_bounded(eta, f64), "masked", eta=0.1, categoricals=True
    ),
    # uniform-state diffusion: the exact reverse step mixing the posteriors (docs/math.md §3.9)
    "uniform_ancestral": Spec(
        lambda eta, f64: solvers.make_sampler(discrete.ancestral_step(f64)), "uniform",
        move=lambda eta, f64: discrete.ancestral_step(f64), categoricals=True,
    ),
    # a biased heuristic (MaskGIT's confidence order)
    "confidence": Spec(lambda eta, f64: discrete.confidence(f64), "masked", categoricals=True),
    "tau_leaping": Spec(
        lambda eta, f64: discrete.tau_leaping, "counts", move=step(discrete.tau_leap_move)
    ),
    "unit_jump": Spec(
        lambda eta, f64: discrete.unit_jump, "counts", move=step(discrete.unit_jump_move)
    ),
    # one call per event, rates frozen on the grid
    "exact": Spec(lambda eta, f64: discrete.exact(f64), "counts", categoricals=True),
}  # fmt: skip
# derived views (read-only): samplers that choose their own steps (runs are named and recorded
# by the tolerance), that take eta, that draw categoricals
ADAPTIVE = tuple(n for n, s in SPECS.items() if s.grid == "ends")
TAKES_ETA = tuple(n for n, s in SPECS.items() if s.eta is not None)
DRAWS_CATEGORICALS = tuple(n for n, s in SPECS.items() if s.categoricals)


def names(family: str) -> tuple:
    """The samplers of model family `family`, in `SPECS` order."""
    kinds = families.get(family).samplers
    return tuple(n for n, s in SPECS.items() if s.kind in kinds)


def sampled_families() -> tuple:
    return families.having(lambda f: f.sampled)


def check(family: str, name: str, eta=None, float64: bool = True) -> None:
    """A clear error for a sampler (or an eta, or float32 categoricals) the family does not
    support."""
    if family not in sampled_families():
        raise ValueError(
            f"no samplers for model family {family!r}; known: {sorted(sampled_families())}"
        )
    if name not in names(family):
        raise ValueError(
            f"sampler {name!r} is not available for the {family!r} family; "
            f"expected one of {sorted(names(family))}"
        )
    if not float64 and name not in DRAWS_CATEGORICALS:
        raise ValueError(
            f"float32 categorical draws (--categorical_float32) apply only to the samplers "
            f"{DRAWS_CATEGORICALS}, which draw categoricals; got sampler {name!r}"
        )
    if eta is not None and (name not in TAKES_ETA or eta < 0):
        raise ValueError(
            f"eta={eta} is only meaningful (and must be >= 0) for the samplers "
            f"{TAKES_ETA}, got sampler {name!r}"
        )


def effective_eta(name: str, eta=None):
    """The noise scale a sampler runs with: the given eta, or its default (ddim 0, em 1, the
    remasking strength of remdm_*); None for samplers without one."""
    default = SPECS[name].eta if name in SPECS else None
    if default is None:
        return None
    return float(eta) if eta is not None else default


def smc_step(family: str, name: str, eta=None, float64: bool = True):
    """The step of sampler `name` as a particle proposal: it must be stochastic and evaluate the
    network once per step (ddim and em need eta > 0)."""
    check(family, name, eta, float64)
    spec, noise = SPECS[name], effective_eta(name, eta)
    if spec.move is None or (spec.eta_noise and noise == 0):
        usable = [n for n in names(family) if SPECS[n].move is not None]
        with_eta = " and ".join(n for n in usable if SPECS[n].eta_noise)
        raise ValueError(
            f"SMC needs a stochastic step that evaluates the network once; sampler {name!r}"
            f"{f' with eta={eta}' if name in TAKES_ETA else ''} is not one (use one of "
            f"{sorted(usable)}{f'; {with_eta} with eta > 0' if with_eta else ''})"
        )
    return spec.move(noise, float64)


def get(family: str, name: str, eta=None, float64: bool = True):
    """The sampler `name` of model family `family`.

    Args:
        family: "flow", "diffusion", "shortcut", "meanflow", "masked", "uniform" or "counts".
        name: one of `names(family)` (`described()` lists them).
        eta: noise scale of ddim (default 0) and em (default 1), remasking strength of the
            remdm_* samplers (docs/math.md §3.7), entropy budget gamma of entropy_bounded
            (§3.8); None for the others.
        float64: categorical draws of the discrete families in float64 (the default).

    Returns:
        sampler(key, denoiser, process, shape, cond, grid) -> (x [shape], info): `denoiser(x_t
        [B, ...], t [B], cond [B] or None)` gives the family's prediction, `shape` = (B, ...)
        is the batch of samples, `grid` [K + 1] runs from grid[0] (the prior) down to its end
        (`grid`); info["nfe"] counts the network calls.

    Raises:
        ValueError naming the family, sampler, eta or float32 setting it does not take.
    """
    check(family, name, eta, float64)
    return SPECS[name].build(effective_eta(name, eta), float64)


GRIDS = ("default", "uniform", "logsnr", "edm")


def check_grid(name: str, kind: str) -> None:
    """A clear error for a grid kind that is unknown or that the sampler cannot walk (a
    non-default grid is for the samplers of the Gaussian families with steps)."""
    if kind not in GRIDS:
        raise ValueError(f"grid={kind!r} must be one of {GRIDS}")
    spec = SPECS[name]
    if kind != "default" and (spec.kind != "gaussian" or spec.grid == "ends"):
        raise ValueError(
            f"grid={kind!r} applies to the Gaussian samplers with a step count; sampler "
            f"{name!r} walks its own grid (use grid='default')"
        )


def grid(name: str, process, steps: int, kind: str = "default"):
    """The time grid [steps + 1] (float32, decreasing from 1) the sampler `name` walks on
    `process`. kind "default", by its spec: EDM's rho grid in sigma~ = sigma / alpha from
    sigma~ = 80 to 0 (heun_edm, em), the process's power grid t_k = (1 - k/K)^grid_power down to
    its t_min, or (adaptive samplers) its two end points, whatever `steps`. A Gaussian sampler
    may walk another: "uniform" in t, "logsnr" (uniform in lambda, `solvers.logsnr_grid`) or
    "edm" (`solvers.edm_grid`).

    For em the EDM grid is what keeps explicit Euler-Maruyama stable: near t = 1 the drift f_t
    and g_t^2 grow like 1 / (1 - t) (flows) or 1 / sin(pi (1 - t)) (VP-cosine), so uniform steps
    in t overshoot there (linear flow, 50 steps from t = 0.999: the state's std after the first
    step is 20, not 1)."""
    check_grid(name, kind)
    if kind == "uniform":
        return solvers.uniform_grid(steps, 1.0, process.t_min)
    if kind == "logsnr":
        return solvers.logsnr_grid(process, steps)
    kind = "edm" if kind == "edm" else SPECS[name].grid
    if kind == "ends":  # only the end points are used
        return solvers.uniform_grid(1, 1.0, process.t_min)
    if kind == "edm":
        return solvers.edm_grid(process, steps)
    if SPECS[name].kind == "flow_map" and isinstance(process, ShortcutProcess):
        if 1.0 / steps not in process.step_sizes():
            raise ValueError(
                f"a shortcut model samples with K in {[round(1 / d) for d in process.step_sizes()]}"
                f" steps (the step sizes it was trained on), got {steps}"
            )
    if process.grid_power != 1.0:
        return solvers.power_grid(steps, process.grid_power, process.t_min)
    return solvers.uniform_grid(steps, 1.0, process.t_min)


def described(of=None) -> str:
    """The samplers of each family, one clause per family (for --help and errors)."""
    return "; ".join(f"{f}: {', '.join(names(f))}" for f in of or sampled_families())

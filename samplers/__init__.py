"""How samples are drawn: every sampler is
`sampler(key, denoiser, process, shape, cond, grid) -> (samples, info)`.

`get(family, name, eta)` gives the sampler and `grid(name, process, steps)` its time grid.
Gaussian families (flow, diffusion) share `solvers`; masked diffusion and count flows have
`discrete`.
"""

import functools

from difflab.samplers import discrete, few_step, solvers

# Samplers of the Gaussian families (flow matching and diffusion share all of them: flows
# expose score and x0/eps through velocity conversions, diffusion exposes a velocity).
# Factories take (eta, float64); float64 selects float64 categorical draws (discrete families).
GAUSSIAN_SAMPLERS = {
    "euler": lambda eta, f64: solvers.euler,
    "heun": lambda eta, f64: solvers.heun,
    "heun_edm": lambda eta, f64: solvers.heun_edm,
    "ddpm": lambda eta, f64: solvers.ddpm,
    "ddim": lambda eta, f64: solvers.ddim(effective_eta("ddim", eta)),
    "em": lambda eta, f64: solvers.euler_maruyama(effective_eta("em", eta)),
    "adaptive": lambda eta, f64: solvers.adaptive,  # Tsit5
    "tsit5": lambda eta, f64: functools.partial(solvers.adaptive, solver="tsit5"),
    "dopri5": lambda eta, f64: functools.partial(solvers.adaptive, solver="dopri5"),
}
# Samplers that choose their own steps (PID control at rtol = atol = solvers.ADAPTIVE_TOLERANCE):
# a step count does not apply to them; runs are named and recorded by the tolerance.
ADAPTIVE = ("adaptive", "tsit5", "dopri5")
MASKED_SAMPLERS = {
    "ancestral": lambda eta, f64: discrete.ancestral(f64),
    "first_hitting": lambda eta, f64: discrete.first_hitting(f64),
    "confidence": lambda eta, f64: discrete.confidence(f64),  # biased heuristic (MaskGIT)
}
COUNT_SAMPLERS = {
    "tau_leaping": lambda eta, f64: discrete.tau_leaping,
    "unit_jump": lambda eta, f64: discrete.unit_jump,
    "exact": lambda eta, f64: discrete.exact(f64),  # one call per event, rates frozen on the grid
}
# Average-velocity models: K-step flow maps, plus every ODE / SDE sampler at the step their flow
# rows were trained on (process.sampling_denoiser: h = 1/M for shortcut, h = 0 for MeanFlow).
FLOW_MAP_SAMPLERS = {"few_step": lambda eta, f64: few_step.flow_map, **GAUSSIAN_SAMPLERS}
SAMPLERS = {
    "flow": GAUSSIAN_SAMPLERS,
    "shortcut": FLOW_MAP_SAMPLERS,
    "meanflow": FLOW_MAP_SAMPLERS,
    "diffusion": GAUSSIAN_SAMPLERS,
    "masked": MASKED_SAMPLERS,
    "counts": COUNT_SAMPLERS,
}
TAKES_ETA = ("ddim", "em")
# samplers that draw categoricals (Gumbel-max; float64 by default, float32 on request)
DRAWS_CATEGORICALS = ("ancestral", "first_hitting", "confidence", "exact")
DATA_KIND = {"masked": "tokens", "counts": "counts"}  # others model points / images


def check(family: str, name: str, eta=None, float64: bool = True) -> None:
    """A clear error for a sampler (or an eta, or float32 categoricals) the family does not
    support."""
    if family not in SAMPLERS:
        raise ValueError(f"no samplers for model family {family!r}; known: {sorted(SAMPLERS)}")
    if name not in SAMPLERS[family]:
        raise ValueError(
            f"sampler {name!r} is not available for the {family!r} family; "
            f"expected one of {sorted(SAMPLERS[family])}"
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
    """The noise scale a sampler runs with: the given eta, or the default of ddim (0) and em (1);
    None for samplers without one."""
    if name not in TAKES_ETA:
        return None
    return float(eta) if eta is not None else {"ddim": 0.0, "em": 1.0}[name]


# One-evaluation stochastic steps that a particle system (samplers.smc) can propagate with.
SMC_STEPS = {
    "ddpm": lambda eta, f64: solvers.Step(solvers.ddpm_move, nfe=1),
    "ddim": lambda eta, f64: solvers.Step(
        functools.partial(solvers.ddim_move, eta=effective_eta("ddim", eta)), nfe=1
    ),
    "em": lambda eta, f64: solvers.Step(
        functools.partial(solvers.em_move, eta=effective_eta("em", eta)), nfe=1
    ),
    "ancestral": lambda eta, f64: discrete.ancestral_step(f64),
    "tau_leaping": lambda eta, f64: solvers.Step(discrete.tau_leap_move, nfe=1),
    "unit_jump": lambda eta, f64: solvers.Step(discrete.unit_jump_move, nfe=1),
}


def smc_step(family: str, name: str, eta=None, float64: bool = True):
    """The step of sampler `name` as a particle proposal: it must be stochastic and evaluate the
    network once per step (ddim and em need eta > 0)."""
    check(family, name, eta, float64)
    stochastic = name not in TAKES_ETA or effective_eta(name, eta) > 0
    if name not in SMC_STEPS or not stochastic:
        usable = sorted(n for n in SMC_STEPS if n in SAMPLERS[family])
        raise ValueError(
            f"SMC needs a stochastic step that evaluates the network once; sampler {name!r}"
            f"{f' with eta={eta}' if name in TAKES_ETA else ''} is not one (use one of {usable}"
            f"{'; ddim and em with eta > 0' if 'em' in usable else ''})"
        )
    return SMC_STEPS[name](eta, float64)


def get(family: str, name: str, eta=None, float64: bool = True):
    """The sampler `name` of model family `family`.

    Args:
        family: "flow", "diffusion", "shortcut", "meanflow", "masked" or "counts".
        name: one of `SAMPLERS[family]` (`described()` lists them).
        eta: noise scale of ddim (default 0) and em (default 1); None for the others.
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
    return SAMPLERS[family][name](eta, float64)


# Samplers that walk EDM's rho grid in sigma~ = sigma / alpha, from sigma~ = 80 to 0. For em this
# is what keeps explicit Euler-Maruyama stable: near t = 1 the drift f_t and g_t^2 grow like
# 1 / (1 - t) (flows) or 1 / sin(pi (1 - t)) (VP-cosine), so uniform steps in t overshoot there
# (linear flow, 50 steps from t = 0.999: the state's std after the first step is 20, not 1).
EDM_GRID_SAMPLERS = ("heun_edm", "em")


def grid(name: str, process, steps: int):
    """The time grid [steps + 1] (float32, decreasing from 1) the sampler `name` walks on
    `process`: EDM's rho grid for heun_edm and em; the process's power grid if it has one
    (counts); otherwise uniform from 1 to the process's t_min (adaptive samplers: its two end
    points, whatever `steps`)."""
    if name in ADAPTIVE:  # only the end points are used
        return solvers.uniform_grid(1, 1.0, process.t_min)
    if name in EDM_GRID_SAMPLERS:
        return solvers.edm_grid(process, steps)
    if name == "few_step" and hasattr(process, "step_sizes"):
        if 1.0 / steps not in process.step_sizes():
            raise ValueError(
                f"a shortcut model samples with K in {[round(1 / d) for d in process.step_sizes()]}"
                f" steps (the step sizes it was trained on), got {steps}"
            )
    power = getattr(process, "grid_power", 1.0)
    if power != 1.0:
        return solvers.power_grid(steps, power, process.t_min)
    return solvers.uniform_grid(steps, 1.0, process.t_min)


def described(families=None) -> str:
    """The samplers of each family, one clause per family (for --help and errors)."""
    families = families or SAMPLERS
    return "; ".join(f"{f}: {', '.join(SAMPLERS[f])}" for f in families)

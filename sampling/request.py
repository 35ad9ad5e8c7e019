"""One sampling job as a frozen, validated value: `Request(sampler="em", steps=20, ...)`.

Its fields are `sample.py`'s flags, name for name (the CLI defines its flags from them), and
`Run.sample` takes a Request or the same names. Checks that need no run happen on construction;
`resolved(config)` fills the run's eval defaults and checks the rest against its saved config,
before any network is built. Guidance and particle settings (docs/math.md §6, §7) are derived
from the flat fields as `guide()` (a `sampling.guides.Guide`) and `steering()` (a
`sampling.particles.Steering`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from difflab import samplers
from difflab.samplers import ADAPTIVE, resampling, steering
from difflab.samplers.solvers import ADAPTIVE_TOLERANCE
from difflab.sampling import guides, particles
from difflab.sampling.draw import check_request


def field(default, help: str, **kw):
    """A Request field with its CLI help text."""
    return dataclasses.field(default=default, metadata={"help": help, **kw})


@dataclasses.dataclass(frozen=True)
class Request:
    """A sampling job: every setting that changes the samples (a workdir / path or, from Python,
    a loaded `Run` / (values, known) arrays for classifier, value, experts and observed)."""

    sampler: str | None = field(
        None,
        f"sampler (default: the config's eval sampler), by the run's family: "
        f"{samplers.described()}",
    )
    steps: int | None = field(
        None,
        f"sampling steps (default: the config's; not for the adaptive {', '.join(ADAPTIVE)}, "
        f"which choose their own at rtol = atol = {ADAPTIVE_TOLERANCE:g})",
    )
    num_samples: int | None = field(None, "number of samples (default: the config's eval)")
    grid: str = field(
        "default",
        "Gaussian samplers' time grid: default (the sampler's own), uniform (in t), logsnr "
        "(uniform in log-SNR), edm (EDM's rho grid)",
        choices=samplers.GRIDS,
    )
    seed: int = field(0, "sampling seed: sample i depends only on (seed, i)")
    eta: float | None = field(
        None,
        "noise scale of ddim (default 0) and em (default 1); remasking strength of remdm_cap, "
        "remdm_rescale, remdm_loop (defaults 0.008, 0.015, 0.02)",
    )
    categorical_float32: bool = field(
        False, "samplers that draw categoricals: float32 Gumbel-max (biased colder)"
    )
    cfg_scale: float | None = field(None, "classifier-free guidance weight w (1 = conditional)")
    batch_size: int | None = field(None, "samples per compiled call (default: all)")
    steer: str | None = field(
        None,
        "particle sampling (SMC, num_samples particles): FK steering toward exp(scale r), or "
        "Feynman-Kac correctors for p^beta, the CFG target p^(1-w) p(.|c)^w (w = cfg_scale) or "
        "a product with --experts",
        choices=particles.METHODS,
    )
    reward: str = field("", "reward of steer=reward, reward_guidance and svdd")
    reward_arg: str = field("", "the reward's argument (a point, class, token)")
    reward_scale: float = field(1.0, "steer=reward: lambda of exp(lambda r)")
    potential: str = field("diff", "FK potential", choices=tuple(steering.POTENTIALS))
    potential_every: int = field(1, "apply the potential every k steps")
    beta: float = field(2.0, "steer=anneal: the exponent of p^beta")
    experts: tuple = field((), "steer=product: workdirs of the other models")
    expert_weights: tuple = field(
        (), "steer=product: exponents of this run's model, then of each expert"
    )
    resampling: str = field("systematic", "resampling scheme", choices=tuple(resampling.SCHEMES))
    ess_threshold: float = field(0.5, "resample when ESS < this fraction of particles")
    resample_every: int = field(0, "resample every k steps (0: by ESS)")
    label: int | None = field(None, "the particles' class (conditional runs)")
    cfg_interval: tuple | None = field(
        None, "t_lo,t_hi: apply cfg_scale only for t in [t_lo, t_hi] (1 elsewhere)"
    )
    classifier: Any = field(None, "workdir of a noise-conditional classifier run")
    classifier_scale: float = field(0.0, "classifier guidance scale gamma")
    classifier_exact: bool = field(
        True, "masked runs: the exact tilted denoiser (else its first-order approximation)"
    )
    reward_guidance: float = field(0.0, "scale rho of grad reward at the denoised estimate")
    svdd: int = field(0, "SVDD: candidates per step, valued by the reward (0: off)")
    svdd_alpha: float = field(0.0, "SVDD temperature alpha (0: argmax)")
    value: Any = field(None, "SVDD-MC: workdir of a value run instead of the reward")
    prompt: str | None = field(None, "text runs: the text every sample starts with")
    observed: Any = field(None, ".npz with x (values) and known (bool mask): infilling")
    prompt_scale: float | None = field(None, "masked runs: SMDM guidance w of the observation")
    measurement_scale: float = field(0.0, "Gaussian inpainting: scale of the DPS score")
    noise_std: float = field(0.1, "Gaussian inpainting: measurement noise std")
    guidance_interval: tuple = field(
        (0.0, 0.95), "t_lo,t_hi where classifier, reward-gradient and measurement guidance act"
    )
    unconditional: bool = field(False, "conditional runs: the null-label model")
    replace: bool = field(True, "Gaussian inpainting: the denoised estimate takes the observation")
    autoguide: Any = field(
        None, "autoguidance's weak model: a checkpoint step of this run, or another run's workdir"
    )
    guide_scale: float = field(2.0, "autoguidance weight w of D_weak + w (D - D_weak)")
    apg_parallel: float | None = field(
        None, "APG: weight of the CFG update's part parallel to x_hat_c (0: APG; off if unset)"
    )
    apg_threshold: float | None = field(None, "APG: cap r on the norm of the CFG update")
    apg_momentum: float = field(
        0.0, "APG: beta of the running sum of CFG updates (negative, e.g. -0.5; 0: none)"
    )
    temperature: float = field(1.0, "masked runs: token logits / temperature (changes the law)")
    top_p: float = field(1.0, "masked runs: nucleus sampling, the top-p tokens (changes the law)")

    def __post_init__(self):
        for name in ("cfg_interval", "guidance_interval"):
            set_pair(self, name)
        positive = {k: getattr(self, k) for k in ("steps", "num_samples", "batch_size")}
        for name, v in positive.items():
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ValueError(f"{name}={v!r} must be a positive integer (or None: the default)")
        for name, f in ((f.name, f) for f in dataclasses.fields(self)):
            choices = f.metadata.get("choices")
            if choices and getattr(self, name) is not None and getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r} must be one of {choices}")
        if self.eta is not None and self.eta < 0:
            raise ValueError(f"eta={self.eta} must be >= 0")
        if not -1.0 < self.apg_momentum < 1.0:
            raise ValueError(
                f"apg_momentum={self.apg_momentum} must be in (-1, 1) (the running sum of APG's "
                f"updates diverges otherwise)"
            )
        try:
            weights = tuple(float(w) for w in self.expert_weights)
        except (TypeError, ValueError):
            raise ValueError(
                f"expert_weights must be numbers, got {self.expert_weights!r}"
            ) from None
        object.__setattr__(self, "expert_weights", weights)
        object.__setattr__(self, "experts", tuple(self.experts))
        if self.prompt is not None and self.observed is not None:
            raise ValueError("give prompt or observed, not both")
        if self.steer is not None and self.guide() != guides.Guide():
            raise ValueError(
                "guidance settings (classifier_scale, reward_guidance, svdd, cfg_interval, "
                "prompt_scale, measurement_scale, temperature, top_p, autoguide) apply to plain "
                "sampling; "
                "steer sets its own target"
            )

    @property
    def plain_cfg_scale(self):
        """The CFG weight of the denoiser (steer=cfg takes cfg_scale as its target's w)."""
        return None if self.steer == "cfg" else self.cfg_scale

    def steering(self) -> particles.Steering | None:
        """The particle-sampling setting (None without steer)."""
        if self.steer is None:
            return None
        return particles.Steering(
            method=self.steer, reward=self.reward, reward_arg=self.reward_arg,
            scale=self.reward_scale, potential=self.potential, every=self.potential_every,
            beta=self.beta, cfg_scale=self.cfg_scale if self.cfg_scale is not None else 0.0,
            weights=self.expert_weights, scheme=self.resampling,
            ess_threshold=self.ess_threshold, resample_every=self.resample_every,
            label=self.label,
        )  # fmt: skip

    def guide(self) -> guides.Guide:
        """The guidance setting."""
        rewarded = bool(self.reward_guidance or self.svdd)
        return guides.Guide(
            learned_values=self.value is not None, cfg_interval=self.cfg_interval,
            classifier_scale=self.classifier_scale, classifier_exact=self.classifier_exact,
            reward=self.reward if rewarded else "", reward_arg=self.reward_arg if rewarded else "",
            reward_scale=self.reward_guidance, svdd=self.svdd, svdd_alpha=self.svdd_alpha,
            prompt_scale=self.prompt_scale, measurement_scale=self.measurement_scale,
            noise_std=self.noise_std, replace=self.replace, unconditional=self.unconditional,
            gradient_interval=self.guidance_interval, temperature=self.temperature,
            top_p=self.top_p,
            autoguide_scale=None if self.autoguide is None else self.guide_scale,
            apg_parallel=self.apg_parallel, apg_threshold=self.apg_threshold,
            apg_momentum=self.apg_momentum,
        )  # fmt: skip

    @property
    def effective_eta(self):
        return samplers.effective_eta(self.sampler, self.eta)

    def resolved(self, config, helper_configs=None) -> Request:
        """This request with the run's eval defaults filled in (sampler, steps, num_samples),
        checked against its saved `config` (and the configs of its classifier / value runs,
        {"classifier": ..., "value": ...}); a ValueError names what the run cannot take."""
        sampler, steps, num = check_request(
            config, self.sampler, self.steps, self.num_samples, self.eta,
            self.categorical_float32, self.plain_cfg_scale,
        )  # fmt: skip
        out = dataclasses.replace(self, sampler=sampler, steps=steps, num_samples=num)
        samplers.check_grid(sampler, out.grid)
        if out.steer is not None:
            particles.check(config, out.steering(), sampler, out.eta, len(out.experts))
        helpers = helper_configs or {}
        if helpers.get("classifier") is not None:
            guides.check_classifier(config, helpers["classifier"])
        if helpers.get("value") is not None:
            guides.check_value(config, out.guide(), helpers["value"])
        return out

    def name(self, checkpoint: int) -> str:
        """The default output folder's name: every setting that changes the samples."""
        steer = self.steering()
        parts = [
            f"{self.sampler}_rtol{ADAPTIVE_TOLERANCE:g}"
            if self.steps is None
            else f"{self.sampler}_{self.steps}steps"
        ]
        eta, cfg = self.effective_eta, self.plain_cfg_scale
        parts += [] if eta is None else [f"eta{eta:g}"]
        parts += [] if cfg is None else [f"cfg{cfg:g}"]
        parts += ["float32"] if self.categorical_float32 else []
        parts += [] if self.grid == "default" else [f"{self.grid}grid"]
        parts += [] if steer is None else [steer.name()]
        parts += [] if steer is None or steer.label is None else [f"label{steer.label}"]
        parts += [f"seed{self.seed}", f"ckpt{checkpoint}"]
        weak = "" if self.autoguide is None else "weak" + os.path.basename(str(self.autoguide))
        named = (self.guide().name(), weak, self.observed_name())
        return "_".join(parts + [p for p in named if p])

    def observed_name(self) -> str:
        """The observation's part of the output folder's name."""
        if self.prompt is not None:
            return "prompt" + "".join(c if c.isalnum() else "-" for c in self.prompt)[:24]
        if isinstance(self.observed, str):
            return "observed-" + os.path.splitext(os.path.basename(self.observed))[0]
        return "" if self.observed is None else "observed"

    def setting(self, run_name: str, checkpoint: int) -> dict:
        """The JSON record of the job that a folder of streamed shards belongs to."""
        record = dict(run=run_name, checkpoint=checkpoint, sampler=self.sampler)
        record |= dict(steps=self.steps, eta=self.effective_eta, cfg_scale=self.plain_cfg_scale)
        record |= dict(float32=self.categorical_float32, seed=self.seed, num=self.num_samples)
        record |= {} if self.grid == "default" else dict(grid=self.grid)
        # as JSON holds it (tuples become lists), so that a rerun's setting compares equal
        record |= dict(guide=json.loads(json.dumps(dataclasses.asdict(self.guide()))))
        record |= dict(classifier=workdir_of(self.classifier), value=workdir_of(self.value))
        record |= dict(autoguide=workdir_of(self.autoguide))
        return record | dict(prompt=self.prompt, observed=workdir_of(self.observed))

    def record(self) -> dict:
        """The job as sample.py's metrics.json records it (settings left at their default
        omitted where they do not apply)."""
        steer = self.steering()
        out = {"sampler": self.sampler, "steps": self.steps}  # steps None: adaptive
        out |= {} if self.steps is not None else {"rtol": ADAPTIVE_TOLERANCE}
        out |= {} if self.steps is not None else {"atol": ADAPTIVE_TOLERANCE}
        out |= {} if self.effective_eta is None else {"eta": self.effective_eta}
        out |= {"cfg_scale": self.plain_cfg_scale, "seed": self.seed}
        out |= {} if self.grid == "default" else {"grid": self.grid}
        out |= {"categorical_float32": self.categorical_float32, "batch_size": self.batch_size}
        out |= {} if steer is None else {"steer": dataclasses.asdict(steer)}
        out |= {"guide": dataclasses.asdict(self.guide())} if self.guide().name() else {}
        names = ("classifier", "value", "observed", "autoguide")
        named = {k: workdir_of(getattr(self, k)) for k in names}
        return (
            out
            | {k: v for k, v in named.items() if v}
            | ({"prompt": self.prompt} if self.prompt else {})
        )


def set_pair(request: Request, name: str) -> None:
    """Two numbers t_lo,t_hi (a list, tuple or "lo,hi" string) as a tuple of floats."""
    values = getattr(request, name)
    if values is None:
        return
    if isinstance(values, str):
        values = values.split(",")
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 2:
        raise ValueError(f"{name} must be two numbers t_lo,t_hi, got {values!r}")
    object.__setattr__(request, name, out)


def workdir_of(helper):
    """The workdir or file a helper was given by (a loaded Run or arrays: None)."""
    return helper if isinstance(helper, str) else None


FLAG_KINDS = {"int": "integer", "float": "float", "bool": "bool", "tuple": "list"}


def define_flags(module_name: str | None = None, flag_values=None) -> dict:
    """One absl flag per Request field (the field's name, type, default and help), listed by
    --help under `module_name` (a CLI passes sys.argv[0]), in `flag_values` (default: absl's
    FLAGS); returns {name: FlagHolder}.
    `from_flags` turns their values back into a Request."""
    from absl import flags

    holders = {}
    for f in dataclasses.fields(Request):
        kind = FLAG_KINDS.get(f.type.split(" ")[0], "string")
        default = f.default
        if kind == "list" and default is not None:
            default = [f"{v:g}" if isinstance(v, float) else str(v) for v in default]
        kw = {} if module_name is None else {"module_name": module_name}
        kw |= {} if flag_values is None else {"flag_values": flag_values}
        choices = f.metadata.get("choices")
        if choices:
            holders[f.name] = flags.DEFINE_enum(
                f.name, default, list(choices), f.metadata["help"], **kw
            )
        else:
            define = getattr(flags, f"DEFINE_{kind}")
            holders[f.name] = define(f.name, default, f.metadata["help"], **kw)
    return holders


def from_flags(holders: dict) -> Request:
    """The Request of the flags `define_flags` defined (lists become tuples)."""
    values = {k: h.value for k, h in holders.items()}
    return Request(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

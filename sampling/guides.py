"""Guidance of a run's sampler, as `sample.py` flags and `draw(..., guide=Guide(...))` build it
(docs/math.md §6): the CFG interval, classifier guidance with a trained noise-conditional classifier
run, reward-gradient guidance, SVDD, and observations (masked prompts and infilling, Gaussian
inpainting).

Each is a transform of the run's denoiser or process (`samplers.guidance`,
`samplers.observed`) or, for SVDD, a wrapper of the sampler's step (`samplers.svdd`).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from difflab import samplers
from difflab.data import rewards
from difflab.models import families
from difflab.models.mixing import NULL_LABEL
from difflab.models.protocols import MaskedProcess, UniformProcess
from difflab.samplers import discrete, guidance, solvers, svdd
from difflab.samplers.observed import Observed, observe

DIFFERENTIABLE_REWARDS = ("target", "class")  # JAX functions of the samples


@dataclasses.dataclass(frozen=True)
class Guide:
    """One guidance setting (hashable: compiled samplers are kept per setting)."""

    cfg_interval: tuple | None = None  # (t_lo, t_hi) of the CFG scale; 1 outside
    classifier_scale: float = 0.0  # gamma of grad log p_phi(c | x_t, t) (a classifier run)
    classifier_exact: bool = True  # masked: the exact tilted denoiser (else first order)
    reward: str = ""  # the reward of reward_scale and svdd (data.rewards)
    reward_arg: str = ""
    reward_scale: float = 0.0  # rho of grad r(x_hat(x_t, t)) (Gaussian families)
    svdd: int = 0  # SVDD candidates per step (0: off)
    svdd_alpha: float = 0.0  # SVDD temperature (0: argmax)
    learned_values: bool = False  # SVDD-MC: values from a value run (given beside the guide)
    prompt_scale: float | None = None  # masked prompts: SMDM's unsupervised guidance w
    measurement_scale: float = 0.0  # Gaussian inpainting: the DPS score's scale
    noise_std: float = 0.1  # Gaussian inpainting: the measurement noise
    replace: bool = True  # Gaussian inpainting: x_hat = y at the observed coordinates
    unconditional: bool = False  # a conditional run's null-label (unconditional) prediction
    # where classifier, reward-gradient and measurement guidance act: the score shift is
    # sigma_t^2 / alpha_t times the gradient, 1e4 at t = 1 - 1e-4 on a flow (alpha_1 = 0), so a
    # trained classifier's residual gradient near t = 1 (chance accuracy there) wrecks the
    # samples (digits, euler 5 steps: Frechet distance 1.7e6 when guided on all of [0, 1])
    gradient_interval: tuple = (0.0, 0.95)
    autoguide_scale: float | None = None  # w of D_weak + w (D - D_weak) (a weak run beside)
    apg_parallel: float | None = None  # APG: weight of CFG's update parallel to x_hat_c (None: off)
    apg_threshold: float | None = None  # APG: the update's norm cap r
    apg_momentum: float = 0.0  # APG: beta of the running sum of updates over calls (0: none)
    temperature: float = 1.0  # masked: token logits / temperature (changes the law)
    top_p: float = 1.0  # masked: nucleus sampling of the tokens (changes the law)

    def name(self) -> str:
        """A short name of the setting for output folders ('' when nothing is set)."""
        parts = []
        if self.cfg_interval is not None:
            parts.append("cfgint{:g}-{:g}".format(*self.cfg_interval))
        if self.classifier_scale:
            parts.append(f"clf{self.classifier_scale:g}")
        if not self.classifier_exact:
            parts.append("clf1storder")
        if self.reward_scale:
            parts.append(f"rgrad{self.reward}{self.reward_arg}x{self.reward_scale:g}")
        if self.svdd:
            values = "mc" if self.learned_values else f"{self.reward}{self.reward_arg}"
            parts.append(f"svdd{self.svdd}a{self.svdd_alpha:g}{values}")
        if self.prompt_scale is not None:
            parts.append(f"prompt{self.prompt_scale:g}")
        if self.measurement_scale:
            parts.append(f"dps{self.measurement_scale:g}s{self.noise_std:g}")
        if not self.replace:
            parts.append("noreplace")
        if self.unconditional:
            parts.append("uncond")
        if self.gradient_interval != (0.0, 0.95):
            parts.append("gradint{:g}-{:g}".format(*self.gradient_interval))
        if self.apg_parallel is not None:
            parts.append(f"apg{self.apg_parallel:g}")
        if self.apg_threshold is not None:
            parts.append(f"r{self.apg_threshold:g}")
        if self.apg_momentum:
            parts.append(f"beta{self.apg_momentum:g}")
        if self.autoguide_scale is not None:
            parts.append(f"autoguide{self.autoguide_scale:g}")
        if self.temperature != 1:
            parts.append(f"temp{self.temperature:g}")
        if self.top_p != 1:
            parts.append(f"topp{self.top_p:g}")
        return "_".join(parts).replace(",", "-").replace(" ", "")


def check(
    config, guide: Guide, sampler_name: str, eta, cfg_scale, classifier=None, observed=None
) -> None:
    """Clear errors for a guidance setting the run cannot take (classifier: the classifier run's
    config; observed: (values, known) or None)."""
    family = config.process.family
    takes = families.get(family).guidance
    if guide.unconditional and not (config.model.conditional and config.process.label_dropout):
        raise ValueError(
            f"--unconditional uses the null-label prediction of a class-conditional run trained "
            f"with label dropout; {config.name!r} is not one"
        )
    if guide.unconditional and cfg_scale is not None:
        raise ValueError(
            "--unconditional and --cfg_scale exclude each other (CFG w = 0 is the "
            "unconditional model)"
        )
    apg_set = guide.apg_threshold is not None or guide.apg_momentum
    if (guide.apg_parallel is not None or apg_set) and (
        cfg_scale is None or guide.apg_parallel is None or "gradient" not in takes
    ):
        raise ValueError(
            f"APG (--apg_parallel, --apg_threshold, --apg_momentum) reshapes the CFG update of a "
            f"Gaussian family "
            f"{guided_by('gradient')} in its denoised estimate: give --cfg_scale and "
            f"--apg_parallel; {config.name!r} is {family!r}"
        )
    if guide.autoguide_scale is not None and cfg_scale is not None:
        raise ValueError(
            "--autoguide and --cfg_scale exclude each other (both guide the run's prediction; "
            "give one)"
        )
    if guide.cfg_interval is not None:
        lo, hi = guide.cfg_interval
        if cfg_scale is None and guide.autoguide_scale is None:
            raise ValueError("--cfg_interval sets where --cfg_scale applies; give --cfg_scale")
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"--cfg_interval={lo},{hi} must satisfy 0 <= t_lo <= t_hi <= 1")
    lo, hi = guide.gradient_interval
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"--guidance_interval={lo},{hi} must satisfy 0 <= t_lo <= t_hi <= 1")
    gradient = guide.reward_scale or guide.measurement_scale
    if gradient and "gradient" not in takes:
        raise ValueError(
            f"reward-gradient and measurement guidance add to the score of a Gaussian family "
            f"{guided_by('gradient')}; {config.name!r} is {family!r} (use --svdd for "
            f"derivative-free guidance)"
        )
    if guide.classifier_scale and "classifier" not in takes:
        raise ValueError(
            f"classifier guidance needs a family {guided_by('classifier')} (through the score, "
            f"or masked diffusion's tilted denoiser); {config.name!r} is {family!r} (use --svdd)"
        )
    if guide.classifier_scale:
        check_classifier(config, classifier)
    elif classifier is not None:
        raise ValueError("--classifier needs --classifier_scale (the guidance scale gamma)")
    if guide.reward_scale and guide.reward not in DIFFERENTIABLE_REWARDS:
        raise ValueError(
            f"--reward_guidance differentiates the reward: use --reward in "
            f"{DIFFERENTIABLE_REWARDS}, got {guide.reward!r}"
        )
    if guide.svdd:
        svdd.check(guide.svdd, guide.svdd_alpha)
        samplers.smc_step(family, sampler_name, eta)
        if not guide.reward and not guide.learned_values:
            raise ValueError(
                f"--svdd needs --reward (one of {sorted(rewards.REWARDS)}; SVDD-PM) or --value "
                f"(a value run; SVDD-MC)"
            )
    if (guide.prompt_scale is not None or guide.measurement_scale) and observed is None:
        raise ValueError(
            "--prompt_scale and --measurement_scale need an observation (--prompt or --observed)"
        )
    if observed is not None and "observe" not in takes:
        raise ValueError(
            f"observations (prompts, infilling, inpainting) condition the families "
            f"{guided_by('observe')}; {config.name!r} is {family!r}"
        )
    if (guide.temperature != 1 or guide.top_p != 1) and families.get(family).data != "tokens":
        raise ValueError(
            f"--temperature and --top_p reshape the token logits of masked runs; "
            f"{config.name!r} is {family!r}"
        )
    guidance.check_shape(guide.temperature, guide.top_p)
    if guide.prompt_scale is not None and "prompt" not in takes:
        raise ValueError(f"--prompt_scale guides masked models; {config.name!r} is {family!r}")


def guided_by(kind: str) -> tuple:
    """The families that take guidance `kind` (for errors)."""
    return families.having(lambda f: kind in f.guidance)


def check_classifier(config, classifier) -> None:
    """A classifier run trained under this run's forward process."""
    if classifier is None:
        raise ValueError("--classifier_scale needs --classifier (the workdir of a classifier run)")
    if classifier.process.family != "classifier":
        raise ValueError(
            f"--classifier must be a run of the 'classifier' family (configs/classifier_digits.py)"
            f", got {classifier.name!r} of family {classifier.process.family!r}"
        )
    ignore = ("family", "noise_family", "label_dropout")
    own = {k: v for k, v in config.process.to_dict().items() if k not in ignore}
    theirs = {k: v for k, v in classifier.process.to_dict().items() if k not in ignore}
    if shares_noise(config, classifier):
        return
    same_family = classifier.process.noise_family == config.process.family
    if not same_family or any(theirs.get(k) != v for k, v in own.items()):
        raise ValueError(
            f"classifier {classifier.name!r} was trained under a {classifier.process.noise_family}"
            f" process {theirs}; {config.name!r} samples a {config.process.family} process {own}"
        )


def shares_noise(config, classifier_config) -> bool:
    """Whether an average-velocity run (shortcut, MeanFlow) and a classifier trained under the
    noise of the family whose path it shares (`Family.noise_path`: the linear flow) see the same
    x_t: the classifier's path is that run's path."""
    path_family = families.get(config.process.family).noise_path
    if path_family is None or classifier_config.process.noise_family != path_family:
        return False
    theirs = families.build_from(path_family)(classifier_config)
    own = families.build_from(config.process.family)(config)
    t = jnp.linspace(0.0, 1.0, 33)
    same = [jnp.allclose(f(theirs)(t), f(own)(t)) for f in (lambda p: p.alpha, lambda p: p.sigma)]
    return all(same) and theirs.path.gamma is None and own.path.gamma is None


def classifier_log_probs(classifier, params):
    """log p_phi(. | x_t, t) [B, C] of a classifier run's (Components, params)."""
    net = classifier.denoiser(params)
    return lambda x, t: classifier.process.log_probs(net(x, t))


def guided_denoiser(comp, guide: Guide, denoiser, cfg_scale, classifier=None, weak=None):
    """The run's denoiser with CFG (and its interval), autoguidance, classifier and
    reward-gradient guidance. classifier: (Components, params) of a classifier run; weak: the
    denoiser of the weak model of autoguidance."""
    if guide.unconditional:
        denoiser = null_label(denoiser)
        weak = None if weak is None else null_label(weak)
    if guide.autoguide_scale is not None:
        denoiser = guidance.autoguided(denoiser, weak, guide.autoguide_scale, guide.cfg_interval)
    if cfg_scale is not None and guide.apg_parallel is not None:
        denoiser = guidance.projected(
            denoiser, comp.process, cfg_scale, guide.apg_parallel, guide.apg_threshold,
            guide.cfg_interval, guide.apg_momentum,
        )  # fmt: skip
    elif cfg_scale is not None:
        denoiser = guidance.classifier_free(denoiser, cfg_scale, guide.cfg_interval)
    if guide.classifier_scale and isinstance(comp.process, MaskedProcess):
        denoiser = guidance.masked_classifier(
            denoiser,
            comp.process,
            classifier_log_probs(*classifier),
            guide.classifier_scale,
            comp.dataset.shape[0],
            exact=guide.classifier_exact,
        )
    elif guide.classifier_scale and isinstance(comp.process, UniformProcess):
        # the tilt acts in the sampler's step (`guided_sampler`); L V classifier passes per call
        denoiser = counted(denoiser, comp.dataset.shape[0] * comp.process.vocab_size)
    elif guide.classifier_scale:
        potential = guidance.classifier_potential(classifier_log_probs(*classifier))
        denoiser = guidance.gradient(
            denoiser,
            comp.process,
            potential,
            guide.classifier_scale,
            guide.gradient_interval,
            calls=1,
        )
    if guide.reward_scale:
        reward = rewards.build(guide.reward, guide.reward_arg, comp.dataset)
        potential = guidance.reward_potential(comp.process, reward)
        denoiser = guidance.gradient(
            denoiser, comp.process, potential, guide.reward_scale, guide.gradient_interval
        )
    if isinstance(comp.process, MaskedProcess):
        vocab = comp.process.vocab_size
        denoiser = guidance.shaped(denoiser, vocab, guide.temperature, guide.top_p)
    return denoiser


def null_label(denoiser):
    """The denoiser at the null label whatever the condition (the unconditional model)."""

    def unconditional(x, t, cond=None, **kw):
        return denoiser(x, t, None if cond is None else jnp.full_like(cond, NULL_LABEL), **kw)

    return unconditional


def guided_process(comp, guide: Guide, observed):
    """The run's process, conditioned on observed = (values, known) rows if given."""
    if observed is None:
        return comp.process
    values, known = observed
    if isinstance(comp.process, MaskedProcess):
        return Observed(values, known, comp.process, prompt_scale=guide.prompt_scale)
    return Observed(
        values,
        known,
        comp.process,
        replace=guide.replace,
        measurement_scale=guide.measurement_scale,
        noise_std=guide.noise_std,
        measurement_interval=guide.gradient_interval,
    )


def counted(denoiser, calls: int):
    """The denoiser, reporting `calls` guidance (classifier) passes per call."""

    def same(*args, **kw):
        return denoiser(*args, **kw)

    same.network_passes = guidance.network_passes(denoiser)
    same.guidance_calls = calls + getattr(denoiser, "guidance_calls", 0)
    return same


def guided_sampler(comp, guide: Guide, sampler_name, eta, float64, value=None, classifier=None):
    """The named sampler, or SVDD around its step: SVDD-PM with the guide's reward, or SVDD-MC
    with value = (Components, params) of a value run; for a uniform-state run under classifier
    guidance, its step tilted by the classifier = (Components, params) (docs/math.md §3.9)."""
    family = comp.config.process.family
    if guide.classifier_scale and isinstance(comp.process, UniformProcess):
        log_tilt = guidance.uniform_classifier(
            classifier_log_probs(*classifier), guide.classifier_scale
        )
        return solvers.make_sampler(discrete.tilted_step(log_tilt, float64))
    if not guide.svdd:
        return samplers.get(family, sampler_name, eta, float64)
    step = samplers.smc_step(family, sampler_name, eta, float64)
    if value is not None:
        head, params = value
        net = head.denoiser(params)
        values = svdd.network_value(lambda x, s: head.process.values(net, x, s))
        return svdd.svdd(step, values, guide.svdd, guide.svdd_alpha, denoiser_values=False)
    reward = rewards.build(guide.reward, guide.reward_arg, comp.dataset)
    values = svdd.posterior_mean_value(reward, svdd.estimate_for(family))
    return svdd.svdd(step, values, guide.svdd, guide.svdd_alpha)


def check_value(config, guide: Guide, value) -> None:
    """A value run (its config, or None) for SVDD-MC: trained under this run's forward process."""
    if value is None:
        if guide.learned_values:
            raise ValueError("SVDD-MC (learned values) needs --value (the workdir of a value run)")
        return
    if not guide.svdd:
        raise ValueError("--value gives SVDD-MC's values: it needs --svdd (the candidates)")
    if value.process.family != "value":
        raise ValueError(
            f"--value must be a run of the 'value' family (configs/value_checkerboard.py), got "
            f"{value.name!r} of family {value.process.family!r}"
        )
    ignore = ("family", "noise_family", "label_dropout", "reward", "reward_arg")
    own = {k: v for k, v in config.process.to_dict().items() if k not in ignore}
    theirs = {k: v for k, v in value.process.to_dict().items() if k not in ignore}
    if value.process.noise_family != config.process.family or any(
        theirs.get(k) != v for k, v in own.items()
    ):
        raise ValueError(
            f"value run {value.name!r} was trained under a {value.process.noise_family} process "
            f"{theirs}; {config.name!r} samples a {config.process.family} process {own}"
        )


def passes(process, denoiser) -> int:
    """Network passes per denoiser call (CFG and prompt guidance double the batch)."""
    if isinstance(process, Observed):
        return process.passes(denoiser)
    return guidance.network_passes(denoiser)


def batch_copies(process) -> int:
    """Copies of the batch each guided-denoiser call runs on (prompt guidance: two, so a
    classifier inside it runs twice as often)."""
    return process.copies if isinstance(process, Observed) else 1


def checked_observation(comp, values, known, num: int):
    """(values, known) [num, ...] from rows that cycle (one row: every sample), checked against
    the data shape and the process."""
    values, known = np.asarray(values), np.asarray(known, bool)
    shape = tuple(comp.dataset.shape)
    if values.shape[1:] != shape or known.shape != values.shape:
        raise ValueError(
            f"observed values {values.shape} and known mask {known.shape} must be [rows, "
            f"{', '.join(map(str, shape))}] like the data"
        )
    observe(comp.process, values, known)  # its checks: tokens in range, the family
    index = np.arange(num) % len(values)
    return values[index], known[index]


def text_prompt(dataset, text: str, num: int):
    """(values, known) that put `text` at the start of every sequence of a text data set."""
    vocab = [v.decode() if isinstance(v, bytes) else v for v in getattr(dataset, "vocab", ())]
    if not vocab or dataset.kind != "tokens":
        raise ValueError(
            f"--prompt needs a text data set with a vocabulary; {dataset.name!r} has none"
        )
    missing = sorted(set(text) - set(vocab))
    if missing:
        raise ValueError(f"--prompt={text!r} has characters outside the vocabulary: {missing}")
    length = dataset.shape[0]
    if not 0 < len(text) < length:
        raise ValueError(f"--prompt must have 1 to {length - 1} characters, got {len(text)}")
    values = np.zeros((num, length), np.int32)
    values[:, : len(text)] = [vocab.index(c) for c in text]
    known = np.zeros((num, length), bool)
    known[:, : len(text)] = True
    return values, known

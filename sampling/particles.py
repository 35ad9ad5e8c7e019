"""Particle sampling of a run: FK steering toward a reward, and Feynman-Kac correctors (annealing,
the CFG target, products with other runs' models), as `sample.py --steer=...` and
`difflab.sampling.draw.draw(..., steer=Steering(...))` build them (docs/math.md §7).

All particles of one draw form one population with one condition (`label` on conditional runs).
"""

from __future__ import annotations

import dataclasses

from difflab import samplers
from difflab.data import rewards
from difflab.models import families
from difflab.models.protocols import MaskedProcess
from difflab.samplers import fkc, masked_fkc, smc, steering

METHODS = ("reward", "anneal", "cfg", "product")


@dataclasses.dataclass(frozen=True)
class Steering:
    """One particle-sampling setting (hashable: compiled samplers are kept per setting)."""

    method: str
    reward: str = ""
    reward_arg: str = ""
    scale: float = 1.0  # lambda of exp(lambda r)
    potential: str = "diff"
    every: int = 1
    beta: float = 2.0  # annealing exponent
    cfg_scale: float = 0.0  # w of the CFG target p^(1 - w) p(. | c)^w
    weights: tuple = ()  # product: exponents of this run's model and each expert's
    scheme: str = "systematic"
    ess_threshold: float = 0.5
    resample_every: int = 0
    label: int | None = None

    def name(self) -> str:
        """A short name of the setting for output folders."""
        detail = {
            "reward": f"{self.reward}{self.reward_arg}_x{self.scale:g}_{self.potential}",
            "anneal": f"beta{self.beta:g}",
            "cfg": f"w{self.cfg_scale:g}",
            "product": "w" + "-".join(f"{w:g}" for w in self.weights),
        }[self.method]
        return f"{self.method}_{detail}".replace(",", "-").replace(" ", "")


def named(steer, cfg_scale=None) -> tuple:
    """(Steering, the plain CFG scale left) from a Steering or a --steer name with its method's
    defaults (the name 'cfg' takes cfg_scale as its w); a clear error for anything else."""
    if steer is None or isinstance(steer, Steering):
        return steer, cfg_scale
    if not isinstance(steer, str) or steer not in METHODS:
        raise ValueError(
            f"steer must be a sampling.particles.Steering or one of the names {METHODS}, got "
            f"{steer!r}"
        )
    if steer == "cfg":
        return Steering("cfg", cfg_scale=0.0 if cfg_scale is None else cfg_scale), None
    return Steering(steer), cfg_scale


def check(config, setting: Steering, sampler_name: str, eta, num_experts: int = 0) -> None:
    """Clear errors for a particle setting that the run cannot take; from the config alone."""
    family = config.process.family
    if setting.method not in METHODS:
        raise ValueError(f"--steer must be one of {METHODS}, got {setting.method!r}")
    if setting.method == "reward":
        samplers.smc_step(family, sampler_name, eta)
        if not setting.reward:
            raise ValueError(f"--steer=reward needs --reward (one of {sorted(rewards.REWARDS)})")
        steering.reward_potential(
            lambda x: x, setting.scale, setting.potential, every=setting.every
        )
    else:
        corrector = families.get(family).corrector
        if corrector is None:
            raise ValueError(
                f"--steer={setting.method} (Feynman-Kac correctors) needs a family "
                f"{families.having(lambda f: f.corrector)}; {config.name!r} is {family!r} "
                f"(counts: reward steering only, see docs/masked_fkc.md)"
            )
        if sampler_name != corrector:
            raise ValueError(
                f"--steer={setting.method} moves {family} particles with the guided "
                f"{corrector} step; use --sampler={corrector} (got {sampler_name!r})"
            )
        if corrector == "ancestral":  # masked diffusion's correctors
            masked_fkc.check(betas(setting, num_experts))
        else:
            eta = samplers.effective_eta("em", eta)
            fkc.check(betas(setting, num_experts), eta, None, (0, 1))
    if setting.method == "cfg" and not (config.model.conditional and config.process.label_dropout):
        raise ValueError(
            f"--steer=cfg needs a class-conditional run trained with label dropout; "
            f"{config.name!r} is not one"
        )
    if config.model.conditional and setting.label is None:
        raise ValueError(
            f"{config.name!r} is class-conditional: particles share one condition, give --label"
        )
    smc.check_settings(setting.scheme, setting.ess_threshold, setting.resample_every, "resample")


def check_particles(num: int, devices: int) -> None:
    """The particles split evenly over the devices."""
    if num % devices:
        raise ValueError(
            f"--num_samples={num} particles must split evenly over the {devices} devices; use "
            f"e.g. --num_samples={max(devices, num - num % devices)}"
        )


def betas(setting: Steering, num_experts: int) -> tuple:
    """The FKC exponents: (beta,) annealing, (w, 1 - w) the CFG target, the given weights of a
    product (this run's model first, then each expert)."""
    if setting.method == "anneal":
        return (setting.beta,)
    if setting.method == "cfg":
        return (setting.cfg_scale, 1.0 - setting.cfg_scale)
    if len(setting.weights) != 1 + num_experts:
        raise ValueError(
            f"--expert_weights needs {1 + num_experts} exponents (this run's model, then each of "
            f"the {num_experts} --experts), got {list(setting.weights)}"
        )
    return tuple(setting.weights)


def sampler_and_denoiser(
    comp, setting, sampler_name, eta, float64, denoiser, experts=(), mesh=None
):
    """(the particle sampler, the denoiser it takes): reward steering takes the run's denoiser;
    correctors take the experts' predictions stacked (the CFG target's two passes in one call).
    mesh: split the particles over its devices (global resampling; `samplers.smc`)."""
    family = comp.config.process.family
    smc_kw = {
        "scheme": setting.scheme,
        "ess_threshold": setting.ess_threshold,
        "resample_every": setting.resample_every,
        "mesh": mesh,
    }
    if setting.method == "reward":
        reward = rewards.build(setting.reward, setting.reward_arg, comp.dataset)
        potential = steering.reward_potential(
            reward,
            setting.scale,
            setting.potential,
            steering.estimate_for(family),
            every=setting.every,
        )
        step = samplers.smc_step(family, sampler_name, eta, float64)
        return smc.smc(step, potential, **smc_kw), denoiser
    exponents = betas(setting, len(experts))
    if isinstance(comp.process, MaskedProcess):
        mask_id = comp.process.mask_id
        sampler = masked_fkc.masked_fkc(exponents, mask_id, float64, **smc_kw)
        if setting.method == "anneal":
            return sampler, denoiser
    else:
        sampler = fkc.fkc(exponents, samplers.effective_eta("em", eta), **smc_kw)
    if setting.method == "cfg":
        return sampler, fkc.cfg_experts(denoiser)
    return sampler, fkc.experts(denoiser, *experts)

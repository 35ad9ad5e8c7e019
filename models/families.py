"""One record per model family: what it is built from and what it supports. Everything that
depends on the family (the process of a config, the data and networks it fits, its samplers, the
denoised estimate of FK steering and SVDD, guidance, Feynman-Kac correctors) reads it here.

Adding a family is one `Family` entry (and its process module); a sampler kind it walks with is
named in `samplers` (the samplers of that kind are `difflab.samplers.SPECS` entries).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from difflab.models import classifier, continuous, counts, flow, masked, shortcut, uniform, value


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family (see the module doc)."""

    # (config, vocab_size, source) -> process: the data's vocabulary (tokens) and the source
    # population draw (counts) where they apply
    build_process: Callable
    data: str  # the data it models: "continuous" (points, images), "tokens" or "counts"
    # the networks that fit it: "generative", "counts", "classifier" or "value" (models.nets)
    nets: str = "generative"
    # the sampler kinds it walks with: "gaussian", "flow_map", "masked", "counts" (samplers.SPECS)
    samplers: tuple = ()
    # the denoised estimate FK steering and SVDD-PM value rewards at: "tweedie" (x_hat of the
    # Gaussian prediction), "masked" (draws of the clean tokens), "counts" (the posterior mean the
    # rates imply); None: none is defined (steering and SVDD-PM refuse with a clear error)
    estimate: str | None = None
    # guidance beyond CFG: "classifier" (gradient through the score, or the tilted masked
    # denoiser), "gradient" (reward-gradient and DPS measurement guidance), "prompt" (SMDM
    # prompt guidance), "observe" (prompts, infilling, inpainting)
    guidance: frozenset = frozenset()
    corrector: str | None = None  # the step Feynman-Kac correctors move its particles with
    # the family whose forward noise it shares with its default path settings (a classifier
    # trained under that family's noise guides it); None: its own
    noise_path: str | None = None

    @property
    def sampled(self) -> bool:
        """Whether runs of it are sampled (classifier and value runs guide other runs)."""
        return bool(self.samplers)


def build_from(name: str) -> Callable:
    """The process builder of family `name` (resolved when called, so heads can name others)."""
    return lambda config, vocab_size=0, source=None: FAMILIES[name].build_process(
        config, vocab_size, source
    )


GAUSSIAN_GUIDANCE = frozenset({"classifier", "gradient", "observe"})
AVERAGE_VELOCITY_GUIDANCE = frozenset({"classifier", "gradient"})
FAMILIES = {
    "flow": Family(
        lambda config, vocab_size, source: flow.build_process(config), "continuous",
        samplers=("gaussian",), estimate="tweedie", guidance=GAUSSIAN_GUIDANCE, corrector="em",
    ),
    "diffusion": Family(
        lambda config, vocab_size, source: continuous.build_process(config), "continuous",
        samplers=("gaussian",), estimate="tweedie", guidance=GAUSSIAN_GUIDANCE, corrector="em",
    ),
    # average-velocity models: guided through the score of their velocity rows (exact at h = 0,
    # first order in h for flow-map jumps); noise: the linear flow path (`flow_path`)
    "shortcut": Family(
        lambda config, vocab_size, source: shortcut.from_config(shortcut.Shortcut, config),
        "continuous", samplers=("flow_map", "gaussian"), estimate="tweedie",
        guidance=AVERAGE_VELOCITY_GUIDANCE, noise_path="flow",
    ),
    "meanflow": Family(
        lambda config, vocab_size, source: shortcut.from_config(shortcut.MeanFlow, config),
        "continuous", samplers=("flow_map", "gaussian"), estimate="tweedie",
        guidance=AVERAGE_VELOCITY_GUIDANCE, noise_path="flow",
    ),
    "masked": Family(
        lambda config, vocab_size, source: masked.build_process(config, vocab_size), "tokens",
        samplers=("masked",), estimate="masked",
        guidance=frozenset({"classifier", "prompt", "observe"}), corrector="ancestral",
    ),
    "uniform": Family(
        lambda config, vocab_size, source: uniform.build_process(config, vocab_size), "tokens",
        samplers=("uniform",), estimate="uniform", guidance=frozenset({"classifier"}),
    ),
    "counts": Family(
        lambda config, vocab_size, source: counts.build_process(config, source), "counts",
        nets="counts", samplers=("counts",), estimate="counts",
    ),
    # heads trained under another family's noise (config.process.noise_family): not sampled
    "classifier": Family(
        lambda config, vocab_size, source: classifier.build_process(
            config, guided_by("classifier"), vocab_size
        ),
        "any", nets="classifier",
    ),
    "value": Family(
        lambda config, vocab_size, source: value.build_process(
            config, {k: build_from(k) for k, f in FAMILIES.items() if f.sampled}, vocab_size,
            source,
        ),
        "any", nets="value",
    ),
}  # fmt: skip


def guided_by(kind: str) -> dict:
    """{family: process builder} of the families that take guidance `kind`."""
    return {k: build_from(k) for k, f in FAMILIES.items() if kind in f.guidance}


def get(name: str) -> Family:
    """The record of family `name`; a clear error naming the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"config.process.family must be one of {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def having(predicate) -> tuple:
    """The names of the families whose record satisfies `predicate`."""
    return tuple(k for k, f in FAMILIES.items() if predicate(f))

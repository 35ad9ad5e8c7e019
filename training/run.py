"""A trained run back from its workdir: `load_run(workdir)` is the one call notebooks and
`sample.py` use (config, components, EMA parameters, and `Run.sample`)."""

from __future__ import annotations

import dataclasses
import os

from training import checkpoint
from training.components import Components, build
from training.sampling import draw


@dataclasses.dataclass
class Run:
    """A trained run: its config, components, EMA parameters, the denoiser and the process."""

    config: object
    components: Components
    params: dict
    step: int

    @property
    def denoiser(self):
        return self.components.denoiser(self.params)

    @property
    def process(self):
        return self.components.process

    def sample(
        self,
        sampler="heun",
        steps=50,
        num=1000,
        seed=0,
        labels=None,
        eta=None,
        float64=True,
        cfg_scale=None,
    ):
        return draw(
            self.components, self.params, sampler, steps, num, seed, labels, eta, float64, cfg_scale
        )


def open_checkpoint(workdir: str, step: int | None = None):
    """(reading manager, step) of the latest (or given) checkpoint in workdir; creates nothing."""
    if not os.path.isdir(checkpoint.checkpoint_dir(workdir)):
        raise FileNotFoundError(
            f"no checkpoint in {checkpoint.checkpoint_dir(workdir)!r}; "
            f"train first: python train.py --config ... --workdir {workdir}"
        )
    mgr = checkpoint.manager(workdir, keep=1_000_000, asynchronous=False, create=False)
    steps = mgr.all_steps()
    if not steps:
        mgr.close()
        raise FileNotFoundError(
            f"no checkpoint in {checkpoint.checkpoint_dir(workdir)!r}; "
            f"train first: python train.py --config ... --workdir {workdir}"
        )
    step = max(steps) if step is None else step
    if step not in steps:
        mgr.close()
        raise ValueError(f"--step={step} is not a checkpoint in {workdir!r}; available: {steps}")
    return mgr, step


def load_config(workdir: str, step: int | None = None):
    """(config, step) of the latest (or given) checkpoint: cheap, nothing is built or loaded."""
    mgr, step = open_checkpoint(workdir, step)
    config = checkpoint.restore_config(mgr, step)
    mgr.close()
    return config, step


def load_state(workdir: str, step: int | None = None):
    """(config, components, full train state as host arrays, step) of a checkpoint in workdir."""
    mgr, step = open_checkpoint(workdir, step)
    config = checkpoint.restore_config(mgr, step)
    comp = build(config)
    state = checkpoint.restore_saved_structure(mgr, step)
    mgr.close()
    return config, comp, state, step


def load_run(workdir: str, step: int | None = None) -> Run:
    """The config and EMA parameters of the latest (or given) checkpoint in `workdir`."""
    config, comp, state, step = load_state(workdir, step)
    return Run(config, comp, state["ema_params"], step)

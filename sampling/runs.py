"""A trained run back from its workdir: `load_run(workdir)` is the one call notebooks and
`sample.py` use (config, components, EMA parameters, and `Run.sample`)."""

from __future__ import annotations

import dataclasses
import os

from difflab.sampling.draw import draw
from difflab.training import checkpoint
from difflab.training.components import Components, build


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
        steer=None,
        experts=(),
        batch_size=None,
        devices=None,
        progress=False,
        guide=None,
        classifier=None,
        observed=None,
        value=None,
    ):
        """(samples, info) as numpy arrays: `sampling.draw.draw` with this run's parameters;
        experts are other `Run`s (products of experts under steer), classifier a classifier
        `Run` (classifier guidance, with guide=Guide(classifier_scale=...)), observed (values,
        known) rows that condition the samples (prompts, infilling, inpainting), value a value
        `Run` (SVDD-MC, with guide=Guide(svdd=M)).

        Args:
            sampler: a sampler of the run's family (`samplers.described()`).
            steps: grid steps (ignored by the adaptive samplers). num: samples (particles
                under steer). seed: sample i depends only on (seed, i).
            labels: [num] classes of a conditional run (default: the data's class mix).
            steer: a `sampling.particles.Steering` or a --steer name ("anneal", "cfg", ...).

        Returns:
            x [num, *data shape] (float points / images, int tokens / counts) and info (nfe,
            denoiser_calls, and what the sampler reports: log_z, ess, value_calls, ...).
        """
        experts = [(e.components, e.params) for e in experts]
        classifier = None if classifier is None else (classifier.components, classifier.params)
        value = None if value is None else (value.components, value.params)
        return draw(
            self.components, self.params, sampler, steps, num, seed, labels=labels, eta=eta,
            float64=float64, cfg_scale=cfg_scale, steer=steer, experts=experts,
            batch_size=batch_size, devices=devices, progress=progress, guide=guide,
            classifier=classifier, observed=observed, value=value,
        )  # fmt: skip


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
    """The config and EMA parameters of the latest (or given) checkpoint in `workdir`.

    Args:
        workdir: a folder written by `train.py` (or `training.loop.train`).
        step: a checkpoint step (default: the latest).

    Returns:
        Run(config, components, params, step); `run.sample(...)` draws from it and
        `run.denoiser(x [B, ...], t [B], cond)` evaluates the network.

    Raises:
        FileNotFoundError / ValueError naming the folder or step when there is no such
        checkpoint.
    """
    config, comp, state, step = load_state(workdir, step)
    return Run(config, comp, state["ema_params"], step)


def load_or_train(config, workdir: str) -> Run:
    """The run in `workdir`: loaded if it holds a checkpoint (whatever its config), otherwise
    trained there from `config` first (notebooks: a small model in seconds, or a saved one)."""
    from difflab.sampling.evaluate import evaluate
    from difflab.training.loop import train

    if not (
        os.path.isdir(checkpoint.checkpoint_dir(workdir))
        and os.listdir(checkpoint.checkpoint_dir(workdir))
    ):
        train(config, workdir, evaluate=evaluate)
    return load_run(workdir)


def notebook_run(config, quick: bool = False, saved: bool = True) -> Run:
    """The run a notebook explores: runs/<name> when `python train.py` has made it (and `saved`);
    otherwise `config` trained into runs/notebooks/<name>_<steps> (kept for the next time), or,
    with `quick` (the test suite's tiny settings), into a fresh temporary folder without the
    final evaluation (the notebook measures what it shows)."""
    import copy
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if quick:
        workdir = tempfile.mkdtemp(prefix=f"{config.name}_")
        config = copy.deepcopy(config)
        config.train.eval_every = 0
    elif saved and os.path.isdir(os.path.join(root, "runs", config.name, "checkpoints")):
        workdir = os.path.join(root, "runs", config.name)
    else:
        workdir = os.path.join(root, "runs", "notebooks", f"{config.name}_{config.train.steps}")
    run = load_or_train(config, workdir)
    print(f"{run.config.name}: step {run.step} of {workdir}")
    return run

"""A trained run back from its workdir: `load_run(workdir)` is the one call notebooks and
`sample.py` use (config, components, EMA parameters, and `Run.sample`)."""

from __future__ import annotations

import dataclasses
import os

from difflab.sampling import shards
from difflab.sampling.draw import check_batch_size, draw, draw_chunks, merged_info
from difflab.sampling.request import Request
from difflab.training import checkpoint
from difflab.training.components import Components, build


@dataclasses.dataclass
class Run:
    """A trained run: its config, components, EMA parameters, the denoiser and the process."""

    config: object
    components: Components
    params: dict
    step: int
    workdir: str | None = None  # where it was loaded from (autoguidance by a step of it)

    @property
    def denoiser(self):
        return self.components.denoiser(self.params)

    @property
    def process(self):
        return self.components.process

    def sample(
        self, request: Request | str | None = None, /, *, labels=None, devices=None,
        progress=False, **names,
    ):  # fmt: skip
        """(samples, info) as numpy arrays: the job `request` (a `sampling.request.Request`, or
        a sampler name with the rest of the Request's fields as keywords, as sample.py's flags
        name them) drawn with this run's parameters by `sampling.draw.draw`.

        Args:
            request: a Request, or the sampler's name (`samplers.described()`); names: the
                Request's fields (steps, num_samples, seed, eta, cfg_scale, steer, ...): the
                run's eval settings fill those left out. classifier / value / experts take
                workdirs or loaded `Run`s; observed a .npz path or (values, known) arrays.
            labels: [num_samples] classes of a conditional run (default: the data's class mix;
                the particles of `steer` share `label`). devices: the devices each batch is
                split over (default: this process's). progress: a progress bar.

        Returns:
            x [num_samples, *data shape] (float points / images, int tokens / counts) and info
            (nfe, denoiser_calls, and what the sampler reports: log_z, ess, value_calls, ...).

        Raises:
            ValueError naming the setting the run cannot take, before anything is compiled.
        """
        request = self.request(request, names)
        args, kw = self.draw_settings(request, labels)
        return draw(*args, **kw, devices=devices, progress=progress)

    def request(self, request=None, names=None) -> Request:
        """The Request `Run.sample` takes, resolved against this run (defaults filled, checked)."""
        names = dict(names or {})
        if isinstance(request, str):
            names, request = {"sampler": request, **names}, None
        if request is not None and names:
            raise ValueError(f"give a Request or its fields, not both (got {sorted(names)})")
        request = request if request is not None else Request(**names)
        if not isinstance(request, Request):
            raise ValueError(f"request must be a sampling.request.Request, got {request!r}")
        configs = {k: helper_config(getattr(request, k)) for k in ("classifier", "value")}
        return request.resolved(self.config, configs)

    def draw_settings(self, request: Request, labels=None):
        """(positional, keyword) arguments of `draw` for a resolved request."""
        helpers = {k: helper_run(getattr(request, k)) for k in ("classifier", "value")}
        pair = lambda run: None if run is None else (run.components, run.params)
        args = (self.components, self.params, request.sampler, request.steps)
        args += (request.num_samples, request.seed)
        kw = dict(labels=labels, eta=request.eta, float64=not request.categorical_float32)
        kw |= dict(cfg_scale=request.plain_cfg_scale, steer=request.steering())
        kw |= dict(experts=[pair(helper_run(e)) for e in request.experts])
        kw |= dict(batch_size=request.batch_size, guide=request.guide(), grid=request.grid)
        kw |= dict(classifier=pair(helpers["classifier"]), value=pair(helpers["value"]))
        kw |= dict(observed=observation(request, self.components.dataset))
        kw |= dict(weak=pair(weak_of(self, request.autoguide)))
        return args, kw


def weak_of(run: Run, autoguide):
    """Autoguidance's weak model: a step of `run` (an int or digits) or a run (workdir / Run)."""
    if isinstance(autoguide, int) or (isinstance(autoguide, str) and autoguide.isdigit()):
        if run.workdir is None:
            raise ValueError(
                f"--autoguide={autoguide} names a checkpoint step, but this run was not loaded "
                f"from a workdir; give the weak run's workdir or a loaded Run"
            )
        return load_run(run.workdir, int(autoguide))
    return helper_run(autoguide)


def helper_run(helper) -> Run | None:
    """A classifier / value / expert run given by its workdir or already loaded."""
    return load_run(helper) if isinstance(helper, str) else helper


def helper_config(helper):
    """The saved config of a helper run (its workdir: read cheaply, nothing built)."""
    if helper is None or isinstance(helper, Run):
        return None if helper is None else helper.config
    return load_config(helper)[0]


def observation(request: Request, dataset):
    """(values, known) of the request's prompt or observed .npz (or arrays), or None."""
    from difflab.data import files
    from difflab.sampling import guides

    num = request.num_samples
    if request.prompt is not None:
        return guides.text_prompt(dataset, request.prompt, num)
    if not isinstance(request.observed, str):
        return request.observed
    path = request.observed
    if not os.path.isfile(path):
        raise ValueError(f"--observed={path!r} is not a file")
    with files.open_npz(path, "--observed") as f:
        if "x" not in f or "known" not in f:
            raise ValueError(f"--observed={path!r} must hold arrays 'x' and 'known', has {list(f)}")
        return f["x"], f["known"]


def class_labels(run: Run, request: Request):
    """The classes sample.py draws a conditional run's samples with: the data's class mix
    (`metrics.sampling_labels`); None for unconditional runs and particle systems (whose
    particles share `request.label`)."""
    from difflab import metrics

    if not run.components.num_classes or request.steer is not None:
        return None
    return metrics.sampling_labels(run.components.dataset, request.num_samples, request.seed)


def sample_streamed(run: Run, request: Request, folder: str, devices=None):
    """(x, info) of a resolved request, streamed to shards in `folder` as they are drawn
    (`sampling.shards`): a rerun draws only the samples no shard holds. Particle systems
    (steer) are one population, drawn whole. Returns None on every process but the lead."""
    import jax

    lead = jax.process_index() == 0
    args, kw = run.draw_settings(request, class_labels(run, request))
    if request.steer is not None:
        done = draw(*args, **kw, devices=devices)
        return done if lead else None
    if lead:
        shards.check_setting(folder, request.setting(run.config.name, run.step))
    rows = check_batch_size(request.batch_size, request.num_samples, None)
    todo = shards.missing(folder, request.num_samples, rows)
    for start, stop, x, info in draw_chunks(
        *args, **kw, ranges=todo, devices=devices, progress=lead
    ):
        if lead:
            shards.write(folder, start, stop, x, info)
    if not lead:
        return None
    x, per_sample = shards.read(folder, request.num_samples)
    return x, merged_info([per_sample])


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
    return Run(config, comp, state["ema_params"], step, workdir)


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

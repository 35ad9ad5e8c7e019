"""What a run is made of (data, network, process), sampling from its parameters, and `load_run`:
the one call notebooks and `sample.py` use to get a trained run back from its workdir."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

import data
import metrics
import models
import samplers
from models import nets
from training import checkpoint, plots


@dataclasses.dataclass
class Components:
    config: object
    dataset: object
    graphdef: object
    init_params: dict
    process: object
    num_classes: int  # classes the network is conditioned on (0: unconditional)

    def denoiser(self, params):
        return models.denoiser(self.graphdef, params)


def build(config) -> Components:
    """Data set, network (initialised from config.seed) and process described by `config`."""
    dataset = data.build(config.data)
    if config.model.conditional and not dataset.num_classes:
        raise ValueError(
            f"config.model.conditional=True needs labelled data, but data set "
            f"{config.data.name!r} has no labels"
        )
    num_classes = dataset.num_classes if config.model.conditional else 0
    net = nets.build(config.model, dataset.shape, num_classes, config.seed)
    graphdef, params = models.split(net)
    return Components(config, dataset, graphdef, params, models.build_process(config), num_classes)


def draw(
    comp: Components,
    params,
    sampler_name: str,
    steps: int,
    num: int,
    seed: int,
    labels=None,
    eta=None,
):
    """`num` samples from `params` with the named sampler; labels cycle over the classes."""
    sampler = samplers.get(comp.config.process.family, sampler_name, eta)
    if comp.num_classes and labels is None:
        labels = np.arange(num) % comp.num_classes
    cond = None if labels is None else jnp.asarray(labels, jnp.int32)
    shape = (num, *comp.dataset.shape)
    grid = samplers.grid(sampler_name, comp.process, steps)

    @jax.jit
    def run(key, params, cond):
        return sampler(key, comp.denoiser(params), comp.process, shape, cond, grid)

    x, info = run(jax.random.key(seed), params, cond)
    return np.asarray(x), jax.tree.map(np.asarray, info)


def evaluate(
    comp: Components,
    params,
    step: int,
    out_dir: str,
    sampler_name=None,
    steps=None,
    num=None,
    seed=None,
) -> dict:
    """Sample, plot to out_dir/samples_<step>.png, and measure quality against fresh data."""
    ec = comp.config.eval
    sampler_name, steps = sampler_name or ec.sampler, steps or ec.steps
    num, seed = num or ec.num_samples, ec.seed if seed is None else seed
    labels = metrics.sampling_labels(comp.dataset, num, seed) if comp.num_classes else None
    x, info = draw(comp, params, sampler_name, steps, num, seed, labels)
    quality = metrics.report(x, comp.dataset, n=num, seed=seed)
    title = f"{comp.config.name} step {step}: {sampler_name}, {steps} steps"
    reference = comp.dataset.reference(num, seed + 1) if comp.dataset.kind == "points" else None
    plots.plot_samples(
        x, os.path.join(out_dir, f"samples_{step:07d}.png"), comp.dataset.kind, title, reference
    )
    return {**quality, "nfe": float(info["nfe"])}


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

    def sample(self, sampler="heun", steps=50, num=1000, seed=0, labels=None, eta=None):
        return draw(self.components, self.params, sampler, steps, num, seed, labels, eta)


def load_state(workdir: str, step: int | None = None):
    """(config, components, full train state as host arrays, step) of a checkpoint in workdir."""
    mgr = checkpoint.manager(workdir, keep=1_000_000, asynchronous=False)
    steps = mgr.all_steps()
    if not steps:
        raise FileNotFoundError(
            f"no checkpoint in {checkpoint.checkpoint_dir(workdir)!r}; "
            f"train first: python train.py --config ... --workdir {workdir}"
        )
    step = max(steps) if step is None else step
    if step not in steps:
        raise ValueError(f"--step={step} is not a checkpoint in {workdir!r}; available: {steps}")
    config = checkpoint.restore_config(mgr, step)
    comp = build(config)
    state = checkpoint.restore_saved_structure(mgr, step)
    mgr.close()
    return config, comp, state, step


def load_run(workdir: str, step: int | None = None) -> Run:
    """The config and EMA parameters of the latest (or given) checkpoint in `workdir`."""
    config, comp, state, step = load_state(workdir, step)
    return Run(config, comp, state["ema_params"], step)

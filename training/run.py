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
    vocab_size = getattr(dataset, "vocab_size", 0)
    check_family_fits_data(config.process.family, dataset)
    net = nets.build(config.model, dataset.shape, num_classes, config.seed, vocab_size)
    graphdef, params = models.split(net)
    process = models.build_process(config, vocab_size)
    return Components(config, dataset, graphdef, params, process, num_classes)


DISCRETE_FAMILIES = samplers.DISCRETE_FAMILIES


def check_family_fits_data(family: str, dataset) -> None:
    """Token data needs a discrete family and continuous data a continuous one."""
    tokens = dataset.kind == "tokens"
    if tokens != (family in DISCRETE_FAMILIES):
        need = DISCRETE_FAMILIES if tokens else sorted(set(models.PROCESSES) - {*DISCRETE_FAMILIES})
        raise ValueError(
            f"config.process.family={family!r} cannot model the {dataset.kind} of data set "
            f"{dataset.name!r}; use one of {need}"
        )


def draw(
    comp: Components,
    params,
    sampler_name: str,
    steps: int,
    num: int,
    seed: int,
    labels=None,
    eta=None,
    float64: bool = True,
):
    """`num` samples from `params` with the named sampler; labels cycle over the classes.
    float64=False: float32 categorical draws (discrete families), to measure their bias."""
    sampler = samplers.get(comp.config.process.family, sampler_name, eta, float64)
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
    show(comp.dataset, x, os.path.join(out_dir, f"samples_{step:07d}"), title, seed)
    return {**quality, "nfe": float(info["nfe"])}


def show(dataset, x, stem: str, title: str, seed: int = 0) -> str:
    """Samples as a figure (stem.png: scatter or image grid) or as text (stem.txt: decoded text
    or token ids, one sequence per line); returns the path written."""
    if dataset.kind == "tokens" and dataset.name != "digits_tokens":
        rows = (
            dataset.decode(x) if hasattr(dataset, "decode") else [" ".join(map(str, r)) for r in x]
        )
        with open(stem + ".txt", "w", encoding="utf-8") as f:
            f.write(f"# {title}\n")
            f.writelines(r.replace("\n", "\u21b5") + "\n" for r in rows)
        return stem + ".txt"
    kind = dataset.kind
    if dataset.name == "digits_tokens":
        from data.tokens import tokens_to_digits

        x, kind = tokens_to_digits(x), "images"
    reference = dataset.reference(len(x), seed + 1) if kind == "points" else None
    plots.plot_samples(x, stem + ".png", kind, title, reference)
    return stem + ".png"


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
        self, sampler="heun", steps=50, num=1000, seed=0, labels=None, eta=None, float64=True
    ):
        return draw(self.components, self.params, sampler, steps, num, seed, labels, eta, float64)


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

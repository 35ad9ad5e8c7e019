"""What a run is made of (data, network, process), sampling from its parameters, and `load_run`:
the one call notebooks and `sample.py` use to get a trained run back from its workdir."""

from __future__ import annotations

import dataclasses
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import data
import metrics
import models
import samplers
from data import counts
from models import nets
from samplers import guidance
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
        """The sampling denoiser (average-velocity models: at their trained velocity step)."""
        den = models.denoiser(self.graphdef, params)
        wrap = getattr(self.process, "sampling_denoiser", None)
        return den if wrap is None else wrap(den)


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
    check_net_fits_family(config.model.net, config.process.family)
    net = nets.build(config.model, dataset.shape, num_classes, config.seed, vocab_size)
    graphdef, params = models.split(net)
    process = models.build_process(config, vocab_size, getattr(dataset, "source", None))
    if config.process.family == "counts":
        dataset = pair_source(dataset, process, config)
    return Components(config, dataset, graphdef, params, process, num_classes)


def pair_source(dataset, process, config):
    """Count flows: batches carry their paired source rows when the source is a population or
    the coupling is minibatch OT (independent parametric sources are drawn inside the loss)."""
    pc = config.process
    if pc.source != "data" and pc.coupling == "independent":
        return dataset
    shape = tuple(dataset.shape)

    def draw(key, n):
        return process.prior(key, (n, *shape))

    return counts.PairedSource(dataset, draw, pc.coupling, pc.ot_cost, config.data.seed)


def check_family_fits_data(family: str, dataset) -> None:
    """Tokens need masked diffusion, counts the count flow, points and images a Gaussian family."""
    need = samplers.DATA_KIND.get(family, "continuous")
    have = dataset.kind if dataset.kind in ("tokens", "counts") else "continuous"
    if need != have:
        fits = sorted(
            f for f in models.PROCESSES if samplers.DATA_KIND.get(f, "continuous") == have
        )
        raise ValueError(
            f"config.process.family={family!r} cannot model the {dataset.kind} of data set "
            f"{dataset.name!r}; use one of {fits}"
        )


def check_net_fits_family(net: str, family: str) -> None:
    """The counts family needs a network that outputs log-rates, and only it does."""
    if (family == "counts") != (net in nets.COUNT_NETWORKS):
        need = (
            nets.COUNT_NETWORKS
            if family == "counts"
            else sorted(set(nets.NETWORKS) - set(nets.COUNT_NETWORKS))
        )
        raise ValueError(
            f"config.model.net={net!r} does not fit config.process.family={family!r}; "
            f"use one of {list(need)}"
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
    cfg_scale: float | None = None,
):
    """`num` samples from `params` with the named sampler; labels cycle over the classes.
    float64=False: float32 categorical draws (discrete families), to measure their bias;
    cfg_scale: classifier-free guidance weight (conditional runs; 1 = plain conditional)."""
    sampler = samplers.get(comp.config.process.family, sampler_name, eta, float64)
    if cfg_scale is not None and not comp.num_classes:
        raise ValueError(
            f"cfg_scale={cfg_scale} needs a class-conditional run; {comp.config.name!r} is "
            f"unconditional"
        )
    if comp.num_classes and labels is None:
        labels = np.arange(num) % comp.num_classes
    cond = None if labels is None else jnp.asarray(labels, jnp.int32)
    shape = (num, *comp.dataset.shape)
    grid = samplers.grid(sampler_name, comp.process, steps)

    @jax.jit
    def run(key, params, cond):
        denoiser = comp.denoiser(params)
        if cfg_scale is not None:
            denoiser = guidance.classifier_free(denoiser, cfg_scale)
        return sampler(key, denoiser, comp.process, shape, cond, grid)

    x, info = run(jax.random.key(seed), params, cond)
    info = jax.tree.map(np.asarray, info)
    if int(info.get("unfinished", 0)):
        warnings.warn(
            f"sampler {sampler_name!r} stopped {int(info['unfinished'])} of {num} samples at its "
            f"event cap before the end of the grid; they are not samples of the model",
            stacklevel=2,
        )
    return np.asarray(x), info


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
    if (
        dataset.kind == "tokens"
        and not hasattr(dataset, "to_counts")
        and (dataset.name != "digits_tokens")
    ):
        rows = (
            dataset.decode(x) if hasattr(dataset, "decode") else [" ".join(map(str, r)) for r in x]
        )
        with open(stem + ".txt", "w", encoding="utf-8") as f:
            f.write(f"# {title}\n")
            f.writelines(r.replace("\n", "\u21b5") + "\n" for r in rows)
        return stem + ".txt"
    if hasattr(dataset, "to_counts"):  # a count view (baseline): show the decoded counts
        x, dataset = dataset.to_counts(x), dataset.base
    if dataset.kind == "counts":
        if dataset.name == "digits_counts":
            plots.plot_samples(x.reshape(-1, 8, 8, 1) / 8.0 - 1.0, stem + ".png", "images", title)
        else:
            plots.count_statistics(
                {"samples": x}, dataset.reference(len(x), seed + 1), stem + ".png", title
            )
        return stem + ".png"
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

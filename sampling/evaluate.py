"""Evaluation during training: sample, score against fresh data, and show the samples (a figure
or text)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from difflab import data, metrics
from difflab.sampling.draw import draw
from difflab.training import plots
from difflab.training.components import Components


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
    """Sample, plot to out_dir/samples_<step>.png, and measure quality against fresh data
    (classifier and value heads: held-out accuracy or error at several noise levels)."""
    ec = comp.config.eval
    heads = {"classifier": classifier_report, "value": value_report}
    if comp.config.process.family in heads:
        report = heads[comp.config.process.family]
        return report(comp, params, num or ec.num_samples, ec.seed if seed is None else seed)
    sampler_name, steps = sampler_name or ec.sampler, steps or ec.steps
    num, seed = num or ec.num_samples, ec.seed if seed is None else seed
    labels = metrics.sampling_labels(comp.dataset, num, seed) if comp.num_classes else None
    # one key for the batch: evaluation needs the law, not per-sample randomness, and the
    # per-sample (vmapped) sampler compiles 25-60% slower (measured: ddim on the digits U-Net,
    # tau-leaping on cells)
    x, info = draw(comp, params, sampler_name, steps, num, seed, labels=labels, per_sample=False)
    quality = metrics.report(x, comp.dataset, n=num, seed=seed)
    title = f"{comp.config.name} step {step}: {sampler_name}, {steps} steps"
    show(comp.dataset, x, os.path.join(out_dir, f"samples_{step:07d}"), title, seed, labels)
    return {**quality, "nfe": float(info["nfe"])}


# noise levels at which a classifier's accuracy (a value network's error) is reported
CLASSIFIER_TIMES = (0.0, 0.25, 0.5, 0.75, 0.9)


def held_out(comp: Components):
    """The data set's test split when it has one (digits), else the data set itself."""
    dc = comp.config.data
    if dc.name in ("digits", "digits_tokens") and dc.get("split", "train") == "train":
        test = dc.copy_and_resolve_references()
        test.split = "test"
        return data.build(test)
    return comp.dataset


def classifier_report(comp: Components, params, num: int, seed: int) -> dict:
    """accuracy_t<t> and nll_t<t> of p_phi(c | x_t, t) on up to `num` held-out examples."""
    test = held_out(comp)
    x = jnp.asarray(test.reference(num, seed))
    labels = jnp.asarray(test.reference_labels(num, seed), jnp.int32)
    den = comp.denoiser(params)
    out = {"held_out_examples": len(x)}
    for i, t in enumerate(CLASSIFIER_TIMES):
        tt = jnp.full((len(x),), max(t, comp.process.t_min), jnp.float32)
        nll, hits = comp.process.nll_and_hits(den, jax.random.key(seed + i), x, labels, tt)
        out[f"accuracy_t{t:g}"] = float(jnp.mean(hits))
        out[f"nll_t{t:g}"] = float(jnp.mean(nll))
    return out


def value_report(comp: Components, params, num: int, seed: int) -> dict:
    """rmse_t<t> of f_psi(x_t, t) against r(x_0) on up to `num` held-out examples, next to
    reward_std (the error of the best constant)."""
    test = held_out(comp)
    x = jnp.asarray(test.reference(num, seed))
    den = comp.denoiser(params)
    out = {"held_out_examples": len(x), "reward_std": float(jnp.std(comp.process.reward(x)))}
    for i, t in enumerate(CLASSIFIER_TIMES):
        tt = jnp.full((len(x),), max(t, comp.process.t_min), jnp.float32)
        err = comp.process.squared_errors(den, jax.random.key(seed + i), x, tt)
        out[f"rmse_t{t:g}"] = float(jnp.sqrt(jnp.mean(err)))
    return out


def show(dataset, x, stem: str, title: str, seed: int = 0, labels=None) -> str:
    """Samples as a figure (stem.png: scatter or image grid, one row per class when the samples'
    labels are given) or as text (stem.txt: decoded text or token ids, one sequence per line);
    returns the path written."""
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
            images = x.reshape(-1, 8, 8, 1) / 8.0 - 1.0
            plots.plot_samples(images, stem + ".png", "images", title, labels=labels)
        else:
            plots.count_statistics(
                {"samples": x}, dataset.reference(len(x), seed + 1), stem + ".png", title
            )
        return stem + ".png"
    kind = dataset.kind
    if dataset.name == "digits_tokens":
        from difflab.data.tokens import tokens_to_digits

        x, kind = tokens_to_digits(x), "images"
    reference, lim = None, None
    if kind == "points":  # one frame per data set (from a fixed draw), so that plots compare
        reference = dataset.reference(len(x), seed + 1)
        lim = plots.frame_limit(dataset.reference(10_000, 0))
    plots.plot_samples(x, stem + ".png", kind, title, reference, lim, labels)
    return stem + ".png"

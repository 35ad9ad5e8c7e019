"""Drawing samples from a run's parameters, with the compiled sampler kept per setting: the first
call of a setting compiles (seconds), later calls with new parameters, seeds or labels reuse it."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

import samplers
from samplers import guidance
from training import particles, rewards
from training.components import Components
from training.mesh import make_mesh


def check_guidance_config(config, cfg_scale) -> None:
    """Classifier-free guidance needs a class-conditional run trained with label dropout (its
    null-label prediction is otherwise untrained); checked from the config alone."""
    if cfg_scale is None:
        return
    if not config.model.conditional:
        raise ValueError(
            f"cfg_scale={cfg_scale} needs a class-conditional run; {config.name!r} is unconditional"
        )
    if not config.process.label_dropout > 0:
        raise ValueError(
            f"cfg_scale={cfg_scale} needs the unconditional (null-label) model, but "
            f"{config.name!r} was trained with config.process.label_dropout="
            f"{config.process.label_dropout}: its null label never saw training"
        )


def check_request(config, sampler, steps, num, eta, float32: bool, cfg_scale):
    """(sampler, steps, num) of a sampling request against a run's saved config, before anything
    is built: None takes the config's eval value; bad values are errors naming the flag."""
    sampler = sampler or config.eval.sampler
    samplers.check(config.process.family, sampler, eta, not float32)
    check_guidance_config(config, cfg_scale)
    steps = config.eval.steps if steps is None else steps
    num = config.eval.num_samples if num is None else num
    if steps <= 0 or num <= 0:
        raise ValueError(
            f"--steps={steps} and --num_samples={num} must be positive integers (omit a flag to "
            f"use the config's eval value)"
        )
    return sampler, steps, num


def check_experts(comp: Components, experts) -> None:
    """Product experts share the run's data shape and forward process (MATH.md §7.4)."""
    own = {k: v for k, v in comp.config.process.to_dict().items() if k != "label_dropout"}
    for expert, _ in experts:
        theirs = {k: v for k, v in expert.config.process.to_dict().items() if k != "label_dropout"}
        if theirs != own or tuple(expert.dataset.shape) != tuple(comp.dataset.shape):
            raise ValueError(
                f"expert {expert.config.name!r} must share the data shape {comp.dataset.shape} "
                f"and the forward process of {comp.config.name!r} ({own}); it has "
                f"{expert.dataset.shape} and {theirs}"
            )


def compiled_sampler(
    comp: Components, sampler_name, steps, num, eta, float64, cfg_scale, steer=None, experts=()
):
    """The jitted (key, params, cond, expert_params) -> (x, info) of one sampling setting, built
    once per setting and kept on the components."""
    setting = (sampler_name, int(steps), int(num), eta, bool(float64), cfg_scale, steer)
    setting += tuple(id(e) for e, _ in experts)
    cache = comp.compiled
    if setting not in cache:
        shape = (num, *comp.dataset.shape)
        grid = samplers.grid(sampler_name, comp.process, steps)

        def run(key, params, cond, expert_params):
            denoiser = comp.denoiser(params)
            if cfg_scale is not None:
                denoiser = guidance.classifier_free(denoiser, cfg_scale)
            if steer is None:
                sampler = samplers.get(comp.config.process.family, sampler_name, eta, float64)
            else:
                others = [e.denoiser(p) for (e, _), p in zip(experts, expert_params, strict=True)]
                mesh = make_mesh() if jax.device_count() > 1 else None
                sampler, denoiser = particles.sampler_and_denoiser(
                    comp, steer, sampler_name, eta, float64, denoiser, others, mesh
                )
            x, info = sampler(key, denoiser, comp.process, shape, cond, grid)
            # nfe: network passes of the whole batch; denoiser_calls: sampler steps that call it
            passes = guidance.network_passes(denoiser)
            return x, {**info, "nfe": info["nfe"] * passes, "denoiser_calls": info["nfe"]}

        cache[setting] = jax.jit(run)
    return cache[setting]


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
    steer: particles.Steering | None = None,
    experts=(),
):
    """`num` samples from `params` with the named sampler; labels cycle over the classes.
    float64=False: float32 categorical draws (discrete families), to measure their bias;
    cfg_scale: classifier-free guidance weight (conditional runs; 1 = plain conditional);
    steer: particle sampling (FK steering or Feynman-Kac correctors; `num` particles with the
    label steer.label), experts: (Components, params) of the other models of a product.
    info["nfe"] counts network passes (a CFG call is two), info["denoiser_calls"] the calls."""
    samplers.check(comp.config.process.family, sampler_name, eta, float64)
    check_guidance_config(comp.config, cfg_scale)
    if steer is not None:
        particles.check(comp.config, steer, sampler_name, eta, len(experts))
        check_experts(comp, experts)
        particles.check_particles(num, jax.device_count())
        if steer.method == "reward":  # its checks against the data, before tracing
            rewards.build(steer.reward, steer.reward_arg, comp.dataset)
        if cfg_scale is not None and steer.method != "reward":
            raise ValueError(
                f"--cfg_scale guides the proposal of reward steering only; --steer="
                f"{steer.method} sets its own target (use --steer=cfg for the CFG target)"
            )
        if comp.num_classes:
            labels = np.full(num, steer.label)
    if comp.num_classes and labels is None:
        labels = np.arange(num) % comp.num_classes
    cond = None if labels is None else jnp.asarray(labels, jnp.int32)
    run = compiled_sampler(comp, sampler_name, steps, num, eta, float64, cfg_scale, steer, experts)
    x, info = run(jax.random.key(seed), params, cond, tuple(p for _, p in experts))
    info = jax.tree.map(np.asarray, info)
    if int(info.get("unfinished", 0)):
        warnings.warn(
            f"sampler {sampler_name!r} stopped {int(info['unfinished'])} of {num} samples at its "
            f"event cap before the end of the grid; they are not samples of the model",
            stacklevel=2,
        )
    return np.asarray(x), info

"""Drawing samples from a run's parameters, with the compiled sampler kept per setting: the first
call of a setting compiles (seconds), later calls with new parameters, seeds or labels reuse it."""

from __future__ import annotations

import dataclasses
import warnings

import jax
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from difflab import samplers
from difflab.data import rewards
from difflab.samplers import independent, solvers
from difflab.sampling import guides, particles
from difflab.sampling.shards import chunk_ranges
from difflab.training.components import Components
from difflab.training.mesh import gather, make_mesh, place


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
    if config.process.family == "classifier":
        raise ValueError(
            f"{config.name!r} is a classifier run: it is not sampled, it guides a flow or "
            f"diffusion run (sample.py --workdir=<that run> --classifier=<this run>)"
        )
    if config.process.family == "value":
        raise ValueError(
            f"{config.name!r} is a value run: it is not sampled, it values SVDD's candidates "
            f"(sample.py --workdir=<the model> --svdd=M --value=<this run>)"
        )
    sampler = sampler or config.eval.sampler
    samplers.check(config.process.family, sampler, eta, not float32)
    check_guidance_config(config, cfg_scale)
    num = config.eval.num_samples if num is None else num
    if sampler in samplers.ADAPTIVE:
        if steps is not None:
            raise ValueError(
                f"--steps={steps} does not apply to the adaptive sampler {sampler!r}: it chooses "
                f"its own steps at rtol = atol = {solvers.ADAPTIVE_TOLERANCE:g} (omit --steps)"
            )
    else:
        steps = config.eval.steps if steps is None else steps
    if (steps is not None and steps <= 0) or num <= 0:
        raise ValueError(
            f"--steps={steps} and --num_samples={num} must be positive integers (omit a flag to "
            f"use the config's eval value)"
        )
    return sampler, steps, num


def check_experts(comp: Components, experts, role: str = "expert") -> None:
    """Product experts (docs/math.md §7.4) and autoguidance's weak model share the run's data
    shape and forward process."""
    own = {k: v for k, v in comp.config.process.to_dict().items() if k != "label_dropout"}
    for expert, _ in experts:
        theirs = {k: v for k, v in expert.config.process.to_dict().items() if k != "label_dropout"}
        if theirs != own or tuple(expert.dataset.shape) != tuple(comp.dataset.shape):
            raise ValueError(
                f"{role} {expert.config.name!r} must share the data shape {comp.dataset.shape} "
                f"and the forward process of {comp.config.name!r} ({own}); it has "
                f"{expert.dataset.shape} and {theirs}"
            )


def compiled_sampler(
    comp: Components,
    sampler_name,
    steps,
    rows,
    eta,
    float64,
    cfg_scale,
    steer=None,
    experts=(),
    mesh: Mesh | None = None,
    per_sample: bool = True,
    guide: guides.Guide | None = None,
    classifier=None,
    observed: bool = False,
    value=None,
    weak=None,
    grid: str = "default",
):
    """The jitted (key, indices, params, cond, expert_params, helper_params, observed) ->
    (x, info) of one sampling setting and `rows` samples, built once per setting and kept on the
    components. Without `steer` and with per_sample each sample is drawn alone from key
    fold_in(key, index) (`samplers.independent`) and info has one entry per sample; otherwise the
    `rows` samples (particles) are one batch drawn from fold_in(key, indices[0]) (steer: from
    `key`). guide: guidance (`sampling.guides`), classifier and value: the Components of a
    classifier run and a value run (helper_params: their parameters, or None), observed: the
    call takes (values, known) rows; grid: the time grid's kind (`samplers.grid`)."""
    guide = guide or guides.Guide()
    devices = () if mesh is None else tuple(d.id for d in mesh.devices.flat)
    # the particles' label is an argument of the call (cond), not part of the compiled setting
    unlabelled = None if steer is None else dataclasses.replace(steer, label=None)
    setting = (
        sampler_name,
        steps and int(steps),
        int(rows),
        eta,
        bool(float64),
        cfg_scale,
        unlabelled,
        grid,
    )
    setting += (devices,)
    setting += (per_sample, guide, id(classifier), id(value), bool(observed), id(weak))
    setting += tuple(id(e) for e, _ in experts)
    cache = comp.compiled
    if setting not in cache:
        shape = (rows, *comp.dataset.shape)
        times = samplers.grid(sampler_name, comp.process, steps, grid)
        spread = mesh if mesh is not None and mesh.devices.size > 1 else None

        def run(key, indices, params, cond, expert_params, helper_params, observation):
            clf_params, value_params, weak_params = helper_params or (None, None, None)
            clf = None if classifier is None else (classifier, clf_params)
            poor = None if weak is None else weak.denoiser(weak_params)
            denoiser = guides.guided_denoiser(
                comp, guide, comp.denoiser(params), cfg_scale, clf, poor
            )
            process = guides.guided_process(comp, guide, observation)
            if steer is None:
                values = None if value is None else (value, value_params)
                sampler = guides.guided_sampler(
                    comp, guide, sampler_name, eta, float64, values, clf
                )
                if per_sample:
                    keys = independent.sample_keys(key, indices)
                    sampler = independent.independent(sampler)
                else:
                    keys = jax.random.fold_in(key, indices[0])
                x, info = sampler(keys, denoiser, process, shape, cond, times)
            else:
                others = [e.denoiser(p) for (e, _), p in zip(experts, expert_params, strict=True)]
                sampler, denoiser = particles.sampler_and_denoiser(
                    comp, unlabelled, sampler_name, eta, float64, denoiser, others, spread
                )
                x, info = sampler(key, denoiser, process, shape, cond, times)
            # nfe: network passes of the whole batch; denoiser_calls: sampler steps that call it;
            # classifier_calls: classifier passes of the whole batch (on each copy of it)
            passes = guides.passes(process, denoiser)
            calls = getattr(denoiser, "guidance_calls", 0) * guides.batch_copies(process)
            info = {**info, "nfe": info["nfe"] * passes, "denoiser_calls": info["nfe"]}
            return x, info | ({"classifier_calls": info["denoiser_calls"] * calls} if calls else {})

        cache[setting] = jax.jit(run)
    return cache[setting]


def sampling_mesh(devices=None) -> Mesh:
    """The 1-D data mesh samples are split over: this process's devices by default (evaluation
    during training runs on the lead process alone); jax.devices() spans every process."""
    return make_mesh(jax.local_devices() if devices is None else devices)


def check_batch_size(batch_size, num: int, steer) -> int:
    """The samples per compiled call: batch_size (default: all); particle systems need all of
    their particles in one call."""
    if batch_size is None:
        return num
    if batch_size <= 0:
        raise ValueError(f"--batch_size={batch_size} must be a positive integer")
    if steer is not None and batch_size < num:
        raise ValueError(
            f"--batch_size={batch_size} would split the {num} particles of --steer="
            f"{steer.method}: a particle system is drawn as one population (omit --batch_size)"
        )
    return min(batch_size, num)


def draw_chunks(
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
    batch_size: int | None = None,
    ranges=None,
    devices=None,
    progress: bool = False,
    per_sample: bool = True,
    guide: guides.Guide | None = None,
    classifier=None,
    observed=None,
    value=None,
    weak=None,
    grid: str = "default",
):
    """Yields (start, stop, x, info) for samples [start, stop) of `num`, in chunks of batch_size
    split over `devices` (default: this process's): sample i depends only on (seed, i), so any
    batch size, device count or subset of `ranges` gives the same samples. Arguments as `draw`;
    info has one entry per sample (`samplers.independent.reduce_info`), except under `steer` or
    per_sample=False."""
    steer, cfg_scale = particles.named(steer, cfg_scale)
    samplers.check(comp.config.process.family, sampler_name, eta, float64)
    samplers.check_grid(sampler_name, grid)
    check_guidance_config(comp.config, cfg_scale)
    guide = guide or guides.Guide()
    if value is not None:  # SVDD-MC: the candidates are valued by the value run
        guide = dataclasses.replace(guide, learned_values=True)
    classifier_config = None if classifier is None else classifier[0].config
    if observed is not None:
        observed = guides.checked_observation(comp, *observed, num)
    guides.check(comp.config, guide, sampler_name, eta, cfg_scale, classifier_config, observed)
    guides.check_value(comp.config, guide, None if value is None else value[0].config)
    if (guide.autoguide_scale is None) != (weak is None):
        raise ValueError(
            "autoguidance needs both the weak model (weak=, --autoguide) and its scale "
            "(Guide.autoguide_scale, --guide_scale)"
        )
    if weak is not None:
        check_experts(comp, [weak], "the weak model of autoguidance")
    if guide.classifier_scale and labels is None:
        labels = np.arange(num) % classifier[0].num_classes
    rows = check_batch_size(batch_size, num, steer)
    per_sample = per_sample and steer is None
    if not per_sample and rows < num:
        raise ValueError(
            f"batch_size={batch_size} < num={num}: only per-sample randomness (per_sample=True) "
            f"draws in chunks"
        )
    mesh = sampling_mesh(devices)
    if steer is not None:
        particles.check(comp.config, steer, sampler_name, eta, len(experts))
        check_experts(comp, experts)
        particles.check_particles(num, mesh.devices.size)
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
    padded = -(-rows // mesh.devices.size) * mesh.devices.size  # whole rows per device
    clf_comp, clf_params = (None, None) if classifier is None else classifier
    value_comp, value_params = (None, None) if value is None else value
    weak_comp, weak_params = (None, None) if weak is None else weak
    run = compiled_sampler(
        comp,
        sampler_name,
        steps,
        padded,
        eta,
        float64,
        cfg_scale,
        steer,
        experts,
        mesh,
        per_sample,
        guide,
        clf_comp,
        observed is not None,
        value_comp,
        weak_comp,
        grid,
    )
    split, whole = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
    params, expert_params, helper_params = place(
        (params, tuple(p for _, p in experts), (clf_params, value_params, weak_params)), whole
    )
    key = jax.random.key(seed)
    ranges = chunk_ranges(0, num, rows) if ranges is None else ranges
    if any(not 0 <= a < b <= min(a + rows, num) for a, b in ranges):
        raise ValueError(f"sample ranges {ranges} must lie in [0, {num}), {rows} at most each")
    for start, stop in tqdm.tqdm(ranges, "sampling", disable=not progress, unit="batch"):
        indices = np.arange(start, start + padded)  # rows past `stop` pad the last chunk
        cond = None if labels is None else np.resize(np.asarray(labels)[start:stop], padded)
        obs = None if observed is None else chunk_rows(observed, start, stop, padded)
        x, info = run(
            key,
            place(indices, split),
            params,
            place(cond, split),
            expert_params,
            helper_params,
            place(obs, split),
        )
        x, info = gather((x, info))
        if per_sample:
            info = {k: v[: stop - start] for k, v in info.items()}
        yield start, stop, x[: stop - start], info


def chunk_rows(arrays, start: int, stop: int, padded: int) -> tuple:
    """Rows [start, stop) of each array, repeated to `padded` rows (the padded last chunk)."""
    return tuple(np.resize(v[start:stop], (padded, *v.shape[1:])) for v in arrays)


def draw(comp: Components, params, sampler_name: str, steps: int, num: int, seed: int, **kw):
    """`num` samples from `params` with the named sampler, as `draw_chunks` draws them
    (keywords: labels, eta, float64, cfg_scale, steer, experts, batch_size, devices, progress,
    per_sample, guide, classifier, observed, value), joined: (x, info) as numpy arrays. Labels
    cycle over the classes (of the classifier under classifier guidance).
    float64=False: float32 categorical draws (discrete families), to measure their bias;
    cfg_scale: classifier-free guidance weight (conditional runs; 1 = plain conditional);
    steer: particle sampling (FK steering or Feynman-Kac correctors; `num` particles with the
    label steer.label), experts: (Components, params) of the other models of a product;
    batch_size: samples per compiled call; devices: the devices each batch is split over.
    Sample i depends only on (seed, i); per_sample=False draws the batch from one key instead (a
    faster compile, for evaluation during training). guide: a `sampling.guides.Guide`
    (CFG interval, classifier / reward-gradient guidance, SVDD, prompt and measurement
    guidance); classifier / value: (Components, params) of a classifier run / of a value run
    (SVDD-MC values); weak: (Components, params) of autoguidance's weak model (with
    guide.autoguide_scale); grid: "default" (the sampler's own), "uniform", "logsnr" or "edm"
    (`samplers.grid`); observed: (values, known)
    rows (cycled over the samples) that condition every sample (prompts, infilling,
    inpainting). info["nfe"] counts network passes (a CFG call is two), info["denoiser_calls"]
    the calls, info["classifier_calls"] the classifier's passes.

    Args:
        comp: a run's `Components` (`sampling.runs.load_run(...).components`).
        params: its network parameters (the EMA ones of a checkpoint).
        sampler_name: a sampler of the family (`samplers.described()`); steps: grid steps
            (None for the adaptive samplers); num: samples (particles under steer); seed.

    Returns:
        (x [num, *data shape] numpy, info dict of numpy values): nfe, denoiser_calls, and what
        the sampler reports (log_z, ess, resamplings under steer; value_calls under SVDD).

    Raises:
        ValueError naming the setting the run cannot take, before anything is compiled.
    """
    parts = list(draw_chunks(comp, params, sampler_name, steps, num, seed, **kw))
    x = np.concatenate([p[2] for p in parts])
    batched = kw.get("steer") is not None or not kw.get("per_sample", True)
    info = parts[0][3] if batched else merged_info([p[3] for p in parts])
    if int(info.get("unfinished", 0)):
        warnings.warn(
            f"sampler {sampler_name!r} stopped {int(info['unfinished'])} of {num} samples at its "
            f"event cap before the end of the grid; they are not samples of the model",
            stacklevel=2,
        )
    return x, info


def merged_info(chunks) -> dict:
    """The per-sample info of several chunks as the batch info of all of them."""
    return independent.reduce_info({k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]})

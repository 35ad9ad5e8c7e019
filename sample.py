"""Draw samples from a trained run: `python sample.py --workdir runs/flow_checkerboard`.

Loads the run's config and the EMA parameters of its latest (or --step) checkpoint, samples with
--sampler for --steps, and writes samples.npz, a plot and the quality metrics into --out
(default: <workdir>/samples/<sampler>_<steps>steps[_eta..][_cfg..][_float32]_seed<seed>_ckpt<step>
[_guidance][_observation], so that runs with other settings never overwrite each other).
Guidance (docs/math.md §6): --cfg_scale and --cfg_interval, --classifier with --classifier_scale,
--reward_guidance and --svdd with --reward, and observations: --prompt (text runs) or --observed
(an .npz of values and a known mask: infilling and inpainting) with --prompt_scale or
--measurement_scale. Samples are drawn --batch_size at a
time, split over every device (of every process with --distributed / --num_processes), and
streamed to <out>/shards as they are drawn: killed and started again, it draws only what is
missing. Sample i depends only on (--seed, i), whatever the batch size or device count. The
sampler, eta and guidance are checked against the saved config before anything is loaded. In
Python, `difflab.sampling.runs.load_run(workdir)` gives the same run. Bad input ends with one line,
`error: <message>`; DIFFLAB_TRACEBACK=1 shows the traceback.
"""

import dataclasses
import json
import os

from absl import app, flags, logging

try:
    from difflab.training import cli
except ModuleNotFoundError as e:  # the clone's difflab/ folder alone: nothing installed
    raise SystemExit(f"error: {e}; install the project first: pip install -e .") from None
from difflab import samplers
from difflab.samplers import ADAPTIVE
from difflab.samplers.solvers import ADAPTIVE_TOLERANCE

_WORKDIR = flags.DEFINE_string("workdir", None, "run directory written by train.py", required=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
_SAMPLER = flags.DEFINE_string(
    "sampler",
    None,
    f"sampler (default: the config's eval sampler), by the run's family: {samplers.described()}",
)
_STEPS = flags.DEFINE_integer(
    "steps",
    None,
    f"number of sampling steps (default: config's; not for the adaptive {', '.join(ADAPTIVE)}, "
    f"which choose their own at rtol = atol = {ADAPTIVE_TOLERANCE:g})",
)
_NUM = flags.DEFINE_integer("num_samples", None, "number of samples (default: config's eval)")
_ETA = flags.DEFINE_float("eta", None, "noise scale of ddim (default 0) and em (default 1)")
_FLOAT32 = flags.DEFINE_bool(
    "categorical_float32",
    False,
    "samplers that draw categoricals: float32 Gumbel-max (biased colder; default float64)",
)
_SEED = flags.DEFINE_integer("seed", 0, "sampling seed")
_CFG = flags.DEFINE_float(
    "cfg_scale", None, "classifier-free guidance weight w (conditional runs; 1 = conditional)"
)
_OUT = flags.DEFINE_string("out", None, "output directory (default: named by the settings)")
_STEER = flags.DEFINE_enum(
    "steer",
    None,
    ["reward", "anneal", "cfg", "product"],
    "particle sampling (SMC, --num_samples particles): FK steering toward exp(scale r), or "
    "Feynman-Kac correctors for p^beta, the CFG target p^(1-w) p(.|c)^w (w = --cfg_scale) or a "
    "product with --experts",
)
_REWARD = flags.DEFINE_string(
    "reward",
    None,
    "reward of --steer=reward, --reward_guidance and --svdd: target | class | token | total",
)
_REWARD_ARG = flags.DEFINE_string("reward_arg", "", "the reward's argument (a point, class, token)")
_REWARD_SCALE = flags.DEFINE_float("reward_scale", 1.0, "steer=reward: lambda of exp(lambda r)")
_POTENTIAL = flags.DEFINE_enum("potential", "diff", ["diff", "max", "add", "rt"], "FK potential")
_POTENTIAL_EVERY = flags.DEFINE_integer("potential_every", 1, "apply the potential every k steps")
_BETA = flags.DEFINE_float("beta", 2.0, "steer=anneal: the exponent of p^beta")
_EXPERTS = flags.DEFINE_list("experts", [], "steer=product: workdirs of the other models")
_EXPERT_WEIGHTS = flags.DEFINE_list(
    "expert_weights", [], "steer=product: exponents of this run's model, then of each expert"
)
_RESAMPLING = flags.DEFINE_enum(
    "resampling", "systematic", ["systematic", "stratified", "multinomial", "residual"], "scheme"
)
_ESS = flags.DEFINE_float("ess_threshold", 0.5, "resample when ESS < this fraction of particles")
_RESAMPLE_EVERY = flags.DEFINE_integer("resample_every", 0, "resample every k steps (0: by ESS)")
_LABEL = flags.DEFINE_integer("label", None, "the particles' class (conditional runs)")
_CFG_INTERVAL = flags.DEFINE_list(
    "cfg_interval", None, "t_lo,t_hi: apply --cfg_scale only for t in [t_lo, t_hi] (1 elsewhere)"
)
_CLASSIFIER = flags.DEFINE_string(
    "classifier", None, "workdir of a noise-conditional classifier run (configs/classifier_*.py)"
)
_CLASSIFIER_SCALE = flags.DEFINE_float(
    "classifier_scale", 0.0, "classifier guidance scale gamma (flow, diffusion, masked runs)"
)
_CLASSIFIER_EXACT = flags.DEFINE_bool(
    "classifier_exact",
    True,
    "masked runs: the exact tilted denoiser (L V classifier passes per step); "
    "--noclassifier_exact: its first-order approximation (one pass and a gradient)",
)
_REWARD_GUIDANCE = flags.DEFINE_float(
    "reward_guidance", 0.0, "scale rho of grad --reward at the denoised estimate (target, class)"
)
_SVDD = flags.DEFINE_integer("svdd", 0, "SVDD: candidates per step, valued by --reward (0: off)")
_SVDD_ALPHA = flags.DEFINE_float("svdd_alpha", 0.0, "SVDD temperature alpha (0: argmax)")
_VALUE = flags.DEFINE_string(
    "value", None, "SVDD-MC: workdir of a value run (configs/value_*.py) instead of --reward"
)
_PROMPT = flags.DEFINE_string("prompt", None, "text runs: the text every sample starts with")
_OBSERVED = flags.DEFINE_string(
    "observed", None, ".npz with x (values) and known (bool mask) rows: infilling / inpainting"
)
_PROMPT_SCALE = flags.DEFINE_float(
    "prompt_scale", None, "masked runs: SMDM guidance w of the prompt / observed tokens"
)
_MEASUREMENT_SCALE = flags.DEFINE_float(
    "measurement_scale", 0.0, "Gaussian inpainting: scale of the DPS measurement score"
)
_NOISE_STD = flags.DEFINE_float("noise_std", 0.1, "Gaussian inpainting: measurement noise std")
_GRADIENT_INTERVAL = flags.DEFINE_list(
    "guidance_interval",
    ["0", "0.95"],
    "t_lo,t_hi where classifier, reward-gradient and measurement guidance act (their weight "
    "sigma_t^2 / alpha_t diverges at t = 1)",
)
_UNCONDITIONAL = flags.DEFINE_bool(
    "unconditional", False, "conditional runs: sample the null-label (unconditional) model"
)
_REPLACE = flags.DEFINE_bool(
    "replace", True, "Gaussian inpainting: the denoised estimate takes the observed values"
)
_BATCH = flags.DEFINE_integer("batch_size", None, "samples per compiled call (default: all)")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize()")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index")
# metrics compare at most this many samples with fresh data (energy distance is quadratic)
METRIC_ROWS = 10_000


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    cli.use_compilation_cache()
    with cli.expected_errors():
        sample()


def setting_name(sampler, steps, eta, cfg_scale, float32, seed, step, steer=None) -> str:
    """The default output folder's name: every setting that changes the samples."""
    # adaptive samplers choose their own steps: named by their tolerance
    parts = [
        f"{sampler}_rtol{ADAPTIVE_TOLERANCE:g}" if steps is None else f"{sampler}_{steps}steps"
    ]
    parts += [] if eta is None else [f"eta{eta:g}"]
    parts += [] if cfg_scale is None else [f"cfg{cfg_scale:g}"]
    parts += ["float32"] if float32 else []
    parts += [] if steer is None else [steer.name()]
    parts += [] if steer is None or steer.label is None else [f"label{steer.label}"]
    return "_".join([*parts, f"seed{seed}", f"ckpt{step}"])


def steering_setting():
    """The particle-sampling setting of the flags (None without --steer)."""
    from difflab.sampling.particles import Steering

    if _STEER.value is None:
        return None
    try:
        weights = tuple(float(w) for w in _EXPERT_WEIGHTS.value)
    except ValueError as e:
        raise ValueError(f"--expert_weights must be numbers, got {_EXPERT_WEIGHTS.value}") from e
    return Steering(
        method=_STEER.value,
        reward=_REWARD.value or "",
        reward_arg=_REWARD_ARG.value,
        scale=_REWARD_SCALE.value,
        potential=_POTENTIAL.value,
        every=_POTENTIAL_EVERY.value,
        beta=_BETA.value,
        cfg_scale=_CFG.value if _CFG.value is not None else 0.0,
        weights=weights,
        scheme=_RESAMPLING.value,
        ess_threshold=_ESS.value,
        resample_every=_RESAMPLE_EVERY.value,
        label=_LABEL.value,
    )


def guide_setting():
    """The guidance setting of the flags."""
    from difflab.sampling.guides import Guide

    interval = None if _CFG_INTERVAL.value is None else pair("cfg_interval", _CFG_INTERVAL.value)
    return Guide(
        learned_values=_VALUE.value is not None,
        cfg_interval=interval,
        classifier_scale=_CLASSIFIER_SCALE.value,
        classifier_exact=_CLASSIFIER_EXACT.value,
        reward=(_REWARD.value or "") if (_REWARD_GUIDANCE.value or _SVDD.value) else "",
        reward_arg=_REWARD_ARG.value if (_REWARD_GUIDANCE.value or _SVDD.value) else "",
        reward_scale=_REWARD_GUIDANCE.value,
        svdd=_SVDD.value,
        svdd_alpha=_SVDD_ALPHA.value,
        prompt_scale=_PROMPT_SCALE.value,
        measurement_scale=_MEASUREMENT_SCALE.value,
        noise_std=_NOISE_STD.value,
        replace=_REPLACE.value,
        unconditional=_UNCONDITIONAL.value,
        gradient_interval=pair("guidance_interval", _GRADIENT_INTERVAL.value),
    )


def pair(flag: str, values) -> tuple:
    """Two numbers t_lo,t_hi of a list flag."""
    try:
        out = tuple(float(v) for v in values)
    except ValueError:
        out = ()
    if len(out) != 2:
        raise ValueError(f"--{flag} must be two numbers t_lo,t_hi, got {','.join(values)}")
    return out


def observation(dataset, num: int):
    """(values, known) of --prompt or --observed, or None."""
    from difflab.data import files
    from difflab.sampling import guides

    if _PROMPT.value is not None and _OBSERVED.value is not None:
        raise ValueError("give --prompt or --observed, not both")
    if _PROMPT.value is not None:
        return guides.text_prompt(dataset, _PROMPT.value, num)
    if _OBSERVED.value is None:
        return None
    if not os.path.isfile(_OBSERVED.value):
        raise ValueError(f"--observed={_OBSERVED.value!r} is not a file")
    with files.open_npz(_OBSERVED.value, "--observed") as f:
        if "x" not in f or "known" not in f:
            raise ValueError(
                f"--observed={_OBSERVED.value!r} must hold arrays 'x' and 'known', has {list(f)}"
            )
        return f["x"], f["known"]


def sample():
    import jax
    import numpy as np

    from difflab import metrics
    from difflab.sampling import guides, particles, shards
    from difflab.sampling.draw import (
        check_batch_size,
        check_request,
        draw,
        draw_chunks,
        merged_info,
    )
    from difflab.sampling.evaluate import show
    from difflab.sampling.runs import load_config, load_run

    if _DISTRIBUTED.value or _NUM_PROCESSES.value:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    lead = jax.process_index() == 0
    config, step = load_config(_WORKDIR.value, _STEP.value)
    steer = steering_setting()
    guide = guide_setting()
    if steer is not None and guide != type(guide)():
        raise ValueError(
            "guidance flags (--classifier_scale, --reward_guidance, --svdd, --cfg_interval, "
            "--prompt_scale, --measurement_scale) apply to plain sampling; --steer sets its own "
            "target"
        )
    cfg = None if steer is not None and steer.method == "cfg" else _CFG.value
    sampler, steps, num = check_request(
        config, _SAMPLER.value, _STEPS.value, _NUM.value, _ETA.value, _FLOAT32.value, cfg
    )
    if steer is not None:
        particles.check(config, steer, sampler, _ETA.value, len(_EXPERTS.value))
    rows = check_batch_size(_BATCH.value, num, steer)
    eta = samplers.effective_eta(sampler, _ETA.value)
    name = setting_name(sampler, steps, eta, cfg, _FLOAT32.value, _SEED.value, step, steer)
    name += "".join(f"_{p}" for p in (guide.name(), observed_name()) if p)
    out = _OUT.value or os.path.join(_WORKDIR.value, "samples", name)
    if _CLASSIFIER.value is not None:
        guides.check_classifier(config, load_config(_CLASSIFIER.value)[0])
    if _VALUE.value is not None:
        guides.check_value(config, guide, load_config(_VALUE.value)[0])

    run = load_run(_WORKDIR.value, step)
    experts = [load_run(w) for w in _EXPERTS.value]
    classifier = None if _CLASSIFIER.value is None else load_run(_CLASSIFIER.value)
    value = None if _VALUE.value is None else load_run(_VALUE.value)
    observed = observation(run.components.dataset, num)
    labels = metrics.sampling_labels(run.components.dataset, num, _SEED.value)
    if not run.components.num_classes:
        labels = None
    setting = dict(run=run.config.name, checkpoint=run.step, sampler=sampler, steps=steps)
    setting |= dict(eta=eta, cfg_scale=cfg, float32=_FLOAT32.value, seed=_SEED.value, num=num)
    common = (run.components, run.params, sampler, steps, num, _SEED.value)
    # as JSON holds it (tuples become lists), so that a rerun's setting compares equal
    setting |= dict(guide=json.loads(json.dumps(dataclasses.asdict(guide))))
    setting |= dict(classifier=_CLASSIFIER.value, value=_VALUE.value)
    setting |= dict(prompt=_PROMPT.value, observed=_OBSERVED.value)
    settings = dict(labels=labels, eta=_ETA.value, float64=not _FLOAT32.value, cfg_scale=cfg)
    settings |= dict(guide=guide, observed=observed)
    settings |= dict(
        classifier=None if classifier is None else (classifier.components, classifier.params)
    )
    settings |= dict(value=None if value is None else (value.components, value.params))
    if steer is None:  # streamed to shards; a rerun draws only the missing ones
        folder = os.path.join(out, "shards")
        if lead:
            shards.check_setting(folder, setting)
        todo = shards.missing(folder, num, rows)
        settings |= dict(batch_size=rows, ranges=todo, devices=jax.devices(), progress=lead)
        chunks = draw_chunks(*common, **settings)
        for start, stop, x, info in chunks:
            if lead:
                shards.write(folder, start, stop, x, info)
        if not lead:
            return
        x, per_sample = shards.read(folder, num)
        info = merged_info([per_sample])
    else:
        experts = [(e.components, e.params) for e in experts]
        x, info = draw(*common, **settings, steer=steer, experts=experts, devices=jax.devices())
        if not lead:
            return
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, "samples.npz"), x=x)
    done = f"rtol {ADAPTIVE_TOLERANCE:g}" if steps is None else f"{steps} steps"
    title = f"{run.config.name} step {run.step}: {sampler}, {done}"
    title += "" if cfg is None else f", CFG w={cfg:g}"
    title += "" if steer is None else f", SMC {steer.name()}"
    title += f", {guide.name()}" if guide.name() else ""
    title += f", prompt {_PROMPT.value!r}" if _PROMPT.value else ""
    shown_labels = labels if steer is None else None  # particles share one label (in the title)
    stem = os.path.join(out, "samples")
    shown = show(run.components.dataset, x, stem, title, _SEED.value, shown_labels)
    result = {
        "step": run.step,
        "sampler": sampler,
        **({} if eta is None else {"eta": eta}),
        "cfg_scale": cfg,
        **({} if steer is None else {"steer": dataclasses.asdict(steer), **smc_summary(info)}),
        "categorical_float32": _FLOAT32.value,
        "steps": steps,  # None: an adaptive sampler (its tolerance below, its NFE in nfe)
        **({"rtol": ADAPTIVE_TOLERANCE, "atol": ADAPTIVE_TOLERANCE} if steps is None else {}),
        "seed": _SEED.value,
        "num_samples": len(x),
        "batch_size": rows,
        "devices": jax.device_count(),
        "nfe": float(info["nfe"]),
        "denoiser_calls": float(info["denoiser_calls"]),
        **{k: float(info[k]) for k in ("classifier_calls",) if k in info},
        **({"guide": dataclasses.asdict(guide)} if guide.name() else {}),
        **({"classifier": _CLASSIFIER.value} if _CLASSIFIER.value else {}),
        **({"value": _VALUE.value} if _VALUE.value else {}),
        **{k: float(info[k]) for k in ("value_calls",) if k in info},
        **({"prompt": _PROMPT.value} if _PROMPT.value else {}),
        **({"observed": _OBSERVED.value} if _OBSERVED.value else {}),
        **metrics.report(x, run.components.dataset, n=min(len(x), METRIC_ROWS), seed=_SEED.value),
    }
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))
    print(f"wrote {out}/samples.npz, {os.path.basename(shown)}, metrics.json")


def observed_name() -> str:
    """The observation's part of the output folder's name."""
    if _PROMPT.value is not None:
        return "prompt" + "".join(c if c.isalnum() else "-" for c in _PROMPT.value)[:24]
    if _OBSERVED.value is not None:
        return "observed-" + os.path.splitext(os.path.basename(_OBSERVED.value))[0]
    return ""


def smc_summary(info) -> dict:
    """The particle system's diagnostics worth keeping next to the samples."""
    return {
        "resamplings": int(info["resamplings"]),
        "min_ess": float(info["ess"].min()),
        "log_z": float(info["log_z"]),
    }


if __name__ == "__main__":
    app.run(main)

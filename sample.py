"""Draw samples from a trained run: `python sample.py --workdir runs/flow_checkerboard`.

Loads the run's config and the EMA parameters of its latest (or --step) checkpoint, samples with
--sampler for --steps, and writes samples.npz, a plot and the quality metrics into --out
(default: <workdir>/samples/<sampler>_<steps>steps[_eta..][_cfg..][_float32]_seed<seed>_ckpt<step>,
so that runs with other settings never overwrite each other). The sampler, eta and guidance are
checked against the saved config before anything is loaded. In Python,
`training.run.load_run(workdir)` gives the same run. Bad input ends with one line,
`error: <message>`; DIFFLAB_TRACEBACK=1 shows the traceback.
"""

import json
import os

from absl import app, flags, logging

from training import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "run directory written by train.py", required=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
_SAMPLER = flags.DEFINE_string("sampler", None, "sampler name (default: the config's eval sampler)")
_STEPS = flags.DEFINE_integer("steps", None, "number of sampling steps (default: config's)")
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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    with cli.expected_errors():
        sample()


def setting_name(sampler, steps, eta, cfg_scale, float32, seed, step) -> str:
    """The default output folder's name: every setting that changes the samples."""
    parts = [f"{sampler}_{steps}steps"]
    parts += [] if eta is None else [f"eta{eta:g}"]
    parts += [] if cfg_scale is None else [f"cfg{cfg_scale:g}"]
    parts += ["float32"] if float32 else []
    return "_".join([*parts, f"seed{seed}", f"ckpt{step}"])


def sample():
    import numpy as np

    import metrics
    import samplers
    from training.evaluate import show
    from training.run import load_config, load_run
    from training.sampling import check_request, draw

    config, step = load_config(_WORKDIR.value, _STEP.value)
    sampler, steps, num = check_request(
        config, _SAMPLER.value, _STEPS.value, _NUM.value, _ETA.value, _FLOAT32.value, _CFG.value
    )
    eta = samplers.effective_eta(sampler, _ETA.value)
    name = setting_name(sampler, steps, eta, _CFG.value, _FLOAT32.value, _SEED.value, step)
    out = _OUT.value or os.path.join(_WORKDIR.value, "samples", name)

    run = load_run(_WORKDIR.value, step)
    labels = metrics.sampling_labels(run.components.dataset, num, _SEED.value)
    if not run.components.num_classes:
        labels = None
    x, info = draw(
        run.components,
        run.params,
        sampler,
        steps,
        num,
        _SEED.value,
        labels,
        _ETA.value,
        float64=not _FLOAT32.value,
        cfg_scale=_CFG.value,
    )
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, "samples.npz"), x=x)
    title = f"{run.config.name} step {run.step}: {sampler}, {steps} steps"
    title += "" if _CFG.value is None else f", CFG w={_CFG.value:g}"
    shown = show(run.components.dataset, x, os.path.join(out, "samples"), title, _SEED.value)
    result = {
        "step": run.step,
        "sampler": sampler,
        **({} if eta is None else {"eta": eta}),
        "cfg_scale": _CFG.value,
        "categorical_float32": _FLOAT32.value,
        "steps": steps,
        "seed": _SEED.value,
        "num_samples": len(x),
        "nfe": float(info["nfe"]),
        "denoiser_calls": float(info["denoiser_calls"]),
        **metrics.report(x, run.components.dataset, n=len(x), seed=_SEED.value),
    }
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))
    print(f"wrote {out}/samples.npz, {os.path.basename(shown)}, metrics.json")


if __name__ == "__main__":
    app.run(main)

"""Draw samples from a trained run: `python sample.py --workdir runs/flow_checkerboard`.

Loads the run's config and the EMA parameters of its latest (or --step) checkpoint and draws the
job the other flags describe: they are the fields of `difflab.sampling.request.Request`, name for
name (sampler, steps, guidance as in docs/math.md §6, particle methods as in §7). Writes
samples.npz, a plot and the quality metrics into --out (default:
<workdir>/samples/<every setting that changes the samples>, so that runs with other settings never
overwrite each other). Samples are drawn --batch_size at a time, split over every device (of
every process with --distributed / --num_processes), and streamed to <out>/shards as they are
drawn: killed and started again, it draws only what is missing. Sample i depends only on (--seed,
i), whatever the batch size or device count. The request is checked against the saved config
before anything is loaded. In Python, `load_run(workdir).sample(Request(...))` draws the same.
Bad input ends with one line, `error: <message>`; DIFFLAB_TRACEBACK=1 shows the traceback.
"""

import json
import os
import sys

from absl import app, flags, logging

try:
    from difflab.training import cli
except ModuleNotFoundError as e:  # the clone's difflab/ folder alone: nothing installed
    raise SystemExit(f"error: {e}; install the project first: pip install -e .") from None
from difflab.sampling import request as requests

_WORKDIR = flags.DEFINE_string("workdir", None, "run directory written by train.py", required=True)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
_OUT = flags.DEFINE_string("out", None, "output directory (default: named by the settings)")
_REQUEST = requests.define_flags(module_name=sys.argv[0])
_DISTRIBUTED = cli.define_distributed_flags()
# metrics compare at most this many samples with fresh data (energy distance is quadratic)
METRIC_ROWS = 10_000


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    cli.use_compilation_cache()
    with cli.expected_errors():
        sample(requests.from_flags(_REQUEST))


def sample(request):
    import jax
    import numpy as np

    from difflab import metrics
    from difflab.sampling.evaluate import show
    from difflab.sampling.runs import (
        class_labels,
        helper_config,
        load_config,
        load_run,
        sample_streamed,
    )

    cli.initialize_distributed(_DISTRIBUTED)
    config, step = load_config(_WORKDIR.value, _STEP.value)
    helpers = {k: helper_config(getattr(request, k)) for k in ("classifier", "value")}
    request = request.resolved(config, helpers)
    out = _OUT.value or os.path.join(_WORKDIR.value, "samples", request.name(step))
    run = load_run(_WORKDIR.value, step)
    done = sample_streamed(run, request, os.path.join(out, "shards"), jax.devices())
    if done is None:  # not the lead process
        return
    x, info = done
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, "samples.npz"), x=x)
    stem = os.path.join(out, "samples")
    labels = class_labels(run, request)  # None under steer: the particles share one label
    shown = show(run.components.dataset, x, stem, title(run, request), request.seed, labels)
    result = record(run, request, info, len(x), jax.device_count())
    result |= metrics.report(
        x, run.components.dataset, n=min(len(x), METRIC_ROWS), seed=request.seed
    )
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))
    print(f"wrote {out}/samples.npz, {os.path.basename(shown)}, metrics.json")


def title(run, request) -> str:
    """The plot's title: the run, its checkpoint and the settings that shaped the samples."""
    done = f"rtol {requests.ADAPTIVE_TOLERANCE:g}" if request.steps is None else ""
    parts = [f"{run.config.name} step {run.step}: {request.sampler}"]
    parts += [done or f"{request.steps} steps"]
    parts += [] if request.plain_cfg_scale is None else [f"CFG w={request.plain_cfg_scale:g}"]
    parts += [] if request.steer is None else [f"SMC {request.steering().name()}"]
    parts += [p for p in (request.guide().name(),) if p]
    parts += [f"prompt {request.prompt!r}"] if request.prompt else []
    return ", ".join(parts)


def record(run, request, info, num: int, devices: int) -> dict:
    """metrics.json's description of the job and its costs (the metrics are added to it)."""
    result = {"step": run.step, **request.record(), "num_samples": num, "devices": devices}
    result |= {k: float(info[k]) for k in ("nfe", "denoiser_calls") if k in info}
    result |= {k: float(info[k]) for k in ("classifier_calls", "value_calls") if k in info}
    if request.steer is not None:  # the particle system's diagnostics
        result |= {"resamplings": int(info["resamplings"]), "log_z": float(info["log_z"])}
        result |= {"min_ess": float(info["ess"].min())}
    return result


if __name__ == "__main__":
    app.run(main)

"""Quality of a trained masked-diffusion run: held-out NELBO and samples per sampler.

python benchmarks/masked_quality.py --workdir runs/masked_text [--settings ancestral:64,...]
python benchmarks/masked_quality.py --config configs/masked_markov.py   (trains it first, timed)

Writes <config>_quality.json with:
- held-out bits per token from the continuous-time NELBO (an upper bound on the model's NLL) on
  --num_windows sequences of the test split, each with --num_t draws of (t, z_t), with its
  standard error; for text, next to character n-gram baselines (orders 1..6, interpolated
  additive smoothing) fitted on the training split and scored on the same windows;
- per sampler: the data family's sample metrics (Markov: the samples' exact NLL per token under
  the chain, against the data's entropy; text: n-gram bits of samples against held-out text),
  with float64 and float32 categorical draws.
"""

import os
import time

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "train this config first", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "a trained run (or where to train --config)")
_SETTINGS = flags.DEFINE_string(
    "settings",
    "",
    "sampler:steps,... (default: ancestral at T = L and 4L, first_hitting, confidence at T = L)",
)
_NUM_WINDOWS = flags.DEFINE_integer("num_windows", 512, "held-out sequences for the NELBO")
_NUM_T = flags.DEFINE_integer("num_t", 16, "draws of (t, z_t) per held-out sequence")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from difflab import metrics
    from difflab.benchmarks.common import heldout, write_result
    from difflab.sampling.evaluate import evaluate
    from difflab.sampling.runs import load_run
    from difflab.training.loop import train

    result = {}
    workdir = _WORKDIR.value
    if _CONFIG.value is not None:
        workdir = workdir or os.path.join("runs", _CONFIG.value.name)
        t0 = time.perf_counter()
        train(_CONFIG.value, workdir, evaluate=evaluate)
        result["train_wall_s_incl_compile_and_evals"] = round(time.perf_counter() - t0, 1)
    run = load_run(workdir)
    cfg = run.config
    length = run.components.dataset.shape[0]
    settings = _SETTINGS.value or (
        f"ancestral:{length},ancestral:{4 * length},first_hitting:{length},confidence:{length}"
    )
    n = cfg.eval.num_samples
    labels = metrics.sampling_labels(run.components.dataset, n, cfg.eval.seed)
    labels = labels if run.components.num_classes else None
    rows = []
    for part in settings.split(","):
        sampler, steps = part.split(":")
        for float64 in (True, False):
            t0 = time.perf_counter()
            x, info = run.sample(
                sampler, steps=int(steps), num_samples=n, seed=cfg.eval.seed, labels=labels,
                categorical_float32=not float64,
            )  # fmt: skip
            wall = time.perf_counter() - t0
            q = metrics.report(x, run.components.dataset, n=n, seed=cfg.eval.seed)
            rows.append(
                {
                    "sampler": sampler,
                    "steps": int(steps),
                    "categorical": "float64" if float64 else "float32",
                    "nfe": int(info["nfe"]),
                    "wall_s_incl_compile": round(wall, 2),
                    **{k: round(v, 5) for k, v in q.items()},
                }
            )
            print(rows[-1])
    result |= {
        "config": cfg.name,
        "train_steps": cfg.train.steps,
        "checkpoint_step": run.step,
        "heldout": heldout(run, _NUM_WINDOWS.value, _NUM_T.value),
        "num_samples": n,
        "samplers": rows,
    }
    print(result["heldout"])
    write_result(
        f"{cfg.name}_quality",
        result,
        _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
    )


if __name__ == "__main__":
    app.run(main)

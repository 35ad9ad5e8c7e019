"""Train a 2-D config from scratch (timed) and measure its samples per sampler and step count.

python benchmarks/points_quality.py --config configs/flow_checkerboard.py
    [--settings heun:50,euler:100] [--workdir /tmp/points_run]

Writes <config>_points_quality.json: training wall time (compile included), the final eval of
the run, and for each setting the sliced Wasserstein and energy distances of eval.num_samples
samples against fresh data, next to the same statistics between two independent data draws.
"""

import os
import shutil
import tempfile
import time

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "2-D experiment config", lock_config=True)
_SETTINGS = flags.DEFINE_string(
    "settings",
    "euler:100,heun:50,ddpm:200,ddim:100,em:500,heun_edm:32,adaptive:1",
    "sampler:steps,...",
)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (default: a fresh temporary one)")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from difflab import metrics
    from difflab.benchmarks.common import write_result
    from difflab.sampling.draw import draw
    from difflab.sampling.evaluate import evaluate
    from difflab.sampling.runs import load_run
    from difflab.training.loop import train

    config = _CONFIG.value
    workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="points_quality_")
    if os.path.exists(os.path.join(workdir, "checkpoints")):
        raise ValueError(
            f"--workdir {workdir!r} already holds a run; this benchmark times training from scratch"
        )
    t0 = time.perf_counter()
    final = train(config, workdir, evaluate=evaluate)
    wall = time.perf_counter() - t0
    run = load_run(workdir)
    n = config.eval.num_samples
    rows = []
    for part in _SETTINGS.value.split(","):
        sampler, steps = part.split(":")
        x, info = draw(run.components, run.params, sampler, int(steps), n, config.eval.seed)
        q = metrics.report(x, run.components.dataset, n=n, seed=config.eval.seed)
        rows.append(
            {
                "sampler": sampler,
                "steps": int(steps),
                "nfe": int(info["nfe"]),
                **{k: round(v, 5) for k, v in q.items()},
            }
        )
        print(rows[-1])
    result = {
        "config": config.name,
        "train_steps": config.train.steps,
        "train_wall_s_incl_compile_and_evals": round(wall, 1),
        "num_samples": n,
        "final_eval": final,
        "samplers": rows,
    }
    write_result(
        f"{config.name}_points_quality",
        result,
        _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
    )
    if _WORKDIR.value is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)

"""Sample quality of a trained digits run: Frechet distance vs sampler and step count.

python benchmarks/digits_quality.py --workdir runs/flow_digits [--num_samples 800]
    [--settings euler:10,heun:20]

Loads the run's EMA parameters, draws samples with each sampler at several step counts, and
records the Frechet distance (digit-classifier features) next to the data-vs-data value, the NFE
and the wall time, in benchmarks/results/<config>_quality.json, with a figure of sample grids.
"""

import os

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "runs/flow_digits", "trained digits run")
_NUM = flags.DEFINE_integer("num_samples", 800, "samples per setting (the data has 1617)")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")


def feature_trace(params, x):
    """tr Cov of classifier features: diversity (a collapsed model has a small trace)."""
    import numpy as np

    from difflab.metrics import frechet

    return float(np.trace(np.cov(np.asarray(frechet.features(params, x)), rowvar=False)))


def nearest_distance(x, pool):
    """Mean Euclidean pixel distance from each x to its nearest neighbour in pool."""
    import numpy as np

    a, b = x.reshape(len(x), -1), pool.reshape(len(pool), -1)
    d2 = (a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None]
    return float(np.sqrt(np.clip(d2.min(1), 0, None)).mean())


SETTINGS = {
    "flow": "euler:5,euler:10,euler:20,euler:50,heun:5,heun:10,heun:20,heun:50,adaptive:1",
    "diffusion": "ddpm:20,ddpm:50,ddpm:100,ddpm:250,ddim:5,ddim:10,ddim:20,ddim:50,ddim:100,"
    "em:50,em:100,em:250,heun_edm:5,heun_edm:10,heun_edm:18,heun_edm:32,adaptive:1",
}
_SETTINGS = flags.DEFINE_string("settings", None, "sampler:steps,... (default: per family)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import numpy as np

    from difflab import metrics
    from difflab.benchmarks.common import scored_digits, write_result
    from difflab.metrics import frechet
    from difflab.sampling.runs import load_run
    from difflab.training import plots
    from difflab.training.logging import read_jsonl

    run = load_run(_WORKDIR.value)
    comp, n = run.components, _NUM.value
    ref = comp.dataset.reference(2 * n, 0)
    data_fd = frechet.frechet_distance(ref[n : 2 * n], ref[:n])
    # class mix of the samples = that of the data half ref[n:2n] (a fair data-vs-data reference)
    labels = metrics.sampling_labels(comp.dataset, n, 0)
    params = frechet.classifier()[0]
    from difflab import data

    held_out = data.digits(0, "test").x
    train_x = comp.dataset.x
    rows, grids = [], []
    spec = _SETTINGS.value or SETTINGS[run.config.process.family]
    settings = [(name, int(steps)) for name, steps in (p.split(":") for p in spec.split(","))]
    for sampler, steps in settings:
        x, row = scored_digits(comp, run.params, sampler, steps, n, labels, ref, data_fd)
        row["feature_trace_ratio"] = round(
            feature_trace(params, x) / feature_trace(params, ref[:n]), 3
        )
        row["nearest_train_distance"] = round(nearest_distance(x, train_x), 3)
        rows.append(row)
        print(rows[-1])
        grids.append((f"{sampler} {steps}", x[:40]))
    records = read_jsonl(os.path.join(_WORKDIR.value, "metrics.jsonl"))
    rates = [r["steps_per_sec"] for r in records if "steps_per_sec" in r]
    result = {
        "config": run.config.name,
        "checkpoint_step": run.step,
        "num_samples": n,
        "frechet_distance_data_vs_data": round(data_fd, 3),
        "note": "samples are drawn with the labels of the data half ref[n:2n], so FD(samples, "
        "ref[:n]) and FD(ref[n:2n], ref[:n]) compare sets of the same class mix",
        "held_out_nearest_train_distance": round(nearest_distance(held_out, train_x), 3),
        "train_steps_per_s_median": round(float(np.median(rates)), 2) if rates else None,
        "classifier_test_accuracy": round(frechet.classifier()[1], 4),
        "results": rows,
    }
    out = _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    path = write_result(f"{run.config.name}_quality", result, out)
    images = np.concatenate([g for _, g in grids])
    plots.image_grid(
        images,
        path.replace(".json", ".png"),
        " | ".join(name for name, _ in grids) + " (rows of 40, top to bottom)",
        cols=40,
    )


if __name__ == "__main__":
    app.run(main)

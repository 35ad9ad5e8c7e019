"""Few-step quality on digits: shortcut, MeanFlow and a plain flow model at 1, 2, 4, ..., 128 steps.

python benchmarks/few_step_quality.py [--runs runs] [--num_samples 800]

Needs trained runs shortcut_digits and meanflow_digits (few_step: x_s = x_t - (t - s) u(x_t, t,
t - s)) and flow_digits (Euler on the instantaneous velocity). Each is scored by the Frechet
distance in the digit classifier's features against one data half, with the samples drawn with
the class mix of the other half, next to the data-vs-data value. Writes few_step_quality.json
and few_step_quality.png (one row of sample grids per model and step count).
"""

import os

from absl import app, flags, logging  # noqa: E402

_RUNS = flags.DEFINE_string("runs", "runs", "folder holding the trained runs")
_NUM = flags.DEFINE_integer("num_samples", 800, "samples per setting (the data has 1617)")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")

STEPS = (1, 2, 4, 8, 16, 32, 64, 128)
MODELS = (  # (label, run, sampler)
    ("shortcut (DiT)", "shortcut_digits", "few_step"),
    ("MeanFlow (DiT)", "meanflow_digits", "few_step"),
    ("flow matching, Euler (U-Net)", "flow_digits", "euler"),
)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import jax
    import numpy as np

    from difflab import metrics
    from difflab.benchmarks.common import scored_digits, write_result
    from difflab.metrics import frechet
    from difflab.sampling.runs import load_run
    from difflab.training import plots

    n = _NUM.value
    rows, grids, data_fd = [], [], None
    for label, name, sampler in MODELS:
        run = load_run(os.path.join(_RUNS.value, name))
        comp = run.components
        ref = comp.dataset.reference(2 * n, 0)
        data_fd = frechet.frechet_distance(ref[n : 2 * n], ref[:n])
        labels = metrics.sampling_labels(comp.dataset, n, 0)
        params = int(sum(x.size for x in jax.tree.leaves(run.params)))
        for steps in STEPS:
            x, row = scored_digits(comp, run.params, sampler, steps, n, labels, ref, data_fd)
            info = {"model": label, "run": name, "train_steps": run.step, "parameters": params}
            rows.append(info | row)
            print(rows[-1], flush=True)
            grids.append(x[:20])
    result = {
        "num_samples": n,
        "frechet_distance_data_vs_data": round(data_fd, 3),
        "note": "samples use the labels of the data half ref[n:2n]; FD against ref[:n]",
        "results": rows,
    }
    out = _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    path = write_result("few_step_quality", result, out)
    title = f"rows: {', '.join(m[0] for m in MODELS)}, each at K = {STEPS} (top to bottom)"
    images = np.concatenate(grids)  # one row of 20 samples per (model, K)
    plots.image_grid(images, path.replace(".json", ".png"), title, cols=20)


if __name__ == "__main__":
    app.run(main)

"""Transport between two count populations with a trained counts_transport run.

python benchmarks/count_transport.py [--workdir runs/counts_transport] [--num 2000]

Source cells (the base tissue) are carried by tau-leaping to the target tissue ('aged': two
shifted gene programs, smaller libraries). Records the count metrics of the transported cells
against fresh target cells, next to the untransported source (how far there was to go) and to
target-vs-target, in counts_transport.json; draws counts_transport.png: source, target and
transported cells in the first two principal axes of log1p counts, with 40 trajectories.
"""

import os

from absl import app, flags  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "runs/counts_transport", "the trained run")
_NUM = flags.DEFINE_integer("num", 2000, "cells to transport")
_STEPS = flags.DEFINE_integer("steps", 100, "tau-leaping steps")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")


def main(argv):
    del argv
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from difflab import samplers
    from difflab.benchmarks.common import write_result
    from difflab.metrics.counts import KEYS, count_report
    from difflab.samplers import discrete, solvers
    from difflab.sampling.runs import load_run

    run = load_run(_WORKDIR.value)
    process, dataset = run.process, run.components.dataset
    n, steps = _NUM.value, _STEPS.value
    key = jax.random.key(0)
    source = process.prior(jax.random.fold_in(key, 1), (n, *dataset.shape))
    grid = samplers.grid("tau_leaping", process, steps)
    step = solvers.Step(discrete.tau_leap_move, nfe=1)
    path = jax.jit(lambda k, x: solvers.trajectory(step, k, run.denoiser, process, x, None, grid))(
        key, source
    )
    path = np.asarray(path)
    moved, source = path[-1], np.asarray(source)
    target = dataset.reference(2 * n, 0)
    report = count_report(moved, target)
    untransported = count_report(source, target)
    result = {
        "workdir": _WORKDIR.value,
        "train_steps": run.step,
        "sampler": f"tau_leaping, {steps} steps",
        "num_cells": n,
        "min_count_on_paths": int(path.min()),
        "transported_vs_target": {k: report[k] for k in KEYS},
        "source_vs_target": {k: untransported[k] for k in KEYS},
        "target_vs_target": {k: report[f"{k}_data"] for k in KEYS},
    }
    for name in ("transported_vs_target", "source_vs_target", "target_vs_target"):
        print(name, {k: round(v, 4) for k, v in result[name].items()})

    # the first two principal axes of log1p counts of source and target together
    both = np.log1p(np.concatenate([source, target[:n]]).astype(np.float64))
    mean = both.mean(0)
    axes = np.linalg.svd(both - mean, full_matrices=False)[2][:2].T
    project = lambda x: (np.log1p(x.astype(np.float64)) - mean) @ axes
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.scatter(*project(source).T, s=3, alpha=0.25, c="tab:gray", label="source (base tissue)")
    ax.scatter(*project(target[:n]).T, s=3, alpha=0.25, c="tab:orange", label="target (aged)")
    ax.scatter(*project(moved).T, s=3, alpha=0.35, c="tab:blue", label="transported")
    for i in range(40):
        ax.plot(*project(path[:, i]).T, c="k", lw=0.5, alpha=0.6)
    ax.set_xlabel("PC 1 (log1p counts)")
    ax.set_ylabel("PC 2")
    ax.set_title(f"counts_transport: {steps}-step tau-leaping trajectories")
    ax.legend(loc="best", markerscale=4)
    fig.tight_layout()
    out = _OUT.value or os.path.join(os.path.dirname(__file__), "results")
    os.makedirs(out, exist_ok=True)
    fig.savefig(os.path.join(out, "counts_transport.png"), dpi=120)
    write_result("counts_transport", result, out)


if __name__ == "__main__":
    app.run(main)

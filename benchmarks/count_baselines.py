"""Count flow matching against its baselines on the same simulated cells (counts_cells).

python benchmarks/count_baselines.py [--runs runs] [--num 2000]

Needs the trained runs counts_cells (count-FM), counts_cells_gaussian (Gaussian flow on
dequantised log1p counts, rounded back) and counts_cells_masked (masked diffusion on counts capped
at 63), e.g. `python train.py --config configs/counts_cells.py` and likewise. Every model is
scored by the same count metrics (metrics/counts.py) against the same fresh data, next to the
data-vs-data value; parameter counts and sampling NFE are recorded. Writes
counts_cells_baselines.json and counts_cells_baselines.png (per-gene mean / variance / zero
fraction of each model against the data) under benchmarks/results/.
"""

import json
import os
import time

from absl import app, flags  # noqa: E402

_RUNS = flags.DEFINE_string("runs", "runs", "folder holding the three trained runs")
_NUM = flags.DEFINE_integer("num", 2000, "samples per model (and data rows per reference half)")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")
_ONLY = flags.DEFINE_list(
    "only",
    [],
    "re-measure only these runs; the other models' rows are kept from the existing JSON (the "
    "figure then shows the re-measured models)",
)

# (label, run, sampler, steps)
MODELS = (
    ("count-FM tau-leaping 100", "counts_cells", "tau_leaping", 100),
    ("count-FM tau-leaping 400", "counts_cells", "tau_leaping", 400),
    ("count-FM exact (rates frozen on 100 intervals)", "counts_cells", "exact", 100),
    ("Gaussian flow on log1p, Heun 50", "counts_cells_gaussian", "heun", 50),
    (
        "masked diffusion on capped counts, first-hitting",
        "counts_cells_masked",
        "first_hitting",
        100,
    ),
)


def parameter_count(params) -> int:
    import jax

    return int(sum(x.size for x in jax.tree.leaves(params)))


def main(argv):
    del argv
    import numpy as np

    from difflab import metrics
    from difflab.benchmarks.common import write_result
    from difflab.metrics.counts import KEYS
    from difflab.sampling.runs import load_run
    from difflab.training import plots

    out = _OUT.value or os.path.join(os.path.dirname(__file__), "results")
    kept = {}
    if _ONLY.value:
        with open(os.path.join(out, "counts_cells_baselines.json")) as f:
            kept = {m["model"]: m for m in json.load(f)["models"] if m["run"] not in _ONLY.value}
    results, shown, reference = [], {}, None
    for label, name, sampler, steps in MODELS:
        if label in kept:
            results.append(kept[label])
            continue
        run = load_run(os.path.join(_RUNS.value, name))
        dataset = run.components.dataset
        t0 = time.perf_counter()
        x, info = run.sample(sampler, steps=steps, num_samples=_NUM.value, seed=0)
        seconds = time.perf_counter() - t0
        report = metrics.report(x, dataset, n=_NUM.value, seed=0)
        counts = dataset.to_counts(x) if hasattr(dataset, "to_counts") else x
        base = getattr(dataset, "base", dataset)
        reference = base.reference(_NUM.value, 1) if reference is None else reference
        shown[label] = counts
        entry = {
            "model": label,
            "run": name,
            "train_steps": run.step,
            "parameters": parameter_count(run.params),
            "sampler": sampler,
            "steps": steps,
            "nfe": int(info["nfe"]),
            "sampling_seconds": round(seconds, 2),
            **{k: report[k] for k in KEYS},
            **{f"{k}_data": report[f"{k}_data"] for k in KEYS},
        }
        if getattr(dataset, "view", None) == "tokens":
            entry["data_fraction_above_cap"] = dataset.capped_fraction()
        results.append(entry)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in entry.items()})
    os.makedirs(out, exist_ok=True)
    plots.count_statistics(
        shown,
        reference,
        os.path.join(out, "counts_cells_baselines.png"),
        f"counts_cells: per-gene statistics of {_NUM.value} samples vs data",
    )
    write_result(
        "counts_cells_baselines",
        {"num_samples": _NUM.value, "reference": "fresh cells, seed 0", "models": results},
        out,
    )
    np.set_printoptions(precision=4)


if __name__ == "__main__":
    app.run(main)

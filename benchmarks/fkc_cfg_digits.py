"""The CFG target p(x)^(1-w) p(x|c)^w sampled by Feynman-Kac correctors, against plain CFG at the
same scale, on class-conditional digits.

python benchmarks/fkc_cfg_digits.py --workdir runs/flow_digits [--scales 2,3]
    [--num_samples 800] [--steps 50]

Both samplers take the same stochastic steps (Euler-Maruyama, eta = 1, K steps) and the same
network passes (the conditional and null predictions in one batched call). Plain CFG moves each
sample with the guided score; FKC (MATH.md §7.4) moves a population of N = num_samples / 10
particles per class with that score and reweights / resamples them (systematic, ESS < N/2) so
that the population targets p^(1-w) p(.|c)^w. Every sample is scored by the project's digit
classifier (accuracy on the guided class) and by its Frechet distance to data digits (class mix
matched); FKC rows add the ESS trace and resampling counts. Writes fkc_cfg_digits.json and .png.
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", "runs/flow_digits", "class-conditional digits run")
_SCALES = flags.DEFINE_list("scales", ["2", "3"], "guidance scales w")
_NUM = flags.DEFINE_integer("num_samples", 800, "samples per setting (a multiple of 10)")
_STEPS = flags.DEFINE_integer("steps", 50, "Euler-Maruyama steps")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")

CLASSES = 10


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import numpy as np

    from difflab.benchmarks.common import digit_scores as scores
    from difflab.benchmarks.common import write_result
    from difflab.metrics import frechet
    from difflab.training.particles import Steering
    from difflab.training.run import load_run
    from difflab.training.sampling import draw

    run = load_run(_WORKDIR.value)
    comp, n, steps = run.components, _NUM.value, _STEPS.value
    if n % CLASSES:
        raise SystemExit(f"error: --num_samples={n} must be a multiple of {CLASSES}")
    per_class = n // CLASSES
    halves = comp.dataset.reference(2 * n, 0)
    ref, data_fd = halves[:n], frechet.frechet_distance(halves[n:], halves[:n])
    labels = np.repeat(np.arange(CLASSES), per_class)
    rows = []
    for w in [float(s) for s in _SCALES.value]:
        start = time.perf_counter()
        x, info = draw(comp, run.params, "em", steps, n, 0, labels=labels, eta=1.0, cfg_scale=w)
        acc, fd = scores(x, labels, ref)
        rows.append(
            {
                "sampler": "cfg",
                "cfg_scale": w,
                "accuracy": round(acc, 4),
                "frechet_distance": round(fd, 3),
                "nfe": int(np.max(info["nfe"])),
                "wall_s_incl_compile": round(time.perf_counter() - start, 1),
            }
        )
        print(rows[-1], flush=True)
        start, xs, ess, resamplings, log_z = time.perf_counter(), [], [], [], []
        for c in range(CLASSES):
            steer = Steering("cfg", cfg_scale=w, label=c)
            xc, info = draw(comp, run.params, "em", steps, per_class, c + 1, eta=1.0, steer=steer)
            xs.append(xc)
            ess.append(np.asarray(info["ess"]) / per_class)
            resamplings.append(int(info["resamplings"]))
            log_z.append(float(info["log_z"]))
        x = np.concatenate(xs)
        acc, fd = scores(x, labels, ref)
        trace = np.mean(ess, axis=0)
        rows.append(
            {
                "sampler": "fkc",
                "cfg_scale": w,
                "accuracy": round(acc, 4),
                "frechet_distance": round(fd, 3),
                "nfe": int(info["nfe"]),
                "particles_per_class": per_class,
                "min_ess_fraction": round(float(np.min(ess)), 4),
                "ess_fraction_trace": [round(float(v), 4) for v in trace],
                "resamplings_per_class": resamplings,
                "log_z_per_class": [round(v, 3) for v in log_z],
                "unique_per_class": [
                    int(len(np.unique(v.reshape(len(v), -1), axis=0))) for v in xs
                ],
                "wall_s_incl_compile": round(time.perf_counter() - start, 1),
            }
        )
        print({k: v for k, v in rows[-1].items() if k != "ess_fraction_trace"}, flush=True)
    result = {
        "config": run.config.name,
        "checkpoint_step": run.step,
        "sampler": "em",
        "eta": 1.0,
        "steps": steps,
        "num_samples": n,
        "frechet_distance_data_vs_data": round(data_fd, 3),
        "scored_by": f"the project's digit classifier (test accuracy "
        f"{frechet.classifier()[1]:.3f})",
        "rows": rows,
    }
    out = _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    path = write_result("fkc_cfg_digits", result, out)
    figure(rows, path.replace(".json", ".png"))
    print(f"wrote {path}")


def figure(rows, path):
    """FD and accuracy against w for CFG and FKC, and FKC's mean ESS trace per w."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.5))
    axes = fig.subplots(1, 3)
    for name, style in (("cfg", "o-"), ("fkc", "s--")):
        sel = [r for r in rows if r["sampler"] == name]
        for ax, key in zip(axes[:2], ("frechet_distance", "accuracy"), strict=True):
            ax.plot([r["cfg_scale"] for r in sel], [r[key] for r in sel], style, label=name)
            ax.set_xlabel("w")
            ax.set_ylabel(key.replace("_", " "))
            ax.legend()
    for r in rows:
        if r["sampler"] == "fkc":
            axes[2].plot(r["ess_fraction_trace"], label=f"w = {r['cfg_scale']:g}")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("ESS / N (mean over classes)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    app.run(main)

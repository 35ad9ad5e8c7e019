"""The CFG target p(x)^(1-w) p(x|c)^w sampled by Feynman-Kac correctors, against plain CFG at the
same scale, on class-conditional digits.

python benchmarks/fkc_cfg_digits.py --workdir runs/flow_digits [--scales 2,3]
    [--num_samples 800] [--steps 50] [--particles 80]

Both samplers take the same stochastic steps (Euler-Maruyama, eta = 1, K steps) and the same
network passes (the conditional and null predictions in one batched call). Plain CFG moves each
sample with the guided score; FKC (docs/math.md §7.4) moves a population of N = num_samples / 10
particles per class with that score and reweights / resamples them (systematic, ESS < N/2) so
that the population targets p^(1-w) p(.|c)^w. --particles sets other population sizes N (each
class's num_samples / 10 samples then come from ceil(num_samples / 10 / N) populations, a random
subset of the last when N is larger): if the Frechet distance of the FKC samples came from the
populations' collapse onto few lineages it would fall as N grows; if it belongs to the law the
weighted populations converge to, it settles. Every sample is scored by the project's digit
classifier (accuracy on the guided class) and by its Frechet distance to data digits (class mix
matched); FKC rows add the ESS trace and resampling counts. Writes fkc_cfg_digits.json and .png.
"""

from __future__ import annotations

import time

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", "runs/flow_digits", "class-conditional digits run")
_SCALES = flags.DEFINE_list("scales", ["2", "3"], "guidance scales w")
_NUM = flags.DEFINE_integer("num_samples", 800, "samples per setting (a multiple of 10)")
_STEPS = flags.DEFINE_integer("steps", 50, "Euler-Maruyama steps")
_PARTICLES = flags.DEFINE_list("particles", ["80"], "FKC population sizes N per class")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")

CLASSES = 10


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import numpy as np

    from difflab.benchmarks.common import digit_scores as scores
    from difflab.benchmarks.common import write_result
    from difflab.metrics import frechet
    from difflab.sampling.draw import draw
    from difflab.sampling.runs import load_run

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
        for particles in [int(p) for p in _PARTICLES.value]:
            rows.append(fkc_row(run, w, particles, per_class, steps, labels, ref))
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
    path = write_result("fkc_cfg_digits", result, _OUT.value)
    figure(rows, path.replace(".json", ".png"))


def fkc_row(run, w, particles, per_class, steps, labels, ref) -> dict:
    """FKC samples of the CFG target at scale w: per_class samples of each class from populations
    of `particles` (the last population's surplus dropped at random), scored as the CFG rows."""
    import numpy as np

    from difflab.benchmarks.common import digit_scores as scores
    from difflab.sampling.draw import draw
    from difflab.sampling.particles import Steering

    start, xs, ess, resamplings, log_z, unique = time.perf_counter(), [], [], [], [], []
    populations = -(-per_class // particles)
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        steer, kept = Steering("cfg", cfg_scale=w, label=c), []
        for p in range(populations):
            seed = 1 + c + CLASSES * p
            xc, info = draw(
                run.components, run.params, "em", steps, particles, seed, eta=1.0, steer=steer
            )
            kept.append(xc)
            ess.append(np.asarray(info["ess"]) / particles)
            resamplings.append(int(info["resamplings"]))
            log_z.append(float(info["log_z"]))
            unique.append(int(len(np.unique(xc.reshape(len(xc), -1), axis=0))))
        xc = np.concatenate(kept)
        xs.append(xc[np.sort(rng.permutation(len(xc))[:per_class])])
    acc, fd = scores(np.concatenate(xs), labels, ref)
    return {
        "sampler": "fkc",
        "cfg_scale": w,
        "accuracy": round(acc, 4),
        "frechet_distance": round(fd, 3),
        "nfe": int(info["nfe"]),
        "particles_per_population": particles,
        "populations_per_class": populations,
        "min_ess_fraction": round(float(np.min(ess)), 4),
        "ess_fraction_trace": [round(float(v), 4) for v in np.mean(ess, axis=0)],
        "resamplings_per_population": resamplings,
        "log_z_per_population": [round(v, 3) for v in log_z],
        "distinct_per_population": unique,
        "wall_s_incl_compile": round(time.perf_counter() - start, 1),
    }


def figure(rows, path):
    """FD and accuracy against w for CFG and FKC (one line per population size), and FKC's mean
    ESS trace per setting."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.5))
    axes = fig.subplots(1, 3)
    lines = {("cfg", None): "o-"}
    lines.update(
        {("fkc", r["particles_per_population"]): "s--" for r in rows if r["sampler"] == "fkc"}
    )
    for (name, n), style in lines.items():
        sel = [r for r in rows if r["sampler"] == name and r.get("particles_per_population") == n]
        label = name if n is None else f"{name}, N = {n}"
        for ax, key in zip(axes[:2], ("frechet_distance", "accuracy"), strict=True):
            ax.plot([r["cfg_scale"] for r in sel], [r[key] for r in sel], style, label=label)
            ax.set_xlabel("w")
            ax.set_ylabel(key.replace("_", " "))
            ax.legend(fontsize=8)
    for r in rows:
        if r["sampler"] == "fkc":
            label = f"w = {r['cfg_scale']:g}, N = {r['particles_per_population']}"
            axes[2].plot(r["ess_fraction_trace"], label=label)
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("ESS / N (mean over populations)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    app.run(main)

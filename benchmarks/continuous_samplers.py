"""Few-step multistep solvers and modern guidance on the trained Gaussian runs, each beside its
baseline measured in the same run (docs/math.md §1.5f, §6.5, §6.6).

python benchmarks/continuous_samplers.py --digits runs/flow_digits \
    --checkerboard runs/flow_checkerboard [--weak_step 3000] [--num_samples 800]

Digits: Frechet distance in the features of the project's digit classifier (samples drawn with
the class mix of one data half, against the other half; data vs data beside it) and that
classifier's accuracy on the intended class. Checkerboard: sliced Wasserstein distance of
eval.num_samples samples against fresh data, data vs data beside it. Writes
benchmarks/results/continuous_samplers.json; every row has its NFE per sample.
"""

import os
import time

from absl import app, flags, logging

_DIGITS = flags.DEFINE_string("digits", "runs/flow_digits", "class-conditional digits run")
_CHECKER = flags.DEFINE_string("checkerboard", "runs/flow_checkerboard", "checkerboard run")
_WEAK = flags.DEFINE_integer("weak_step", 3000, "autoguidance: the digits run's weak checkpoint")
_NUM = flags.DEFINE_integer("num_samples", 800, "digit samples per setting (data: 1617)")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")

# (sampler, steps, grid) of the few-step comparison, NFE 5 and 10
SOLVERS = [
    ("euler", 5, "default"), ("euler", 10, "default"), ("heun", 5, "default"),
    ("dpmpp_2m", 5, "default"), ("dpmpp_2m", 10, "default"),
    ("dpmpp_2m", 5, "logsnr"), ("dpmpp_2m", 10, "logsnr"),
    ("dpmpp_3m", 5, "default"), ("dpmpp_3m", 10, "default"),
    ("unipc", 5, "default"), ("unipc", 10, "default"),
]  # fmt: skip
GUIDED_SAMPLER, GUIDED_STEPS = "euler", 50  # as benchmarks/digits_guidance.py
AUTOGUIDE_SCALES = (1.25, 1.5, 2.0, 3.0)
# APG at w = 3: (parallel eta, norm threshold r, momentum beta)
APG = [(0.0, None, 0.0), (0.0, 1.0, 0.0), (0.0, 1.0, -0.5), (0.0, None, -0.5)]


def scored(comp, params, labels, ref, sampler, steps, **kw):
    """One digits row: accuracy, Frechet distance, NFE per sample, wall time."""
    from difflab.benchmarks.common import digit_scores
    from difflab.sampling.draw import draw

    t0 = time.perf_counter()
    x, info = draw(comp, params, sampler, steps, len(labels), 1, labels=labels, **kw)
    acc, fd = digit_scores(x, labels, ref)
    row = {"sampler": sampler, "steps": steps, "nfe": int(info["nfe"])}
    row |= {"accuracy": round(acc, 4), "frechet": round(fd, 3)}
    row["wall_s_incl_compile"] = round(time.perf_counter() - t0, 1)
    print(row)
    return row


def digits_rows(run, weak):
    """The solver, autoguidance and APG rows on the digits run."""
    from difflab import metrics
    from difflab.metrics import frechet
    from difflab.sampling.guides import Guide

    comp, n = run.components, _NUM.value
    halves = comp.dataset.reference(2 * n, 0)
    ref, data_fd = halves[:n], frechet.frechet_distance(halves[n:], halves[:n])
    labels = metrics.sampling_labels(comp.dataset, n, 0)
    draw = lambda s, k, **kw: scored(comp, run.params, labels, ref, s, k, **kw)  # noqa: E731
    solvers = [draw(s, k, grid=g) | {"grid": g} for s, k, g in SOLVERS]
    conditional = draw(GUIDED_SAMPLER, GUIDED_STEPS)
    weak_alone = scored(weak.components, weak.params, labels, ref, GUIDED_SAMPLER, GUIDED_STEPS)
    auto = [
        draw(GUIDED_SAMPLER, GUIDED_STEPS, guide=Guide(autoguide_scale=w),
             weak=(weak.components, weak.params)) | {"guide_scale": w}
        for w in AUTOGUIDE_SCALES
    ]  # fmt: skip
    cfg3 = draw(GUIDED_SAMPLER, GUIDED_STEPS, cfg_scale=3.0) | {"cfg_scale": 3.0}
    apg = [
        draw(GUIDED_SAMPLER, GUIDED_STEPS, cfg_scale=3.0,
             guide=Guide(apg_parallel=eta, apg_threshold=r, apg_momentum=beta))
        | {"cfg_scale": 3.0, "apg_parallel": eta, "apg_threshold": r, "apg_momentum": beta}
        for eta, r, beta in APG
    ]  # fmt: skip
    return data_fd, solvers, conditional, weak_alone, auto, cfg3, apg


def by_nfe(rows, sampler, grid="default"):
    """{NFE: Frechet distance} of one sampler's rows."""
    picked = [r for r in rows if r["sampler"] == sampler and r["grid"] == grid]
    return {str(r["nfe"]): r["frechet"] for r in picked}


def best(rows, accuracy: float):
    """The row of lowest Frechet distance among those at accuracy >= the bar (else the most
    accurate)."""
    good = [r for r in rows if r["accuracy"] >= accuracy]
    return min(good, key=lambda r: r["frechet"]) if good else max(rows, key=lambda r: r["accuracy"])


def checkerboard_rows(run):
    """Sliced Wasserstein of DPM-Solver++(2M), UniPC and Euler at 10 NFE, data vs data beside."""
    from difflab import metrics
    from difflab.sampling.draw import draw

    comp, n, seed = run.components, run.config.eval.num_samples, run.config.eval.seed
    rows = []
    for sampler, grid in (("euler", "default"), ("dpmpp_2m", "default"), ("dpmpp_2m", "logsnr"),
                          ("unipc", "default")):  # fmt: skip
        x, info = draw(comp, run.params, sampler, 10, n, seed, grid=grid)
        q = metrics.report(x, comp.dataset, n=n, seed=seed)
        rows.append({"sampler": sampler, "grid": grid, "nfe": int(info["nfe"])}
                    | {k: round(float(v), 5) for k, v in q.items()})  # fmt: skip
        print(rows[-1])
    return n, rows


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from difflab.benchmarks.common import write_result
    from difflab.sampling.runs import load_run

    run = load_run(_DIGITS.value)
    weak = load_run(_DIGITS.value, _WEAK.value)
    data_fd, solvers, conditional, weak_alone, auto, cfg3, apg = digits_rows(run, weak)
    n_points, points = checkerboard_rows(load_run(_CHECKER.value))
    dpmpp_points = next(r for r in points if r["sampler"] == "dpmpp_2m" and r["grid"] == "default")
    euler_points = next(r for r in points if r["sampler"] == "euler")
    auto_best, apg_best = best(auto, 0.98), best(apg, 0.99)
    result = {
        "digits_run": f"{run.config.name} (step {run.step})",
        "checkerboard_run": load_run(_CHECKER.value).config.name,
        "num_samples": _NUM.value,
        "frechet_data_vs_data": round(data_fd, 3),
        "digits_dpmpp2m": {
            "frechet": by_nfe(solvers, "dpmpp_2m"),
            "frechet_logsnr_grid": by_nfe(solvers, "dpmpp_2m", "logsnr"),
            "baselines": {
                "euler": by_nfe(solvers, "euler"),
                "heun": by_nfe(solvers, "heun"),
                "dpmpp_3m": by_nfe(solvers, "dpmpp_3m"),
                "unipc": by_nfe(solvers, "unipc"),
            },
            "note": "keys are NFE per sample; grid 'default' is the process's own power grid",
        },
        "checkerboard_dpmpp2m": {
            "sliced_wasserstein": dpmpp_points["sliced_wasserstein"],
            "nfe": dpmpp_points["nfe"],
            "data_vs_data": dpmpp_points["sliced_wasserstein_data"],
            "ratio_to_data_vs_data": round(
                dpmpp_points["sliced_wasserstein"] / dpmpp_points["sliced_wasserstein_data"], 3
            ),
            "euler_sliced_wasserstein": euler_points["sliced_wasserstein"],
            "num_samples": n_points,
            "rows": points,
        },
        "digits_autoguidance": {
            "frechet": auto_best["frechet"],
            "accuracy": auto_best["accuracy"],
            "guide_scale": auto_best["guide_scale"],
            "nfe": auto_best["nfe"],
            "weak_model": f"{run.config.name} step {weak.step}",
            "weak_model_alone": weak_alone,
            "conditional_unguided": conditional,
            "rows": auto,
        },
        "digits_apg_w3": {
            "frechet": apg_best["frechet"],
            "accuracy": apg_best["accuracy"],
            "setting": {k: apg_best[k] for k in ("apg_parallel", "apg_threshold", "apg_momentum")},
            "nfe": apg_best["nfe"],
            "cfg_w3": cfg3,
            "rows": apg,
        },
        "solver_rows": solvers,
    }
    out = _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    write_result("continuous_samplers", result, out)


if __name__ == "__main__":
    app.run(main)

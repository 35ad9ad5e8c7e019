"""Guidance on class-conditional digits: classifier-free and classifier guidance against their
scale, and inpainting of held-out digits from their upper half.

python benchmarks/digits_guidance.py --workdir runs/flow_digits \
    --classifier runs/classifier_digits [--num_samples 800] [--sampler euler --steps 50]

Every sample is scored by the project's digit classifier (metrics.frechet, trained on clean
digits; not the guiding classifier): guidance rows report how often it recognises the class the
sample was guided to and the Frechet distance of the samples to data digits; inpainting rows how
often the completed digit keeps the held-out digit's true label, the Frechet distance, and the
pixel error of the completed lower half. Writes benchmarks/results/digits_guidance.json and a
figure with both curves and example completions.
"""

import os

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", "runs/flow_digits", "class-conditional digits run")
_CLASSIFIER = flags.DEFINE_string("classifier", "runs/classifier_digits", "classifier run")
_NUM = flags.DEFINE_integer("num_samples", 800, "samples per guidance setting (data: 1617)")
_SAMPLER = flags.DEFINE_string("sampler", "euler", "sampler")
_STEPS = flags.DEFINE_integer("steps", 50, "sampling steps")
_REPEATS = flags.DEFINE_integer("inpaint_repeats", 5, "completions per held-out digit")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")

CFG_SCALES = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0)
CLASSIFIER_SCALES = (0.0, 1.0, 2.0, 4.0, 8.0)
INPAINTING = {
    "replacement": dict(replace=True),
    "replacement + DPS": dict(replace=True, measurement_scale=1.0, noise_std=0.05),
    "DPS": dict(replace=False, measurement_scale=1.0, noise_std=0.05),
}


def timed_draw(comp, params, labels, **kw):
    import time

    from difflab.sampling.draw import draw

    t0 = time.perf_counter()
    x, info = draw(comp, params, _SAMPLER.value, _STEPS.value, len(labels), 1, labels=labels, **kw)
    return x, info, round(time.perf_counter() - t0, 2)


def row(x, info, wall, labels, ref, **setting):
    from difflab.benchmarks.common import digit_scores

    acc, fd = digit_scores(x, labels, ref)
    out = {**setting, "accuracy": round(acc, 4), "frechet_distance": round(fd, 3)}
    out |= {"nfe": int(info["nfe"]), "wall_s_incl_compile": wall}
    out |= {k: int(info[k]) for k in ("classifier_calls",) if k in info}
    print(out)
    return out


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import numpy as np

    from difflab import data, metrics
    from difflab.benchmarks.common import digit_scores, write_result
    from difflab.metrics import frechet
    from difflab.sampling.guides import Guide
    from difflab.sampling.runs import load_run
    from difflab.training import plots

    run, clf = load_run(_WORKDIR.value), load_run(_CLASSIFIER.value)
    comp, n = run.components, _NUM.value
    # two disjoint halves of the training digits: samples are compared with the first and drawn
    # with the class mix of the second, so FD(second, first) is the data-vs-data reference
    halves = comp.dataset.reference(2 * n, 0)
    ref, data_fd = halves[:n], frechet.frechet_distance(halves[n:], halves[:n])
    labels = metrics.sampling_labels(comp.dataset, n, 0)
    classifier = (clf.components, clf.params)
    cfg_rows, clf_rows, grids = [], [], []
    for w in CFG_SCALES:
        x, info, wall = timed_draw(comp, run.params, labels, cfg_scale=w)
        cfg_rows.append(row(x, info, wall, labels, ref, cfg_scale=w))
        grids.append((f"CFG w={w:g}", x[:20]))
    for gamma in CLASSIFIER_SCALES:
        guide = Guide(classifier_scale=gamma, unconditional=True)
        used = classifier if gamma else None
        x, info, wall = timed_draw(comp, run.params, labels, guide=guide, classifier=used)
        clf_rows.append(row(x, info, wall, labels, ref, classifier_scale=gamma))
        grids.append((f"classifier gamma={gamma:g}", x[:20]))

    test = data.digits(0, "test")
    truth = np.tile(test.x, (_REPEATS.value, 1, 1, 1))
    true_labels = np.tile(test.label, _REPEATS.value)
    known = np.zeros_like(truth, bool)
    known[:, :4] = True  # the upper half of each 8x8 digit
    blank = np.where(known, truth, -1.0)
    inpaint_rows = [
        {
            "method": "upper half only (lower half blank)",
            "accuracy": round(digit_scores(blank, true_labels, ref)[0], 4),
        },
        {
            "method": "held-out digits",
            "accuracy": round(digit_scores(truth, true_labels, ref)[0], 4),
        },
    ]
    for method, settings in INPAINTING.items():
        guide = Guide(unconditional=True, **settings)
        x, info, wall = timed_draw(
            comp, run.params, true_labels, guide=guide, observed=(truth, known)
        )
        r = row(x, info, wall, true_labels, ref, method=method)
        r["known_half_max_error"] = round(float(np.abs(x - truth)[known].max()), 4)
        r["lower_half_rmse"] = round(float(np.sqrt(np.mean((x - truth)[~known] ** 2))), 4)
        inpaint_rows.append(r)
        grids.append((f"inpaint: {method}", x[:20]))
    result = {
        "config": run.config.name,
        "checkpoint_step": run.step,
        "classifier_run": clf.config.name,
        "guiding_classifier_accuracy": {
            k: v for k, v in clf_summary(_CLASSIFIER.value).items() if k.startswith("accuracy")
        },
        "sampler": _SAMPLER.value,
        "steps": _STEPS.value,
        "num_samples": n,
        "frechet_distance_data_vs_data": round(data_fd, 3),
        "scored_by": f"the project's digit classifier (test accuracy "
        f"{frechet.classifier()[1]:.3f}), not the guiding one",
        "note": "classifier guidance and inpainting use the run's null-label (unconditional) "
        "prediction; CFG w = 0 is that model and w = 1 the conditional one",
        "cfg": cfg_rows,
        "classifier_guidance": clf_rows,
        "inpainting": {
            "held_out_digits": len(test.x),
            "completions_each": _REPEATS.value,
            "rows": inpaint_rows,
        },
    }
    out = _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    path = write_result("digits_guidance", result, out)
    figure(cfg_rows, clf_rows, path.replace(".json", ".png"))
    images = np.concatenate([np.where(known[:20], truth[:20], -1.0)] + [g for _, g in grids])
    title = "rows: inpainting inputs | " + " | ".join(name for name, _ in grids)
    plots.image_grid(images, path.replace(".json", "_samples.png"), title, cols=20)


def clf_summary(workdir: str) -> dict:
    """The classifier run's last evaluation (held-out accuracy per noise level)."""
    from difflab.training.logging import read_jsonl

    records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    evals = [r for r in records if any(k.startswith("accuracy_t") for k in r)]
    return evals[-1] if evals else {}


def figure(cfg_rows, clf_rows, path):
    """Accuracy and Frechet distance against the guidance scale, CFG and classifier guidance."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5))
    for ax, key, label in zip(
        fig.subplots(1, 2),
        ("accuracy", "frechet_distance"),
        ("accuracy", "Frechet distance"),
        strict=True,
    ):
        ax.plot([r["cfg_scale"] for r in cfg_rows], [r[key] for r in cfg_rows], "o-", label="CFG w")
        ax.plot(
            [r["classifier_scale"] for r in clf_rows],
            [r[key] for r in clf_rows],
            "s-",
            label="classifier gamma",
        )
        ax.set_xlabel("guidance scale")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle("Guidance on digits: accuracy of the digit classifier and Frechet distance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)

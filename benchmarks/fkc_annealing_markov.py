"""Feynman-Kac annealing p^beta of a trained masked model on the Markov source, against the exact
annealed law of the source.

python benchmarks/fkc_annealing_markov.py [--workdir runs/notebooks/masked_markov_2000]
    [--betas 0.5,2] [--particles 250,1000,4000] [--steps 32]

The source is a Markov chain (pi0, P), so p(x)^beta / Z is again a Markov chain
(`MarkovChain.tilted`, backward messages): its per-position token marginals, pooled bigram law
and expected log p(x) per token are exact (`metrics.tokens.chain_statistics`). Three samplers of
the trained model are compared: the masked FKC particle system (docs/math.md §7.4,
docs/masked_fkc.md; N particles, one population), the naive annealed chain (the same tempered
steps, weights dropped) and, as the floor set by the model's own error, plain ancestral sampling
against p itself (beta = 1). Writes
fkc_annealing_markov.json and .png.
"""

from __future__ import annotations

import json
import time

from absl import app, flags

_WORKDIR = flags.DEFINE_string(
    "workdir", "runs/notebooks/masked_markov_2000", "a masked run trained on the Markov source"
)
_BETAS = flags.DEFINE_list("betas", ["0.5", "2"], "annealing exponents")
_PARTICLES = flags.DEFINE_list("particles", ["250", "1000", "4000"], "population sizes N")
_STEPS = flags.DEFINE_integer("steps", 32, "ancestral steps")
_REPEATS = flags.DEFINE_integer("repeats", 4, "independent populations per setting")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")


def main(argv):
    del argv
    import jax
    import numpy as np

    from difflab.benchmarks.common import write_result
    from difflab.metrics.tokens import chain_statistics, sample_statistics, statistic_distances
    from difflab.samplers import masked_fkc, solvers
    from difflab.sampling.runs import load_run

    run = load_run(_WORKDIR.value)
    law = run.components.dataset.law
    if law is None:
        raise SystemExit(f"error: {_WORKDIR.value} was not trained on the Markov source")
    length = run.components.dataset.shape[0]
    grid = solvers.uniform_grid(_STEPS.value)
    mask = run.process.mask_id

    def populations(beta: float, n: int, weighted: bool):
        settings = {} if weighted else {"ess_threshold": 0.0, "output": "weighted"}
        sampler = masked_fkc.masked_fkc((beta,), mask, **settings)
        fn = jax.jit(lambda k: sampler(k, run.denoiser, run.process, (n, length), None, grid))
        out, min_ess = [], []
        for r in range(_REPEATS.value):
            x, info = fn(jax.random.key(r))
            out.append(np.asarray(x))
            min_ess.append(float(np.min(info["ess"])) / n)
        return np.concatenate(out), float(np.mean(min_ess))

    rows = []
    for beta in [1.0] + [float(b) for b in _BETAS.value]:
        exact = chain_statistics(law.tilted(length, beta), law)
        for n in [int(p) for p in _PARTICLES.value]:
            for weighted in (True, False) if beta != 1.0 else (False,):
                start = time.perf_counter()
                x, min_ess = populations(beta, n, weighted)
                row = {
                    "beta": beta,
                    "particles": n,
                    "sampler": "fkc" if weighted else ("naive" if beta != 1.0 else "plain"),
                    "samples": int(len(x)),
                    "exact_log_p_per_token": exact["log_p_per_token"],
                    **statistic_distances(sample_statistics(x, law), exact),
                    "min_ess_fraction": min_ess if weighted else None,
                    "seconds": time.perf_counter() - start,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {
        "workdir": _WORKDIR.value,
        "step": int(run.step),
        "steps": _STEPS.value,
        "repeats": _REPEATS.value,
        "rows": rows,
    }
    path = write_result("fkc_annealing_markov", result, _OUT.value)
    plot(rows, path.replace(".json", ".png"))


def plot(rows, path):
    """Bigram TV to the exact annealed law against N, FKC and naive, one panel per beta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    betas = sorted({r["beta"] for r in rows if r["beta"] != 1.0})
    fig, axes = plt.subplots(1, len(betas), figsize=(4.5 * len(betas), 3.5), squeeze=False)
    floor = [r for r in rows if r["sampler"] == "plain"]
    for ax, beta in zip(axes[0], betas, strict=True):
        for name, style in (("fkc", "o-"), ("naive", "s--")):
            sel = [r for r in rows if r["beta"] == beta and r["sampler"] == name]
            ax.plot([r["particles"] for r in sel], [r["bigram_tv"] for r in sel], style, label=name)
        ax.plot(
            [r["particles"] for r in floor],
            [r["bigram_tv"] for r in floor],
            ":",
            color="gray",
            label="model vs p (beta 1)",
        )
        ax.set_xscale("log")
        ax.set_xlabel("particles N")
        ax.set_ylabel("bigram TV to the exact p^beta")
        ax.set_title(f"beta = {beta:g}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    app.run(main)

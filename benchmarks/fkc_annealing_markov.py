"""Feynman-Kac annealing p^beta of a trained masked model on the Markov source, against the exact
annealed law of the source.

python benchmarks/fkc_annealing_markov.py [--workdir runs/notebooks/masked_markov_2000]
    [--betas 0.5,2] [--particles 250,1000,4000] [--steps 32]

The source is a Markov chain (pi0, P), so p(x)^beta / Z is again a Markov chain, with initial law
pi0^beta m_1 and transitions P^beta(a, b) m_{i+1}(b) / m_i(a), where m_L = 1 and
m_i = P^beta m_{i+1} (backward messages): its per-position token marginals, pooled bigram law and
expected log p(x) per token are exact. Three samplers of the trained model are compared: the
masked FKC particle system (MATH.md §7.4, docs/masked_fkc.md; N particles, one population),
the naive annealed chain (the same tempered steps, weights dropped) and, as the floor set by the
model's own error, plain ancestral sampling against p itself (beta = 1). Writes
fkc_annealing_markov.json and .png.
"""

from __future__ import annotations

import json
import os
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


def annealed_chain(pi0, transition, beta: float, length: int):
    """(initial law, transitions Q_i [L-1, V, V]) of p^beta / Z for the chain (pi0, P)."""
    import numpy as np

    pb = transition**beta
    messages = [np.ones(len(pi0))]
    for _ in range(length - 1):
        m = pb @ messages[-1]
        messages.append(m / m.sum())  # normalised: only ratios within a position matter
    messages = messages[::-1]  # messages[i] = m_{i+1} in 1-based positions
    first = pi0**beta * messages[0]
    steps = [
        pb * messages[i + 1][None] / (pb @ messages[i + 1])[:, None] for i in range(length - 1)
    ]
    return first / first.sum(), np.stack(steps)


def chain_statistics(first, steps, pi0, transition) -> dict:
    """Exact per-position marginals [L, V], pooled bigram law [V, V] and E log p(x) / L."""
    import numpy as np

    marginals, bigrams = [first], np.zeros_like(transition)
    expected = float(first @ np.log(pi0))
    for q in steps:
        joint = marginals[-1][:, None] * q
        bigrams += joint
        expected += float(np.sum(joint * np.log(transition)))
        marginals.append(joint.sum(0))
    length = len(marginals)
    return {
        "marginals": np.stack(marginals),
        "bigrams": bigrams / (length - 1),
        "log_p_per_token": expected / length,
    }


def sample_statistics(x, law, vocab: int) -> dict:
    """The same statistics of samples x [N, L]."""
    import numpy as np

    n, length = x.shape
    marginals = np.stack([np.bincount(x[:, i], minlength=vocab) / n for i in range(length)])
    pairs = x[:, :-1] * vocab + x[:, 1:]
    bigrams = np.bincount(pairs.ravel(), minlength=vocab * vocab).reshape(vocab, vocab)
    return {
        "marginals": marginals,
        "bigrams": bigrams / bigrams.sum(),
        "log_p_per_token": float(np.mean(law.log_prob(x)) / length),
    }


def distances(got: dict, exact: dict) -> dict:
    """Mean per-position TV, bigram TV and the error of E log p per token."""
    import numpy as np

    return {
        "marginal_tv": float(0.5 * np.abs(got["marginals"] - exact["marginals"]).sum(1).mean()),
        "bigram_tv": float(0.5 * np.abs(got["bigrams"] - exact["bigrams"]).sum()),
        "log_p_error": got["log_p_per_token"] - exact["log_p_per_token"],
    }


def main(argv):
    del argv
    import jax
    import numpy as np

    from difflab.samplers import masked_fkc, solvers
    from difflab.training.run import load_run

    run = load_run(_WORKDIR.value)
    law = run.components.dataset.law
    if law is None:
        raise SystemExit(f"error: {_WORKDIR.value} was not trained on the Markov source")
    length, vocab = run.components.dataset.shape[0], law.vocab_size
    pi0, transition = np.asarray(law.pi0, np.float64), np.asarray(law.transition, np.float64)
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
        exact = chain_statistics(*annealed_chain(pi0, transition, beta, length), pi0, transition)
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
                    **distances(sample_statistics(x, law, vocab), exact),
                    "min_ess_fraction": min_ess if weighted else None,
                    "seconds": time.perf_counter() - start,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    out_dir = _OUT.value or os.path.join(os.path.dirname(__file__), "results")
    os.makedirs(out_dir, exist_ok=True)
    result = {
        "workdir": _WORKDIR.value,
        "step": int(run.step),
        "steps": _STEPS.value,
        "repeats": _REPEATS.value,
        "machine": f"{jax.devices()[0].platform}, {os.cpu_count()} cores",
        "rows": rows,
    }
    path = os.path.join(out_dir, "fkc_annealing_markov.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    plot(rows, os.path.join(out_dir, "fkc_annealing_markov.png"))
    print(f"wrote {path}")


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

"""SVDD on a trained masked model against best-of-N at equal network passes: reward against
naturalness, for M candidates and temperatures alpha.

python benchmarks/svdd_tokens.py [--workdir runs/masked_markov] [--token 3] [--num 500]

The model is a masked diffusion model of the Markov-chain source (`configs/masked_markov.py`;
by default the notebook's run in runs/notebooks/ when runs/masked_markov is absent), so
naturalness is exact: the negative log-likelihood per token of the samples under the chain.
The reward is the number of positions holding a chosen token (an integer count: no gradient),
SVDD-PM values each candidate by the reward of its argmax completion. Best-of-N draws N plain
samples per output and keeps the highest reward, with N matched to SVDD's network passes.
Writes benchmarks/results/svdd_tokens.json and svdd_tokens.png.
"""

import os

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "a masked_markov run (default: see above)")
_TOKEN = flags.DEFINE_integer("token", 3, "the token whose count is the reward (3: the rarest)")
_NUM = flags.DEFINE_integer("num", 500, "outputs per setting")
_STEPS = flags.DEFINE_integer("steps", 32, "ancestral steps")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")
CANDIDATES = (2, 4, 8)
ALPHAS = (0.0, 1.0)


def default_workdir() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in ("runs/masked_markov", "runs/notebooks/masked_markov_2000"):
        if os.path.isdir(os.path.join(root, path, "checkpoints")):
            return os.path.join(root, path)
    raise ValueError(
        "no masked_markov run: train one (python train.py --config configs/masked_markov.py) or "
        "run notebooks/masked.ipynb, or give --workdir"
    )


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import numpy as np

    from difflab.benchmarks.common import write_result
    from difflab.training.guiding import Guide
    from difflab.training.run import load_run

    run = load_run(_WORKDIR.value or default_workdir())
    chain, length = run.components.dataset.law, run.components.dataset.shape[0]
    tok, n, k = _TOKEN.value, _NUM.value, _STEPS.value

    def scores(x):
        reward = (x == tok).sum(1)
        return reward, -chain.log_prob(x) / length

    def row(method, x, nfe, **setting):
        reward, nll = scores(x)
        out = {"method": method, **setting, "nfe_per_output": nfe}
        out |= {"mean_reward": round(float(reward.mean()), 3)}
        out |= {"nll_per_token": round(float(nll.mean()), 4)}
        print(out)
        return out

    svdd_rows = []
    for m in CANDIDATES:
        for alpha in ALPHAS:
            guide = Guide(svdd=m, svdd_alpha=alpha, reward="token", reward_arg=str(tok))
            x, info = run.sample("ancestral", steps=k, num=n, seed=1, guide=guide)
            svdd_rows.append(row("svdd_pm", x, float(info["nfe"]), candidates=m, alpha=alpha))
    # best-of-N at (about) the same network passes: N plain samples per output
    _, info = run.sample("ancestral", steps=k, num=8, seed=0)
    per_sample = float(info["nfe"])
    counts = sorted({max(1, round(r["nfe_per_output"] / per_sample)) for r in svdd_rows})
    plain, info = run.sample("ancestral", steps=k, num=n * counts[-1], seed=0)
    rows = [row("plain", plain[:n], per_sample), *svdd_rows]
    for best_n in counts:
        groups = plain[: n * best_n].reshape(n, best_n, length)
        best = groups[np.arange(n), np.argmax((groups == tok).sum(2), 1)]
        rows.append(row("best_of_n", best, best_n * per_sample, n=best_n))
    data = run.components.dataset.reference(n, 5)
    result = {
        "run": run.config.name,
        "checkpoint_step": run.step,
        "token": tok,
        "stationary_share": round(float(chain.stationary()[tok]), 4),
        "outputs": n,
        "ancestral_steps": k,
        "data": {
            "mean_reward": round(float((data == tok).sum(1).mean()), 3),
            "nll_per_token": round(float((-chain.log_prob(data) / length).mean()), 4),
        },
        "note": "nfe_per_output: network passes per output (SVDD-PM: a step's call plus one per "
        "candidate value; best-of-N: N plain samples)",
        "rows": rows,
    }
    out = _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    path = write_result("svdd_tokens", result, out)
    figure(rows, result["data"], path.replace(".json", ".png"))


def figure(rows, data, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    styles = {"svdd_pm": "o", "best_of_n": "s", "plain": "x"}
    for method, marker in styles.items():
        sel = [r for r in rows if r["method"] == method]
        ax.scatter(
            [r["nll_per_token"] for r in sel],
            [r["mean_reward"] for r in sel],
            marker=marker,
            label=method,
        )
        for r in sel:
            tag = (
                f"M={r['candidates']}, a={r['alpha']:g}"
                if method == "svdd_pm"
                else (f"N={r['n']}" if method == "best_of_n" else "")
            )
            ax.annotate(tag, (r["nll_per_token"], r["mean_reward"]), fontsize=7)
    ax.scatter([data["nll_per_token"]], [data["mean_reward"]], marker="*", s=80, label="data")
    ax.set_xlabel("NLL per token under the chain (naturalness; lower is better)")
    ax.set_ylabel("mean reward (count of the token)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    app.run(main)

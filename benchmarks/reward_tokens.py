"""Shared pieces of the reward benchmarks on masked models (svdd_tokens.py,
fk_steering_tokens.py): the default Markov run, naturalness (exact NLL on the Markov source,
4-gram bits per character on text), best-of-N rows at matched network passes, and the
reward-against-naturalness figure."""

import os


def default_workdir() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in ("runs/masked_markov", "runs/notebooks/masked_markov_2000"):
        if os.path.isdir(os.path.join(root, path, "checkpoints")):
            return os.path.join(root, path)
    raise ValueError(
        "no masked_markov run: train one (python train.py --config configs/masked_markov.py) or "
        "run notebooks/masked.ipynb, or give --workdir"
    )


def plain_passes(run, steps: int) -> float:
    """Network passes of one plain ancestral sample (first-hitting caches skip some)."""
    _, info = run.sample("ancestral", steps=steps, num_samples=8, seed=0)
    return float(info["nfe"])


def best_of_n_rows(run, steps: int, n: int, counts, reward_fn, row) -> list:
    """The plain row and, for each N in counts, the best of N plain samples per output (by the
    reward), at N times a plain sample's network passes."""
    import numpy as np

    per_sample, length = plain_passes(run, steps), run.components.dataset.shape[0]
    plain, _ = run.sample("ancestral", steps=steps, num_samples=n * max(counts), seed=0)
    rows = [row("plain", plain[:n], per_sample)]
    for best_n in counts:
        groups = plain[: n * best_n].reshape(n, best_n, length)
        scores = np.asarray(reward_fn(groups.reshape(n * best_n, length))).reshape(n, best_n)
        best = groups[np.arange(n), np.argmax(scores, 1)]
        rows.append(row("best_of_n", best, best_n * per_sample, n=best_n))
    return rows


def naturalness_of(dataset):
    """(samples -> naturalness, its name): the chain's exact NLL per token, or 4-gram bits per
    character of text the n-gram was fitted beside (80% of the stream)."""
    import numpy as np

    from difflab.metrics.tokens import NGram

    if getattr(dataset, "law", None) is not None:
        chain, length = dataset.law, dataset.shape[0]
        return (lambda x: float(np.mean(-chain.log_prob(x) / length))), "nll_per_token"
    model = NGram.fit(dataset.stream[: int(0.8 * len(dataset.stream))], dataset.vocab_size, 4)
    return model.bits_per_token, "ngram_bits_per_token"


def point_tag(r: dict) -> str:
    """The setting of a row, short (figure labels)."""
    if r["method"] == "svdd_pm":
        return f"M={r['candidates']}, a={r['alpha']:g}"
    if r["method"] == "best_of_n":
        return f"N={r['n']}"
    if r["method"].startswith("fk_steering"):
        return f"k={r['particles']}, l={r['scale']:g}"
    return ""


def figure(rows, data, unit, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    styles = {
        "svdd_pm": "o",
        "best_of_n": "s",
        "plain": "x",
        "fk_steering": "^",
        "fk_steering_best": "v",
    }
    for method, marker in styles.items():
        sel = [r for r in rows if r["method"] == method]
        if not sel:
            continue
        ax.scatter(
            [r[unit] for r in sel],
            [r["mean_reward"] for r in sel],
            marker=marker,
            label=method,
        )
        for r in sel:
            ax.annotate(point_tag(r), (r[unit], r["mean_reward"]), fontsize=7)
    ax.scatter([data[unit]], [data["mean_reward"]], marker="*", s=80, label="data")
    ax.set_xlabel(f"{unit} (naturalness; lower is better)")
    ax.set_ylabel("mean reward")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def prepare(workdir, reward: str, reward_arg: str):
    """(run, reward_fn, row, unit): the run (default_workdir() when None), its named reward, and
    row(method, x, nfe, **setting) -> a printed result row with the mean reward and naturalness
    of samples x."""
    import numpy as np

    from difflab.data import rewards
    from difflab.sampling.runs import load_run

    run = load_run(workdir or default_workdir())
    reward_fn = rewards.build(reward, reward_arg, run.components.dataset)
    naturalness, unit = naturalness_of(run.components.dataset)

    def row(method, x, nfe, **setting):
        out = {"method": method, **setting, "nfe_per_output": nfe}
        out |= {"mean_reward": round(float(np.mean(reward_fn(x))), 3)}
        out |= {unit: round(naturalness(x), 4)}
        print(out, flush=True)
        return out

    row.naturalness, row.unit = naturalness, unit
    return run, reward_fn, row


def write(name: str, run, reward_fn, row, rows, out_dir, fields: dict) -> str:
    """benchmarks/results/<name>_<run>.json (with fresh data's reward and naturalness) and .png."""
    import numpy as np

    from difflab.benchmarks.common import write_result

    data = run.components.dataset.reference(fields["outputs"], 5)
    result = {"run": run.config.name, "checkpoint_step": run.step, **fields}
    result["data"] = {
        "mean_reward": round(float(np.mean(reward_fn(data))), 3),
        row.unit: round(row.naturalness(data), 4),
    }
    result["rows"] = rows
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    path = write_result(f"{name}_{run.config.name}", result, out_dir)
    figure(rows, result["data"], row.unit, path.replace(".json", ".png"))
    return path

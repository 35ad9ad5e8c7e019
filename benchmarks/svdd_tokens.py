"""SVDD on a trained masked model against best-of-N at equal network passes: reward against
naturalness, for M candidates and temperatures alpha.

python benchmarks/svdd_tokens.py [--workdir runs/masked_markov] [--reward token --reward_arg 3]
python benchmarks/svdd_tokens.py --workdir runs/masked_text --reward word --reward_arg "the"

Naturalness: on the Markov-chain source (`configs/masked_markov.py`; by default the notebook's
run in runs/notebooks/ when runs/masked_markov is absent) the exact negative log-likelihood per
token under the chain; on text, bits per character under a 4-gram model fitted on 80% of the
training stream (metrics.tokens). Rewards are named ones (training.rewards): the count of a token,
or of a word in the decoded text (NumPy through jax.pure_callback); neither has a gradient.
SVDD-PM values each candidate by the reward of its argmax completion. Best-of-N draws N plain
samples per output and keeps the highest reward, with N matched to SVDD's network passes.
Writes benchmarks/results/svdd_<run>.json and .png.
"""

import os

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "a masked_markov run (default: see above)")
_REWARD = flags.DEFINE_string("reward", "token", "a named reward (training.rewards)")
_REWARD_ARG = flags.DEFINE_string("reward_arg", "3", "its argument (token 3: the chain's rarest)")
_NUM = flags.DEFINE_integer("num", 500, "outputs per setting")
_STEPS = flags.DEFINE_integer("steps", 32, "ancestral steps")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")
CANDIDATES = (2, 4, 8)
ALPHAS = (0.0, 1.0)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import numpy as np

    from difflab.benchmarks.common import write_result
    from difflab.benchmarks.reward_tokens import (
        best_of_n_rows,
        default_workdir,
        figure,
        naturalness_of,
        plain_passes,
    )
    from difflab.training import rewards
    from difflab.training.guiding import Guide
    from difflab.training.run import load_run

    run = load_run(_WORKDIR.value or default_workdir())
    dataset = run.components.dataset
    n, k = _NUM.value, _STEPS.value
    reward_fn = rewards.build(_REWARD.value, _REWARD_ARG.value, dataset)
    naturalness, unit = naturalness_of(dataset)

    def row(method, x, nfe, **setting):
        out = {"method": method, **setting, "nfe_per_output": nfe}
        out |= {"mean_reward": round(float(np.mean(reward_fn(x))), 3)}
        out |= {unit: round(naturalness(x), 4)}
        print(out)
        return out

    svdd_rows = []
    for m in CANDIDATES:
        for alpha in ALPHAS:
            guide = Guide(
                svdd=m, svdd_alpha=alpha, reward=_REWARD.value, reward_arg=_REWARD_ARG.value
            )
            x, info = run.sample("ancestral", steps=k, num=n, seed=1, guide=guide)
            svdd_rows.append(row("svdd_pm", x, float(info["nfe"]), candidates=m, alpha=alpha))
    # best-of-N at (about) the same network passes: N plain samples per output
    per_sample = plain_passes(run, k)
    counts = sorted({max(1, round(r["nfe_per_output"] / per_sample)) for r in svdd_rows})
    rows = [*best_of_n_rows(run, k, n, counts, reward_fn, row), *svdd_rows]
    data = dataset.reference(n, 5)
    result = {
        "run": run.config.name,
        "checkpoint_step": run.step,
        "reward": f"{_REWARD.value}({_REWARD_ARG.value})",
        "outputs": n,
        "ancestral_steps": k,
        "data": {
            "mean_reward": round(float(np.mean(reward_fn(data))), 3),
            unit: round(naturalness(data), 4),
        },
        "note": "nfe_per_output: network passes per output (SVDD-PM: a step's call plus one per "
        "candidate value; best-of-N: N plain samples)",
        "rows": rows,
    }
    out = _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    path = write_result(f"svdd_{run.config.name}", result, out)
    figure(rows, result["data"], unit, path.replace(".json", ".png"))


if __name__ == "__main__":
    app.run(main)

"""SVDD on a trained masked model against best-of-N at equal network passes: reward against
naturalness, for M candidates and temperatures alpha.

python benchmarks/svdd_tokens.py [--workdir runs/masked_markov] [--reward token --reward_arg 3]
python benchmarks/svdd_tokens.py --workdir runs/masked_text --reward word --reward_arg "the"

Naturalness: on the Markov-chain source (`configs/masked_markov.py`; by default the notebook's
run in runs/notebooks/ when runs/masked_markov is absent) the exact negative log-likelihood per
token under the chain; on text, bits per character under a 4-gram model fitted on 80% of the
training stream (metrics.tokens). Rewards are named ones (data.rewards): the count of a token,
or of a word in the decoded text (NumPy through jax.pure_callback); neither has a gradient.
SVDD-PM values each candidate by the reward of its argmax completion. Best-of-N draws N plain
samples per output and keeps the highest reward, with N matched to SVDD's network passes.
Writes benchmarks/results/svdd_<run>.json and .png.
"""

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "a masked_markov run (default: see above)")
_REWARD = flags.DEFINE_string("reward", "token", "a named reward (data.rewards)")
_REWARD_ARG = flags.DEFINE_string("reward_arg", "3", "its argument (token 3: the chain's rarest)")
_NUM = flags.DEFINE_integer("num", 500, "outputs per setting")
_STEPS = flags.DEFINE_integer("steps", 32, "ancestral steps")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")
CANDIDATES = (2, 4, 8)
ALPHAS = (0.0, 1.0)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from difflab.benchmarks.reward_tokens import best_of_n_rows, plain_passes, prepare, write

    run, reward_fn, row = prepare(_WORKDIR.value, _REWARD.value, _REWARD_ARG.value)
    n, k = _NUM.value, _STEPS.value
    svdd_rows = []
    for m in CANDIDATES:
        for alpha in ALPHAS:
            guide = dict(svdd=m, svdd_alpha=alpha, reward=_REWARD.value)
            guide |= dict(reward_arg=_REWARD_ARG.value)
            x, info = run.sample("ancestral", steps=k, num_samples=n, seed=1, **guide)
            svdd_rows.append(row("svdd_pm", x, float(info["nfe"]), candidates=m, alpha=alpha))
    # best-of-N at (about) the same network passes: N plain samples per output
    per_sample = plain_passes(run, k)
    counts = sorted({max(1, round(r["nfe_per_output"] / per_sample)) for r in svdd_rows})
    rows = [*best_of_n_rows(run, k, n, counts, reward_fn, row), *svdd_rows]
    note = (
        "nfe_per_output: network passes per output (SVDD-PM: a step's call plus one per "
        "candidate value; best-of-N: N plain samples)"
    )
    reward = f"{_REWARD.value}({_REWARD_ARG.value})"
    fields = dict(reward=reward, outputs=n, ancestral_steps=k, note=note)
    write("svdd", run, reward_fn, row, rows, _OUT.value, fields)


if __name__ == "__main__":
    app.run(main)

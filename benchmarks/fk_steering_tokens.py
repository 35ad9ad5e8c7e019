"""FK steering of a trained masked model toward a non-differentiable reward, against best-of-N at
equal network passes: reward against naturalness.

python benchmarks/fk_steering_tokens.py [--workdir runs/masked_markov] [--reward token]
python benchmarks/fk_steering_tokens.py --workdir runs/masked_text --reward word \
    --reward_arg " the "

FK steering (docs/math.md §7.2) runs a population of k particles of the ancestral sampler per
output, with the 'diff' potential exp(lambda (r(x0_hat_t) - r(x0_hat_t+1))) at the denoiser's draws
(the unmasked tokens kept) and systematic resampling at ESS < k/2, so the population targets
p(x) exp(lambda r(x)) / Z; each output is one particle of the final (resampled) population, drawn
uniformly, or the population's best by the reward. Its network passes per output are k plain
samples', the same as best-of-k. Naturalness and rewards as in svdd_tokens.py (exact NLL on the
Markov source; 4-gram bits per character on text). Writes fk_steering_<run>.json and .png.
"""

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "a masked run (default: the masked_markov run)")
_REWARD = flags.DEFINE_string("reward", "token", "a named reward (data.rewards)")
_REWARD_ARG = flags.DEFINE_string("reward_arg", "3", "its argument (token 3: the chain's rarest)")
_SCALES = flags.DEFINE_list("scales", ["1", "4"], "lambda of exp(lambda r)")
_PARTICLES = flags.DEFINE_list("particles", ["2", "4", "8"], "particles k per output")
_NUM = flags.DEFINE_integer("num", 200, "outputs per setting")
_STEPS = flags.DEFINE_integer("steps", 32, "ancestral steps")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import numpy as np

    from difflab.benchmarks.reward_tokens import best_of_n_rows, prepare, write

    run, reward_fn, row = prepare(_WORKDIR.value, _REWARD.value, _REWARD_ARG.value)
    n, steps = _NUM.value, _STEPS.value
    counts = sorted(int(k) for k in _PARTICLES.value)
    rows = best_of_n_rows(run, steps, n, counts, reward_fn, row)
    rng = np.random.default_rng(0)
    for scale in [float(s) for s in _SCALES.value]:
        for k in counts:
            steer = dict(steer="reward", reward=_REWARD.value, reward_arg=_REWARD_ARG.value)
            steer |= dict(reward_scale=scale, steps=steps, num_samples=k)
            picked, best, min_ess, nfe = [], [], [], 0.0
            for i in range(n):
                x, info = run.sample("ancestral", seed=1000 + i, **steer)
                r = np.asarray(reward_fn(x))
                picked.append(x[rng.integers(k)])
                best.append(x[np.argmax(r)])
                min_ess.append(float(np.min(info["ess"])) / k)
                nfe = float(info["nfe"]) * k  # k particles' passes for one output
            ess = round(float(np.mean(min_ess)), 3)
            setting = {"particles": k, "scale": scale, "min_ess_fraction": ess}
            rows.append(row("fk_steering", np.stack(picked), nfe, **setting))
            rows.append(row("fk_steering_best", np.stack(best), nfe, **setting))
    note = (
        "nfe_per_output: network passes per output (FK steering: its k particles' passes; "
        "best-of-N: N plain samples); fk_steering: a uniformly drawn particle of the final "
        "population, fk_steering_best: its highest-reward particle"
    )
    reward = f"{_REWARD.value}({_REWARD_ARG.value})"
    fields = dict(reward=reward, outputs=n, ancestral_steps=steps, potential="diff", note=note)
    write("fk_steering", run, reward_fn, row, rows, _OUT.value, fields)


if __name__ == "__main__":
    app.run(main)

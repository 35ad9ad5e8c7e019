"""SVDD (docs/math.md §6.4, A9) on the enumerable masked toy with a non-differentiable reward: with
exact soft values the samples approach p(x) exp(r(x) / alpha) / Z as the candidates grow, and
SVDD-PM with alpha = 0 concentrates on the best sequences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflab import samplers
from difflab.data import markov
from difflab.models import continuous, masked
from difflab.models.counts import NEG, CountFlow
from difflab.samplers import discrete, solvers, steering, svdd

CHAIN = markov.toy_chain()
L, MASK = 4, 3
PROCESS = masked.MaskedDiffusion(vocab_size=3)
SEQS = CHAIN.all_sequences(L)
LOG_P = CHAIN.log_prob(SEQS)
REWARD = (SEQS == 2).sum(1).astype(np.float32)  # the number of 2s


def exact_value(alpha):
    """v_s(z) = alpha log E_{p(x | z)}[exp(r(x) / alpha)] by enumeration of the 81 sequences."""
    seqs, log_p, r = jnp.asarray(SEQS), jnp.asarray(LOG_P, jnp.float32), jnp.asarray(REWARD)

    def value(key, model, z, s):
        ok = jnp.all((z[:, None, :] == MASK) | (z[:, None, :] == seqs[None]), -1)
        tilted = jnp.where(ok, log_p + r / alpha, -jnp.inf)
        return alpha * (
            jax.nn.logsumexp(tilted, -1) - jax.nn.logsumexp(jnp.where(ok, log_p, -jnp.inf), -1)
        )

    return value


def histogram(x):
    return np.bincount(np.ravel_multi_index(np.asarray(x).T, (3,) * L), minlength=81) / len(x)


def draw(sampler, n=4000, steps=16):
    den = CHAIN.denoiser(MASK)
    run = jax.jit(lambda k: sampler(k, den, PROCESS, (n, L), None, solvers.uniform_grid(steps)))
    return run(jax.random.key(0))


@pytest.mark.optimized
@pytest.mark.parametrize("alpha, tv_at_16", [(1.0, 0.08), (0.5, 0.08)])
def test_svdd_with_exact_values_approaches_the_tilted_target(alpha, tv_at_16):
    """TV to p e^(r / alpha) / Z is ~0.40 at M = 1 (the base law) and < 0.08 at M = 16 (docs/math.md
    A9: 0.391 and 0.043 at N = 8000 with first-hitting proposals, alpha = 1); alpha = 0.5 tilts
    harder and needs the 1 / alpha of the selection (softmax(v) instead of softmax(v / alpha)
    samples a flatter law)."""
    target = np.exp(LOG_P + REWARD / alpha)
    target /= target.sum()
    tv = {}
    for m in (1, 16) if alpha == 1.0 else (16,):
        sampler = svdd.svdd(discrete.ancestral_step(), exact_value(alpha), m, alpha, False)
        x, info = draw(sampler)
        tv[m] = 0.5 * np.abs(histogram(x) - target).sum()
        assert int(info["nfe"]) == 16 and int(info["value_calls"]) == 16 * m
    assert tv[16] < tv_at_16, tv
    if alpha == 1.0:
        assert tv[1] > 0.3, tv


def test_svdd_values_the_candidates_at_the_time_they_reach():
    """Candidates of the step t -> s are valued at s: a spy value records grid[1:]."""
    times = []

    def spy(key, model, z, s):
        jax.debug.callback(lambda s: times.append(float(s)), s, ordered=True)
        return jnp.zeros(z.shape[0])

    grid = solvers.uniform_grid(6)
    sampler = svdd.svdd(discrete.ancestral_step(), spy, 2, 1.0, False)
    jax.block_until_ready(
        sampler(jax.random.key(0), CHAIN.denoiser(MASK), PROCESS, (4, L), None, grid)
    )
    np.testing.assert_allclose(times, np.asarray(grid[1:]), atol=1e-7)


@pytest.mark.optimized
def test_svdd_pm_with_a_host_reward_and_alpha_0_concentrates_on_the_best_mode():
    """SVDD-PM (argmax tokens at the masked positions) with a NumPy reward through
    pure_callback; alpha = 0 is greedy: the mean reward is > 3.5 of the best 4 (base law: 1.29).
    NFE counts the candidates' value calls: 16 steps + 8 x 15."""
    reward = steering.host_reward(lambda x: (x == 2).sum(1))
    value = svdd.posterior_mean_value(reward, svdd.masked_estimate)
    x, info = draw(svdd.svdd(discrete.ancestral_step(), value, 8, 0.0))
    assert (np.asarray(x) == 2).sum(1).mean() > 3.5
    assert int(info["nfe"]) == 16 + 8 * 15 and int(info["value_calls"]) == 8 * 15


@pytest.mark.parametrize("move", ["ddpm", "dpmpp_2m_sde"])
def test_svdd_pm_steers_a_gaussian_model(move):
    """Gaussian family, DDPM (or DPM-Solver++ 2M SDE, whose history follows the chosen candidate)
    candidates, reward -(x - 2)^2 at Tweedie's estimate: the samples of N(0, 1) data move toward
    2 (alpha = 0: mean > 1.5); M = 1 is the plain model (|mean| < 0.1, std within 0.05 of 1)."""
    process = continuous.GaussianDiffusion(continuous.cosine(), "eps")

    def den(x, t, cond=None):  # exact eps for N(0, 1) data: eps = sigma x (alpha^2 + sigma^2 = 1)
        return process.sigma(t)[:, None] * x

    value = svdd.posterior_mean_value(lambda x: -((x[:, 0] - 2.0) ** 2), svdd.gaussian_estimate)
    step = samplers.smc_step("diffusion", move)
    grid = solvers.uniform_grid(50, 1.0, process.t_min)
    plain = lambda x: abs(np.mean(x)) < 0.1 and abs(np.std(x) - 1.0) < 0.05  # noqa: E731
    for m, check in ((1, plain), (8, lambda x: np.mean(x) > 1.5)):
        sampler = svdd.svdd(step, value, m, 0.0)
        x, _ = jax.jit(lambda k, f=sampler: f(k, den, process, (2000, 1), None, grid))(
            jax.random.key(1)
        )
        assert check(np.asarray(x))


def test_svdd_settings_are_checked():
    with pytest.raises(ValueError, match="positive integer number of candidates, got 0"):
        svdd.svdd(discrete.ancestral_step(), exact_value(1.0), 0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        svdd.svdd(discrete.ancestral_step(), exact_value(1.0), 4, -1.0)
    with pytest.raises(ValueError, match="one network evaluation"):
        svdd.svdd(solvers.Step(solvers.heun_move, nfe=2), exact_value(1.0))


def test_svdd_pm_steers_a_count_model():
    """Counts, tau-leaping candidates from a pure-birth process (rate 2 from 0: Poisson(2)),
    reward = the count at the rate-implied estimate: M = 8 with alpha = 0 raises the mean count
    well above 2 (> 3); the plain draw (M = 1) keeps it near 2."""
    process = CountFlow(source="zeros")

    def den(x, t, cond=None):
        return jnp.stack(jnp.broadcast_arrays(jnp.log(2.0), NEG + 0.0 * x), axis=-1)

    value = svdd.posterior_mean_value(lambda x: jnp.sum(x, -1), svdd.count_estimate)
    grid = solvers.uniform_grid(10, 1.0, process.t_min)
    means = {}
    for m in (1, 8):
        sampler = svdd.svdd(solvers.Step(discrete.tau_leap_move, nfe=1), value, m, 0.0)
        run = jax.jit(lambda k, f=sampler: f(k, den, process, (2000, 1), None, grid))
        means[m] = float(np.mean(run(jax.random.key(0))[0]))
    assert abs(means[1] - 2.0) < 0.15 and means[8] > 3.0

"""Masked diffusion against the enumerable Markov-chain toy (docs/math.md §8.1e, oracles M1-M5)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import beta as beta_fn

from difflab.data.markov import toy_chain
from difflab.models import masked
from difflab.samplers import discrete, solvers

CHAIN = toy_chain()
V, L, MASK = 3, 4, 3
SEQS = CHAIN.all_sequences(L)
P_TRUE = np.exp(CHAIN.log_prob(SEQS))
DENOISER = CHAIN.denoiser(MASK)
# every partial state in {0..V-1, mask}^L and the exact denoiser's log-probabilities there
STATES = np.array(list(itertools.product(range(V + 1), repeat=L)))
STATE_INDEX = {tuple(s): i for i, s in enumerate(STATES)}
STATE_LOGP = np.asarray(CHAIN.denoiser_logits(jnp.asarray(STATES), MASK))


def exact_cond_nll(x, masked_set):
    """sum_{i in S} -log p(x^i | x outside S), by the exact denoiser."""
    z = np.array(x)
    z[list(masked_set)] = MASK
    lp = STATE_LOGP[STATE_INDEX[tuple(z)]]
    return -sum(lp[i, x[i]] for i in masked_set)


def subsets():
    return [s for r in range(1, L + 1) for s in itertools.combinations(range(L), r)]


def exact_continuous_nelbo(x):
    """L_inf(x) = sum_S f(S) int_0^1 m^(|S|-1) (1-m)^(L-|S|) dm (substituting m = 1 - alpha_t,
    so the same for every unclipped schedule)."""
    return sum(exact_cond_nll(x, s) * beta_fn(len(s), L - len(s) + 1) for s in subsets())


def exact_discrete_nelbo(x, steps):
    """L_T(x) = sum_i p_u(s_i, t_i) E_{S ~ Bernoulli(t_i)^L} f(S), linear schedule."""
    f = {s: exact_cond_nll(x, s) for s in subsets()}
    total = 0.0
    for i in range(1, steps + 1):
        t, s_ = i / steps, (i - 1) / steps
        p_u = (t - s_) / t
        total += p_u * sum(fs * t ** len(s) * (1 - t) ** (L - len(s)) for s, fs in f.items())
    return total


def test_forward_backward_denoiser_matches_enumeration():
    z = np.array([[MASK, 1, MASK, MASK], [0, MASK, MASK, 2], [MASK] * 4])
    lp = np.exp(np.asarray(CHAIN.denoiser_logits(jnp.asarray(z), MASK)))
    for b, row in enumerate(z):
        agree = np.all((row == MASK) | (SEQS == row), axis=1)
        for i in range(L):
            want = np.bincount(SEQS[agree, i], P_TRUE[agree], V) / P_TRUE[agree].sum()
            np.testing.assert_allclose(lp[b, i], want, atol=1e-5)


@pytest.mark.parametrize(
    "schedule, want",
    [
        (masked.linear(), lambda t: 1 / t),
        (masked.cosine(), lambda t: 0.5 * np.pi * np.tan(0.5 * np.pi * (1 - t))),
        (masked.polynomial(3.0), lambda t: 3 / t),
    ],
)
def test_schedule_weights_and_inverse(schedule, want):
    t = jnp.array([0.01, 0.2, 0.5, 0.9])
    np.testing.assert_allclose(schedule.weight(t), want(np.asarray(t)), rtol=1e-4)
    assert float(schedule.alpha(0.0)) == 1.0 and float(schedule.alpha(1.0)) == 0.0
    # never negative, at t = 1 included (float32 cos(pi / 2) gave the cosine -6.9e-8 there)
    ends = np.asarray(schedule.weight(jnp.array([0.999, 1.0])))
    assert (ends >= 0).all() and ends[1] == pytest.approx(want(1.0), abs=1e-6), ends
    back = schedule.time_of_mask_prob(schedule.mask_prob(t))
    np.testing.assert_allclose(back, t, atol=1e-5)
    clipped = masked.MaskSchedule(schedule.name, schedule.m, 1e-4)
    assert abs(float(clipped.alpha(0.0)) - (1 - 1e-4)) < 1e-7
    assert abs(float(clipped.alpha(1.0)) - 1e-4) < 1e-7


def test_m1_exact_elbo_is_tight():
    """docs/math.md M1: L_inf(x) = -log p(x) for the exact denoiser; the docs/math.md reference
    values."""
    for x, want in [((0, 1, 2, 2), 3.036554), ((0, 0, 0, 0), 7.600902)]:
        got = exact_continuous_nelbo(x)
        assert abs(got - want) < 2e-5
        assert abs(got + CHAIN.log_prob(np.array([x]))[0]) < 2e-5


def test_m1_discrete_time_elbo_values():
    mean = [
        sum(p * exact_discrete_nelbo(x, T) for x, p in zip(SEQS, P_TRUE, strict=True))
        for T in (1, 2, 4)
    ]
    np.testing.assert_allclose(mean, [4.303557, 4.118433, 4.030211], atol=2e-5)
    per_x = [exact_discrete_nelbo((0, 1, 2, 2), T) for T in (1, 2, 4, 16, 64)]
    np.testing.assert_allclose(per_x, [3.61956, 3.32889, 3.18293, 3.07319, 3.04571], atol=2e-5)


@pytest.mark.parametrize("schedule", [masked.linear(), masked.cosine(), masked.polynomial(2.0)])
@pytest.mark.parametrize("x", [(0, 1, 2, 2), (0, 0, 0, 0)])
def test_m1_monte_carlo_loss_within_3_se(schedule, x):
    process = masked.MaskedDiffusion(V, schedule)
    xs = jnp.tile(jnp.array(x, jnp.int32)[None], (100_000, 1))
    draws = np.asarray(jax.jit(lambda k: process.nelbo_draw(DENOISER, k, xs))(jax.random.key(7)))
    se = draws.std() / math.sqrt(len(draws))
    assert abs(draws.mean() - exact_continuous_nelbo(x)) < 3 * se


def test_m1_discrete_monte_carlo_and_bits_per_token_loss():
    process = masked.MaskedDiffusion(V, masked.linear(), loss_steps=4)
    xs = jnp.asarray(np.tile(SEQS, (1000, 1)))
    weights = np.tile(P_TRUE, 1000) / 1000
    draws = np.asarray(jax.jit(lambda k: process.nelbo_draw(DENOISER, k, xs))(jax.random.key(3)))
    se = math.sqrt(np.sum(weights**2 * (draws - (weights * draws).sum()) ** 2))
    assert abs((weights * draws).sum() - 4.030211) < 4 * se + 1e-4
    loss, _ = process.loss(DENOISER, jax.random.key(0), {"x": xs[:64]})
    mc = process.nelbo_draw(DENOISER, jax.random.split(jax.random.key(0))[0], xs[:64])
    assert abs(float(loss) - float(jnp.mean(mc)) / (L * math.log(2))) < 1e-5


def test_corrupt_masks_at_rate_and_keeps_the_rest():
    process = masked.MaskedDiffusion(V, masked.cosine())
    x = jnp.asarray(np.tile(SEQS[:1], (20_000, 1)))
    t = jnp.full((20_000,), 0.3)
    z = np.asarray(process.corrupt(jax.random.key(0), x, t))
    rate = (z == MASK).mean()
    assert abs(rate - float(process.schedule.mask_prob(0.3))) < 0.01
    assert np.all((z == MASK) | (z == np.asarray(x)))


def law(samples):
    idx = np.ravel_multi_index(np.asarray(samples).T, (V,) * L)
    return np.bincount(idx, minlength=V**L)


def chi_square_p(counts, probs):
    keep = probs * counts.sum() > 0
    return stats.chisquare(counts[keep], probs[keep] * counts.sum() / probs[keep].sum()).pvalue


def sample(sampler, steps, n, seed=0, process=None):
    process = process or masked.MaskedDiffusion(V, masked.linear(), time_agnostic=True)
    grid = solvers.uniform_grid(steps)
    run = jax.jit(lambda k: sampler(k, DENOISER, process, (n, L), None, grid))
    x, info = run(jax.random.key(seed))
    return np.asarray(x), info


def test_m2_first_hitting_sampler_is_exact():
    x, info = sample(discrete.first_hitting(), 8, 20_000)
    assert int(info["nfe"]) == L and not (x == MASK).any()
    assert chi_square_p(law(x), P_TRUE) > 1e-3


def ancestral_law(steps, beta=1.0, state_logp=None):
    """q_T by dynamic programming over the (V+1)^L partial states (docs/math.md M3). Other token
    factors exp(beta state_logp) (default: the toy's own log p(v | z)), normalised at the end,
    give the weighted law of the masked Feynman-Kac correctors."""
    logp = STATE_LOGP if state_logp is None else state_logp
    states, index, post = STATES, STATE_INDEX, np.exp(beta * logp)
    prob = np.zeros(len(states))
    prob[index[(MASK,) * L]] = 1.0
    grid = np.linspace(1, 0, steps + 1)
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        p_u = (t - s) / t
        nxt = np.zeros_like(prob)
        for i in np.nonzero(prob)[0]:
            z = states[i]
            options = [
                [(z[j], 1.0)]
                if z[j] != MASK
                else [(MASK, 1 - p_u)] * int(p_u < 1) + [(v, p_u * post[i, j, v]) for v in range(V)]
                for j in range(L)
            ]
            for combo in itertools.product(*options):
                nxt[index[tuple(c[0] for c in combo)]] += prob[i] * np.prod([c[1] for c in combo])
        prob = nxt
    law = np.array([prob[index[tuple(x)]] for x in SEQS])
    return law / law.sum()


def test_m3_ancestral_law_by_dynamic_programming():
    tv = [0.5 * np.abs(ancestral_law(T) - P_TRUE).sum() for T in (1, 2, 4, 16)]
    np.testing.assert_allclose(tv, [0.32038, 0.16678, 0.08558, 0.02185], atol=2e-5)


@pytest.mark.optimized
def test_m3_ancestral_samples_follow_q_t_and_converge():
    q4 = ancestral_law(4)
    x, _ = sample(discrete.ancestral(), 4, 50_000)
    assert not (x == MASK).any()
    assert chi_square_p(law(x), q4) > 1e-3
    # negative control: the 1-step sampler's samples are far from p
    x1, _ = sample(discrete.ancestral(), 1, 20_000, seed=1)
    assert chi_square_p(law(x1), P_TRUE) < 1e-6
    x64, _ = sample(discrete.ancestral(), 64, 50_000, seed=2)
    assert 0.5 * np.abs(law(x64) / 50_000 - P_TRUE).sum() < 0.025


def test_m4_decoupled_step_equals_joint_categorical():
    """One step from all-mask with p_u = 0.3 (t = 1 -> s = 0.7, linear): the decoupled move and
    MD4's joint categorical over {mask} + V (float64) have the exact product law."""
    process = masked.MaskedDiffusion(V, masked.linear())
    n = 60_000
    z = jnp.full((n, L), MASK, jnp.int32)
    lp = process.log_probs(DENOISER(z, 1.0), z)
    dec = np.asarray(jax.jit(lambda k: process.posterior(k, z, 1.0, 0.7, lp))(jax.random.key(0)))
    joint_logits = jnp.concatenate([lp + jnp.log(0.3), jnp.full((n, L, 1), jnp.log(0.7))], -1)
    from difflab.models.categorical import categorical

    joint = np.asarray(jax.jit(lambda k: categorical(k, joint_logits))(jax.random.key(1)))
    p0 = np.exp(np.asarray(lp[0]))
    per_pos = np.concatenate([0.3 * p0, np.full((L, 1), 0.7)], axis=1)  # [L, V + 1]
    exact = np.array(
        [
            np.prod([per_pos[j, c[j]] for j in range(L)])
            for c in itertools.product(range(V + 1), repeat=L)
        ]
    )
    for draws in (dec, joint):
        counts = np.bincount(np.ravel_multi_index(draws.T, (V + 1,) * L), minlength=(V + 1) ** L)
        assert chi_square_p(counts, exact) > 1e-3


def test_ancestral_reuses_the_network_output_while_nothing_changes():
    agnostic = masked.MaskedDiffusion(V, masked.linear(), time_agnostic=True)
    timed = masked.MaskedDiffusion(V, masked.linear(), time_agnostic=False)
    _, info = sample(discrete.ancestral(), 256, 1, process=agnostic)
    assert 1 <= int(info["nfe"]) <= L
    _, info = sample(discrete.ancestral(), 256, 1, process=timed)
    assert L < int(info["nfe"]) <= 256  # a call per step until no position is masked


def test_confidence_sampler_unmasks_k_per_step_and_never_changes_tokens():
    process = masked.MaskedDiffusion(V, masked.linear())
    sampler = discrete.confidence()
    n = 64
    for grid in (jnp.array([1.0, 0.75, 0.5]), jnp.array([1.0, 0.6, 0.3, 0.0])):
        x, info = jax.jit(lambda k, g=grid: sampler(k, DENOISER, process, (n, L), None, g))(
            jax.random.key(0)
        )
        masked_left, g = L, np.asarray(grid)
        for t, s in zip(g[:-1], g[1:], strict=True):
            p_u = 1.0 if s <= 0 else (t - s) / t
            masked_left -= int(np.round(masked_left * p_u))
        assert np.all((np.asarray(x) == MASK).sum(1) == masked_left)
        assert int(info["nfe"]) == len(g) - 1
    # a token, once unmasked, is never changed: a 2-step run extends its 1-step prefix (step k
    # draws with fold_in(key, k), so both runs make the same first step)
    one, _ = sampler(jax.random.key(5), DENOISER, process, (n, L), None, jnp.array([1.0, 0.5]))
    two, _ = sampler(jax.random.key(5), DENOISER, process, (n, L), None, jnp.array([1.0, 0.5, 0.0]))
    one, two = np.asarray(one), np.asarray(two)
    assert (one != MASK).any() and not (two == MASK).any()
    np.testing.assert_array_equal(two[one != MASK], one[one != MASK])


def test_bad_schedule_settings_are_clear_errors():
    with pytest.raises(ValueError, match="must lie in \\[0, 0.5\\), got 0.7"):
        masked.linear(0.7)
    with pytest.raises(ValueError, match="schedule must be one of"):
        masked.build_schedule("exponential", 0.0)
    with pytest.raises(ValueError, match="power must be positive"):
        masked.polynomial(0.0)


@pytest.mark.parametrize(
    "schedule,mean_time",
    [
        (masked.linear(), 0.5),
        (masked.cosine(), 1 - 2 / np.pi),
        (masked.polynomial(3.0), 3 / 4),
    ],
)
def test_first_hitting_times_follow_the_schedule(schedule, mean_time):
    """A time-dependent denoiser, P(token 1 | z_t) = t: each token is drawn at its unmasking
    time tau, whose CDF is 1 - alpha_tau, so the token-1 fraction is E[tau] (linear 1/2, cosine
    1 - 2/pi, polynomial k/(k+1)). A time-independent denoiser cannot see a wrong time law."""
    process = masked.MaskedDiffusion(2, schedule)

    def timed(z, t, cond=None):
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), z.shape[:1])[:, None]
        p1 = jnp.clip(jnp.broadcast_to(t, z.shape), 1e-6, 1 - 1e-6)
        return jnp.stack([jnp.log1p(-p1), jnp.log(p1)], axis=-1)

    grid = solvers.uniform_grid(8)
    run = jax.jit(lambda k: discrete.first_hitting()(k, timed, process, (8000, 8), None, grid))
    x, _ = run(jax.random.key(0))
    assert abs(float(np.mean(np.asarray(x) == 1)) - mean_time) < 0.008


def test_cached_ancestral_sampler_keeps_the_law_at_batch_one_under_vmap():
    """The output cache engages per sequence at batch 1 (vmapped over keys): NFE < T on average
    and the samples still follow q_T (docs/math.md M3)."""
    process = masked.MaskedDiffusion(V, masked.linear(), time_agnostic=True)
    steps, n = 16, 20_000
    grid = solvers.uniform_grid(steps)
    one = lambda k: discrete.ancestral()(k, DENOISER, process, (1, L), None, grid)
    x, info = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(3), n))
    nfe = np.asarray(info["nfe"])
    assert nfe.max() <= L and nfe.mean() < steps
    assert chi_square_p(law(np.asarray(x)[:, 0]), ancestral_law(steps)) > 1e-3

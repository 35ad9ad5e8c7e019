"""Uniform-state diffusion against the enumerable Markov-chain toy (docs/math.md §3.9): the exact
denoiser, the continuous- and discrete-time NELBOs by quadrature and enumeration, their Monte
Carlo estimators, and the ancestral sampler's exact T-step law by dynamic programming. The exact
denoiser depends on t, so a wrong time law in the process shows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial.legendre import leggauss

from difflab import samplers
from difflab.data.markov import toy_chain
from difflab.models import masked, uniform
from difflab.models.common import time_derivative
from difflab.samplers import solvers
from tests.test_masked import chi_square_p, law

CHAIN = toy_chain()
V, L = 3, 4
SEQS = CHAIN.all_sequences(L)
P_TRUE = np.exp(CHAIN.log_prob(SEQS))
Z = jnp.asarray(SEQS)
LINEAR = uniform.UniformDiffusion(V, masked.linear())
COSINE = uniform.UniformDiffusion(V, masked.cosine())


def exact(process):
    return CHAIN.uniform_denoiser(process.alpha)


def noised(x, a):
    """q_t(z | x) over every z [V^L] at alpha_t = a."""
    return np.prod(np.where(SEQS == x[None], a + (1 - a) / V, (1 - a) / V), axis=1)


def test_exact_denoiser_matches_enumeration():
    """Forward-backward under uniform noise equals the posterior marginals by enumeration."""
    for a in (0.05, 0.4, 0.9):
        z = SEQS[[0, 17, 50]]
        post = np.stack([noised(s, a) for s in SEQS], axis=1)[[0, 17, 50]] * P_TRUE[None]
        post /= post.sum(1, keepdims=True)
        brute = np.stack(
            [[np.bincount(SEQS[:, i], post[b], V) for i in range(L)] for b in range(3)]
        )
        got = np.exp(np.asarray(CHAIN.uniform_denoiser_logits(jnp.asarray(z), a)))
        np.testing.assert_allclose(got, brute, atol=1e-6)


def integrands(process, den, xs, times):
    """E_{z ~ q_t(. | x)} (beta_t / V) sum_i bracket_i [len(times), len(xs)], by enumeration of
    z (every pair (z, x) in one batch per time)."""
    xs = np.asarray(xs)
    zz = jnp.asarray(np.repeat(SEQS, len(xs), axis=0))  # [V^L * X, L], z-major
    x0 = jnp.asarray(np.tile(xs, (len(SEQS), 1)))

    @jax.jit
    def at(t):
        tt = jnp.full(zz.shape[:1], t, jnp.float32)
        probs = jnp.exp(process.log_probs(den(zz, tt), zz))
        bracket = jnp.sum(process.rate_bracket(zz, tt, probs, x0), -1)
        beta = time_derivative(process.schedule.mask_prob, t) / jnp.maximum(process.alpha(t), 1e-30)
        return beta / V * bracket.reshape(len(SEQS), len(xs))

    out = []
    for t in times:
        weights = np.stack([noised(x, float(process.alpha(t))) for x in xs], axis=1)
        out.append((weights * np.asarray(at(jnp.float32(t)), np.float64)).sum(0))
    return np.array(out)


def continuous_nelbo(process, den, xs, nodes: int = 40):
    """L_inf(x) for each x by Gauss-Legendre quadrature in log t on [1e-6, 1/2] and in -log(1 -
    t) on [1/2, 1 - 1e-6] (the integrand grows like 1/t and 1/(1 - t) at the ends)."""
    g, w = leggauss(nodes)
    total = 0.0
    for lo, hi, time, jac in (
        (np.log(1e-6), np.log(0.5), np.exp, np.exp),
        (np.log(2.0), -np.log(1e-6), lambda v: 1 - np.exp(-v), lambda v: np.exp(-v)),
    ):
        u = 0.5 * (hi - lo) * g + 0.5 * (hi + lo)
        f = integrands(process, den, xs, time(u)) * jac(u)[:, None]
        total = total + 0.5 * (hi - lo) * (w @ f)
    return total


@pytest.mark.parametrize("process", [LINEAR, COSINE], ids=["linear", "cosine"])
def test_continuous_nelbo_of_the_exact_denoiser_is_minus_log_p(process):
    """With the exact (time-dependent) denoiser the reverse rates are exact, so L_inf(x) =
    -log p(x) (quadrature, relative error < 1e-4); the denoiser of the wrong time (alpha at
    t / 2) is above by > 0.05 nats."""
    picked = [0, 17, 40]
    np.testing.assert_allclose(
        continuous_nelbo(process, exact(process), SEQS[picked]), -np.log(P_TRUE[picked]), rtol=1e-4
    )
    late = CHAIN.uniform_denoiser(lambda t: process.alpha(0.5 * t))
    assert continuous_nelbo(process, late, SEQS[[17]], 24)[0] > -np.log(P_TRUE[17]) + 0.05


def discrete_nelbo(process, den, xs, steps):
    """L_T(x) = sum_k E_{z ~ q_{t_k}(. | x)} sum_i KL_i(t_k -> t_{k-1}) for each x, by
    enumeration of z (every pair (z, x) in one batch per step)."""
    xs = np.asarray(xs)
    zz = jnp.asarray(np.repeat(SEQS, len(xs), axis=0))
    x0 = jnp.asarray(np.tile(xs, (len(SEQS), 1)))

    @jax.jit
    def kl(t, s):
        tt = jnp.full(zz.shape[:1], t, jnp.float32)
        probs = jnp.exp(process.log_probs(den(zz, tt), zz))
        out = jnp.sum(process.step_kl(zz, tt, jnp.full_like(tt, s), probs, x0), -1)
        return out.reshape(len(SEQS), len(xs))

    total = np.zeros(len(xs))
    for k in range(1, steps + 1):
        t, s = k / steps, (k - 1) / steps
        weights = np.stack([noised(x, float(process.alpha(t))) for x in xs], axis=1)
        total += (weights * np.asarray(kl(jnp.float32(t), jnp.float32(s)), np.float64)).sum(0)
    return total


def test_discrete_nelbo_bounds_the_entropy_and_tightens_with_steps():
    """E_p L_T >= H(p) = 3.944881 nats and falls to it as T grows (the factorised reverse step is
    exact only as T -> infinity): gaps at T = 2, 8, 64 decrease, the last below 0.01."""
    entropy = -(P_TRUE * np.log(P_TRUE)).sum()
    gaps = [P_TRUE @ discrete_nelbo(LINEAR, exact(LINEAR), SEQS, t) - entropy for t in (2, 8, 64)]
    assert gaps[0] > gaps[1] > gaps[2] > 0 and gaps[2] < 0.01, gaps


@pytest.mark.parametrize("steps", [0, 8])
def test_nelbo_estimator_is_unbiased(steps):
    """The one-draw estimator (`nelbo_draw`, antithetic t) over 40k copies of a sequence averages
    to its exact value within 3 standard errors (continuous: -log p(x); T = 8: enumeration)."""
    x = SEQS[17]
    den = exact(LINEAR)
    target = discrete_nelbo(LINEAR, den, x[None], steps)[0] if steps else -np.log(P_TRUE[17])
    xs = jnp.tile(jnp.asarray(x), (40_000, 1))
    d = np.asarray(jax.jit(lambda k: LINEAR.nelbo_draw(den, k, xs, None, steps))(jax.random.key(1)))
    se = d.std() / np.sqrt(len(d))
    assert abs(d.mean() - target) < 3 * se, (d.mean(), target, se)


def step_matrix(process, den, t, s):
    """The factorised reverse step's transition matrix [V^L, V^L] from every z_t."""
    tt = jnp.full(len(SEQS), t, jnp.float32)
    probs = jnp.exp(process.log_probs(den(Z, tt), Z))
    post = np.asarray(process.posterior_probs(Z, tt, jnp.full_like(tt, s), probs), np.float64)
    if s <= 0:
        post = np.asarray(probs, np.float64)
    return np.prod(post[:, np.arange(L)[None, :], SEQS], axis=-1)  # [z_t, z_s]


def ancestral_law(process, den, steps):
    """The T-step chain's law of x by dynamic programming from the uniform prior."""
    prob = np.full(len(SEQS), 1.0 / len(SEQS))
    grid = np.linspace(1, 0, steps + 1)
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        prob = prob @ step_matrix(process, den, float(t), float(s))
    return prob / prob.sum()


def test_ancestral_sampler_draws_its_exact_law_and_converges_to_p():
    """Samples of `uniform_ancestral` with the exact denoiser follow the chain's T-step law
    (chi-square p > 1e-3 at T = 4, 50k samples); that law approaches p as T grows (TV 0.104,
    0.024, 0.0059 at T = 4, 16, 64), and at T = 64 20k samples pass against p itself. The
    denoiser at the wrong time (TV 0.061 at T = 64) fails against p."""
    sampler = samplers.get("uniform", "uniform_ancestral")
    den = exact(LINEAR)

    def draw(steps, d=den, n=50_000):
        grid = solvers.uniform_grid(steps)
        x, info = jax.jit(lambda k: sampler(k, d, LINEAR, (n, L), None, grid))(jax.random.key(3))
        assert int(info["nfe"]) == steps
        return law(np.asarray(x))

    q4 = ancestral_law(LINEAR, den, 4)
    assert chi_square_p(draw(4), q4) > 1e-3
    tv = [0.5 * np.abs(ancestral_law(LINEAR, den, t) - P_TRUE).sum() for t in (4, 16, 64)]
    assert tv[0] > tv[1] > tv[2] and tv[2] < 0.01, tv
    assert chi_square_p(draw(64, n=20_000), P_TRUE) > 1e-3
    late = CHAIN.uniform_denoiser(lambda t: LINEAR.alpha(0.5 * t))
    assert chi_square_p(draw(64, late, 20_000), P_TRUE) < 1e-6


def test_uniform_settings_are_checked():
    with pytest.raises(ValueError, match="unclipped schedule"):
        uniform.UniformDiffusion(V, masked.linear(1e-4))
    with pytest.raises(ValueError, match="vocab_size >= 2"):
        uniform.UniformDiffusion(1)


MOVES = [n for n, s in samplers.SPECS.items() if s.kind == "uniform" and s.move]


@pytest.mark.parametrize("name", MOVES)
def test_fk_steering_tilts_the_uniform_toy(name):
    """FK steering proposed by the uniform-state move, reward = the number of 2s at draws from
    p_theta (`steering.uniform_estimate`): the base law of 16 moves is q_16 (dynamic programming),
    so the target is q_16 e^r / Z: TV within the Monte-Carlo floor at N = 20000, far from q_16."""
    from difflab.samplers import smc, steering

    den = exact(LINEAR)
    count = lambda x: jnp.sum(x == 2, axis=-1).astype(jnp.float32)  # noqa: E731
    potential = steering.reward_potential(count, 1.0, estimate=steering.uniform_estimate())
    sampler = smc.smc(samplers.smc_step("uniform", name), potential)
    grid = solvers.uniform_grid(16)
    x, info = jax.jit(lambda k: sampler(k, den, LINEAR, (20_000, L), None, grid))(jax.random.key(0))
    q = ancestral_law(LINEAR, den, 16)
    tilt = q * np.exp(np.sum(SEQS == 2, axis=1))
    freq = law(np.asarray(x)) / len(x)
    assert 0.5 * np.abs(freq - tilt / tilt.sum()).sum() < 0.035
    assert 0.5 * np.abs(freq - q).sum() > 0.3
    assert int(info["nfe"]) == 16


def class_posterior(process, f):
    """The exact noisy classifier of p(c = 1 | x) = f(x) under uniform noise: log p(c | z_t, t)
    = log sum_x p(x | z_t) p(c | x) by enumeration, as log_classifier(one-hot [N, L, V + 1], t)."""
    prior = jnp.asarray(P_TRUE, jnp.float32)
    like = jnp.asarray(np.stack([1 - f, f], axis=1), jnp.float32)  # [X, 2]
    seqs = jnp.asarray(SEQS)

    def log_classifier(onehot, t):
        z = jnp.argmax(onehot[..., :V], axis=-1)  # [N, L]
        a = process.alpha(t)[:, None, None]
        q = jnp.prod(jnp.where(z[:, None] == seqs[None], a + (1 - a) / V, (1 - a) / V), -1)
        post = q * prior[None]  # [N, X]
        return jnp.log(post @ like) - jnp.log(jnp.sum(post, -1, keepdims=True))

    return log_classifier


def test_classifier_guidance_of_the_uniform_toy_draws_the_class():
    """With p(c = 1 | x) = (#2s in x + 1) / (L + 1) and its exact noisy classifier, the tilted
    step at gamma = 1 is the class's own reverse step as T -> infinity: the guided chain's law
    (dynamic programming) approaches p(x | c = 1) (TV at T = 8, 64 decreasing, the last < 0.02),
    its samples follow that law, and gamma = 0 stays the base chain (TV to p(x | c) > 0.1)."""
    from difflab.samplers import discrete, guidance

    f = (np.sum(SEQS == 2, axis=1) + 1.0) / (L + 1.0)
    target = P_TRUE * f / (P_TRUE * f).sum()
    den = exact(LINEAR)
    cond = jnp.ones(len(SEQS), jnp.int32)

    def guided_law(steps, gamma):
        tilt = guidance.uniform_classifier(class_posterior(LINEAR, f), gamma)
        model = solvers.Bound(den, LINEAR, cond)
        prob = np.full(len(SEQS), 1.0 / len(SEQS))
        grid = np.linspace(1, 0, steps + 1)
        for t, s in zip(grid[:-1], grid[1:], strict=True):
            tt = jnp.full(len(SEQS), t, jnp.float32)
            lp = LINEAR.log_probs(den(Z, tt), Z)
            step = LINEAR.posterior_probs(Z, tt, jnp.full_like(tt, s), jnp.exp(lp))
            step = jnp.exp(lp) if s <= 0 else step
            step = np.asarray(step * jnp.exp(tilt(model, Z, tt)), np.float64)
            step /= step.sum(-1, keepdims=True)
            prob = prob @ np.prod(step[:, np.arange(L)[None, :], SEQS], axis=-1)
        return prob / prob.sum()

    tv = [0.5 * np.abs(guided_law(t, 1.0) - target).sum() for t in (8, 64)]
    assert tv[0] > tv[1] and tv[1] < 0.02, tv
    assert 0.5 * np.abs(guided_law(16, 0.0) - target).sum() > 0.1
    step = discrete.tilted_step(guidance.uniform_classifier(class_posterior(LINEAR, f), 1.0))
    sampler = solvers.make_sampler(step)
    grid = solvers.uniform_grid(8)
    x, _ = jax.jit(
        lambda k: sampler(k, den, LINEAR, (20_000, L), jnp.ones(20_000, jnp.int32), grid)
    )(jax.random.key(5))
    assert chi_square_p(law(np.asarray(x)), guided_law(8, 1.0)) > 1e-3

"""Count flow matching oracles (docs/math.md §4, §8.1(f), §8.2 C1-C6): the bridge, the rate-matching
NELBO, and the tau-leaping, unit-jump and exact samplers driven by exact marginal rates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from difflab import samplers
from difflab.models.counts import NEG, CountFlow, bridge, conditional_rates
from difflab.samplers import discrete, solvers


def log_rate_pred(log_birth, log_death):
    """The denoiser output [B, D, 2] from log birth and log per-capita death rates."""
    return jnp.stack(jnp.broadcast_arrays(log_birth, log_death), axis=-1)


def run(sampler, denoiser, process, shape, grid, seed=0):
    x, info = jax.jit(lambda k: sampler(k, denoiser, process, shape, None, grid))(
        jax.random.key(seed)
    )
    x = np.asarray(x)
    assert x.min() >= 0, "a sampler produced a negative count"
    return x, info


def total_variation(samples, pmf):
    counts = np.bincount(samples, minlength=len(pmf))[: len(pmf)] / len(samples)
    return 0.5 * (np.abs(counts - pmf).sum() + max(0.0, 1.0 - pmf.sum()))


# -- C1: the signed-binomial bridge -----------------------------------------------------------


def test_c1_conditional_rates_and_bridge_endpoints():
    x0, xt = jnp.array([[6, 1, 0]]), jnp.array([[2, 5, 0]])
    birth, death = conditional_rates(x0, xt, jnp.array([0.5]))
    np.testing.assert_allclose(birth, [[8, 0, 0]])
    np.testing.assert_allclose(death, [[0, 8, 0]])

    key = jax.random.key(0)
    x0 = jax.random.poisson(key, 5.0, (1000, 6))
    x1 = jax.random.poisson(jax.random.key(1), 2.0, (1000, 6))
    np.testing.assert_array_equal(bridge(key, x0, x1, jnp.ones(1000)), x1)
    np.testing.assert_array_equal(bridge(key, x0, x1, jnp.zeros(1000)), x0)
    xt = bridge(key, x0, x1, jnp.full(1000, 0.3))
    assert np.all((xt >= jnp.minimum(x0, x1)) & (xt <= jnp.maximum(x0, x1)))


def test_c1_bridge_mean_is_linear_in_t():
    x0 = jnp.array([[40, 0, 7, 3]] * 40000)
    x1 = jnp.array([[10, 25, 7, 0]] * 40000)
    t = 0.35
    xt = np.asarray(bridge(jax.random.key(2), x0, x1, jnp.full(40000, t)))
    n = np.abs(np.asarray(x0[0] - x1[0]))
    expected = np.asarray(x1[0]) + (1 - t) * np.asarray(x0[0] - x1[0])
    se = np.sqrt(n * t * (1 - t) / 40000) + 1e-12
    assert np.all(np.abs(xt.mean(0) - expected) <= 4 * se), (xt.mean(0), expected)


def test_c1_model_death_rate_is_zero_at_zero_count():
    process = CountFlow()
    pred = jax.random.normal(jax.random.key(0), (4, 5, 2)) * 10
    x = jnp.array([[0, 1, 0, 3, 0]] * 4)
    _, death = process.rates(pred, x)
    assert np.all(np.asarray(death)[np.asarray(x) == 0] == 0.0)
    # and the training loss ignores the death head where x_t = 0
    kl = process.rate_kl(pred, jnp.zeros_like(x), jnp.zeros_like(x), jnp.full(4, 0.5))
    kl2 = process.rate_kl(pred.at[..., 1].add(5.0), jnp.zeros_like(x), jnp.zeros_like(x), 0.5)
    np.testing.assert_allclose(kl, kl2)


# -- C2: delta_0 -> negative binomial (Gamma-Poisson) -----------------------------------------

R, BETA = 3.0, 0.5


def nb_denoiser(x, t, cond=None):
    """Exact birth rate (r + k) / (beta + 1 - t) of delta_0 -> NB(r, rate beta); no deaths."""
    del cond
    rate = (R + x) / (BETA + 1.0 - t[:, None])
    return log_rate_pred(jnp.log(rate), NEG)


def nb_bound(x, t, t_end):
    """The birth rate falls as t runs down to 0: its maximum on [t_end, t] is at t."""
    del t_end
    return jnp.sum(R + x, -1) / (BETA + 1.0 - t)


def test_c2_exact_thinning_reproduces_negative_binomial():
    process = CountFlow(source="zeros")
    grid = solvers.uniform_grid(1, 1.0, 0.0)
    x, info = run(discrete.exact(rate_bound=nb_bound), nb_denoiser, process, (40000, 1), grid)
    x = x[:, 0]
    assert int(info["unfinished"]) == 0 and int(info.get("bound_violations", 0)) == 0
    pmf = stats.nbinom(R, BETA / (BETA + 1)).pmf(np.arange(200))
    assert abs(x.mean() - 6.0) < 4 * np.sqrt(18 / 40000)
    assert abs(x.var() - 18.0) < 0.6
    assert total_variation(x, pmf) < 0.02  # docs/math.md: 0.0086 at 4e4 samples
    # the intermediate marginal at t = 0.6: NB(r, beta / (beta + 0.4)), mean 2.4, var 4.32
    x6, _ = run(
        discrete.exact(rate_bound=nb_bound),
        nb_denoiser,
        process,
        (40000, 1),
        jnp.array([1.0, 0.6]),
        seed=1,
    )
    assert abs(x6.mean() - 2.4) < 4 * np.sqrt(4.32 / 40000)
    assert abs(x6.var() - 4.32) < 0.2


def test_c2_negative_control_wrong_rates_fail():
    """Rates of the wrong NB (beta = 0.6) must fail the same TV test."""
    process = CountFlow(source="zeros")

    def wrong(x, t, cond=None):
        return log_rate_pred(jnp.log((R + x) / (0.6 + 1.0 - t[:, None])), NEG)

    x, _ = run(
        discrete.exact(rate_bound=nb_bound),
        wrong,
        process,
        (40000, 1),
        solvers.uniform_grid(1, 1.0, 0.0),
    )
    pmf = stats.nbinom(R, BETA / (BETA + 1)).pmf(np.arange(200))
    assert total_variation(x[:, 0], pmf) > 0.04


@pytest.mark.optimized
def test_c2_tau_leaping_mean_exact_and_variance_converges_at_rate_1_over_k():
    process = CountFlow(source="zeros")
    expected = {4: 13.08, 16: 16.52, 64: 17.66}  # docs/math.md C2 (numpy reference)
    variances = []
    for k, var in expected.items():
        x, info = run(
            discrete.tau_leaping,
            nb_denoiser,
            process,
            (40000, 1),
            solvers.uniform_grid(k, 1.0, 0.0),
            seed=k,
        )
        assert int(info["nfe"]) == k
        assert abs(x.mean() - 6.0) < 4 * np.sqrt(18 / 40000)
        assert abs(x.var() - var) < 0.7, (k, x.var(), var)
        variances.append(x.var())
    # O(1/K): the bias 18 - var shrinks ~4x when K grows 4x
    bias = 18.0 - np.array(variances)
    assert np.all(bias[1:] < bias[:-1] / 2.5), bias


# -- C3: independent Poisson(3) -> Poisson(8): marginal rates by enumeration ---------------------

SRC, DATA, KMAX = 3.0, 8.0, 40  # P(k > 40): 1e-15 under Poisson(8)
K = np.arange(KMAX + 1)
N_MOVES = np.abs(K[:, None] - K[None, :])  # [x0, x1]: the units the bridge moves
# log C(n, j) for 0 <= j <= n (the rest is never read)
LOG_CHOOSE = special.gammaln(K + 1)[:, None] - special.gammaln(K + 1) - special.gammaln(N_MOVES + 1)


def binomial_pmf(n, j, q):
    """C(n, j) q^j (1 - q)^(n - j) for integer arrays n, j; 0 unless 0 <= j <= n."""
    inside = (j >= 0) & (j <= n)
    j = np.where(inside, j, 0)
    log_pmf = LOG_CHOOSE[n, j] + special.xlogy(j, q) + special.xlog1py(n - j, -q)  # 0 log 0 = 0
    return np.where(inside, np.exp(log_pmf), 0.0)


def marginal_tables(t):
    """p_t(k), lambda(k, t), mu(k, t) for k = 0..KMAX by enumeration over (x_0, x_1), float64."""
    p0, p1 = stats.poisson.pmf(K, DATA), stats.poisson.pmf(K, SRC)
    x0, x1, j = K[:, None, None], K[None, :, None], K[None, None, :]
    # x_t = x1 + sign(x0 - x1) Binom(|x0 - x1|, 1 - t): j - x1 units moved toward x0 by time t
    sign = np.sign(x0 - x1)
    lik = binomial_pmf(
        N_MOVES[..., None], np.where(sign == 0, np.abs(j - x1), sign * (j - x1)), 1 - t
    )
    joint = (p0[:, None] * p1[None, :])[..., None] * lik  # [x0, x1, j]
    pt = joint.sum((0, 1))
    gap = x0 - j
    birth = (joint * np.maximum(gap, 0)).sum((0, 1)) / pt / t
    death = (joint * np.maximum(-gap, 0)).sum((0, 1)) / pt / t
    return pt, birth, death


def test_c3_marginal_rates_satisfy_the_kolmogorov_forward_equation():
    t, dt = 0.63, 1e-5
    pt, birth, death = marginal_tables(t)
    assert abs((np.arange(KMAX + 1) * pt).sum() - 4.85) < 1e-9
    np.testing.assert_allclose(birth[:6], [7.896, 6.906, 6.107, 5.512, 5.099, 4.838], atol=1e-3)
    np.testing.assert_allclose(death[:6], [0, 0.007, 0.022, 0.043, 0.066, 0.089], atol=1e-3)
    dp = (marginal_tables(t + dt)[0] - marginal_tables(t - dt)[0]) / (2 * dt)
    inflow = np.zeros_like(pt)
    inflow[1:] += birth[:-1] * pt[:-1]
    inflow[:-1] += death[1:] * pt[1:]
    rhs = -(inflow - (birth + death) * pt)
    assert np.max(np.abs(dp - rhs)[:40]) < 1e-7


# every count sampler of the registry that moves one step at a time (the exact sampler's oracles
# are C2 and C5)
STEPPED = [n for n in samplers.names("counts") if samplers.SPECS[n].move is not None]


@pytest.mark.optimized
@pytest.mark.parametrize("name", STEPPED)
def test_c3_samplers_with_tabulated_rates_reproduce_the_data_law(name):
    steps = 400
    grid = solvers.uniform_grid(steps, 1.0, 1e-4)
    tables = [marginal_tables(float(t))[1:] for t in np.asarray(grid[:-1])]
    log_b = jnp.log(jnp.asarray(np.array([b for b, _ in tables]), jnp.float32))
    per_capita = np.array([d / np.maximum(np.arange(KMAX + 1), 1) for _, d in tables])
    log_d = jnp.log(jnp.asarray(np.maximum(per_capita, 1e-30), jnp.float32))

    def tabulated(x, t, cond=None):
        i = jnp.clip(jnp.round((1.0 - t) / (1.0 - 1e-4) * steps).astype(jnp.int32), 0, steps - 1)
        k = jnp.minimum(x, KMAX)
        return log_rate_pred(log_b[i[:, None], k], log_d[i[:, None], k])

    process = CountFlow(source="poisson", source_rate=SRC)
    x, _ = run(samplers.get("counts", name), tabulated, process, (20000, 1), grid)
    pmf = stats.poisson(DATA).pmf(np.arange(KMAX + 1))
    assert abs(x.mean() - DATA) < 4 * np.sqrt(DATA / 20000)
    assert total_variation(x[:, 0], pmf) < 0.03
    # negative control: the source law itself is far away
    assert total_variation(x[:, 0], stats.poisson(SRC).pmf(np.arange(KMAX + 1))) > 0.5


# -- C4: the count NELBO is tight for delta_0 -> Poisson / NB ------------------------------------


@pytest.mark.parametrize(
    "law, x0, nll",
    [
        ("poisson", 0, 4.0),
        ("poisson", 3, 1.632876),
        ("poisson", 7, 2.821101),
        ("negbin", 0, 3.295837),
        ("negbin", 2, 2.315008),
        ("negbin", 12, 3.650559),
    ],
)
def test_c4_nelbo_with_exact_rates_equals_negative_log_likelihood(law, x0, nll):
    process = CountFlow(source="zeros")

    def poisson4(x, t, cond=None):
        return log_rate_pred(jnp.full(x.shape, jnp.log(4.0)), NEG)

    denoiser = poisson4 if law == "poisson" else nb_denoiser
    nelbo, se = quadrature_nelbo(process, denoiser, x0)
    # the neglected piece int_0^t_eps is at most t_eps times the largest rate (~30)
    assert abs(nelbo - nll) < 3 * se + 30 * process.t_eps, (nelbo, nll, se)


def quadrature_nelbo(process, denoiser, x0, nodes=256, draws=256):
    """int_{t_eps}^1 E_{x_t} sum_d KL dt with the implemented rate_kl: midpoint rule in log t
    (the integrand has a 1/t tail: uniform-t Monte Carlo has a heavy-tailed variance)."""
    lo = np.log(process.t_eps)
    u = lo * (1.0 - (np.arange(nodes) + 0.5) / nodes)
    t = jnp.asarray(np.repeat(np.exp(u), draws), jnp.float32)
    x = jnp.full((nodes * draws, 1), x0, jnp.int32)
    xt = process.corrupt(jax.random.key(x0), x, t)
    kl = np.asarray(process.rate_kl(denoiser(xt, t), x, xt, t)).reshape(nodes, draws)
    weight = np.exp(u) * (-lo) / nodes  # dt = t d(log t)
    per_node = kl.mean(1) * weight
    se = np.sqrt(np.sum(weight**2 * kl.var(1) / draws))
    return float(per_node.sum()), float(se)


def test_c4_training_loss_is_the_nelbo_per_coordinate():
    """The training loss is the same integrand at uniform t (antithetic), per coordinate."""
    process = CountFlow(source="zeros")

    def poisson4(x, t, cond=None):
        return log_rate_pred(jnp.full(x.shape, jnp.log(4.0)), NEG)

    x = jnp.full((4096, 2), 3, jnp.int32)
    key = jax.random.key(0)
    loss, metrics = process.loss(poisson4, key, {"x": x})
    draw = process.nelbo_draw(poisson4, jax.random.split(key)[0], x)
    np.testing.assert_allclose(float(metrics["nelbo_per_example"]), float(jnp.mean(draw)))
    np.testing.assert_allclose(float(loss), float(jnp.mean(draw)) / 2, rtol=1e-6)
    # uniform-t Monte Carlo of this integrand is heavy-tailed (1/t; per-draw std ~20 nats), so
    # the mean of 2^19 draws is compared with the exact 2 x 1.632876 nats within 4 SE (~0.11);
    # the rate-3 model's 2 x 1.496 nats is 10 SE away
    big = jnp.full((65_536, 2), 3, jnp.int32)
    f = jax.jit(lambda k: process.nelbo_draw(poisson4, k, big))
    draws = np.concatenate([np.asarray(f(k)) for k in jax.random.split(jax.random.key(1), 8)])
    se = draws.std() / np.sqrt(len(draws))
    assert abs(draws.mean() - 2 * 1.632876) < 4 * se and se < 0.04, (draws.mean(), se)


def test_c4_negative_control_wrong_rates_overshoot_the_likelihood():
    process = CountFlow(source="zeros")

    def poisson3(x, t, cond=None):
        return log_rate_pred(jnp.full(x.shape, jnp.log(3.0)), NEG)

    nelbo, se = quadrature_nelbo(process, poisson3, 7)
    assert nelbo > 2.821101 + 0.1 + 3 * se


# -- C5: shared-Gamma multivariate negative binomial -------------------------------------------

W = jnp.array([1.0, 2.0, 0.5])
R5, BETA5 = 2.0, 0.5


def mvnb_denoiser(x, t, cond=None):
    rate = W * (R5 + jnp.sum(x, -1, keepdims=True)) / (BETA5 + (1.0 - t[:, None]) * W.sum())
    return log_rate_pred(jnp.log(rate), NEG)


@pytest.mark.optimized
def test_c5_exact_sampler_reproduces_multivariate_covariance():
    process = CountFlow(source="zeros")

    def bound(x, t, t_end):
        return W.sum() * (R5 + jnp.sum(x, -1)) / (BETA5 + (1.0 - t) * W.sum())

    x, info = run(
        discrete.exact(rate_bound=bound),
        mvnb_denoiser,
        process,
        (40000, 3),
        solvers.uniform_grid(1, 1.0, 0.0),
    )
    assert int(info["unfinished"]) == 0 and int(info.get("bound_violations", 0)) == 0
    w = np.asarray(W)
    cov = np.outer(w, w) * R5 / BETA5**2 + np.diag(w * R5 / BETA5)
    np.testing.assert_allclose(np.cov(x.T), cov, rtol=0.05)
    np.testing.assert_allclose(x.mean(0), w * R5 / BETA5, rtol=0.02)


# -- C6: pure death and the monotone coupling ------------------------------------------------


@pytest.mark.optimized
def test_c6_pure_death_from_poisson_source():
    lam = 6.0
    process = CountFlow(source="poisson", source_rate=lam)

    def death(x, t, cond=None):  # mu(k, t) = k / t: per-capita 1 / t
        return log_rate_pred(NEG, jnp.broadcast_to(-jnp.log(t)[:, None], x.shape))

    def bound(x, t, t_end):
        return jnp.sum(x, -1) / t_end

    for sampler in (discrete.exact(rate_bound=bound), discrete.tau_leaping):
        grid = (
            jnp.array([1.0, 0.4])
            if sampler is not discrete.tau_leaping
            else (solvers.uniform_grid(300, 1.0, 0.4))
        )
        x, _ = run(sampler, death, process, (40000, 1), grid)
        pmf = stats.poisson(0.4 * lam).pmf(np.arange(60))
        assert total_variation(x[:, 0], pmf) < 0.02


def test_c6_monotone_coupling_pure_birth():
    lam_src, delta = 2.0, 5.0
    process = CountFlow(source="poisson", source_rate=lam_src)

    def birth(x, t, cond=None):
        return log_rate_pred(jnp.full(x.shape, jnp.log(delta)), NEG)

    x, _ = run(
        discrete.exact(rate_bound=lambda x, t, e: jnp.full(x.shape[:1], delta)),
        birth,
        process,
        (40000, 1),
        jnp.array([1.0, 0.3]),
    )
    pmf = stats.poisson(lam_src + 0.7 * delta).pmf(np.arange(60))
    assert total_variation(x[:, 0], pmf) < 0.02


# -- the zero boundary ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tau_leaping", "unit_jump"])
def test_huge_death_rates_never_make_counts_negative(name):
    process = CountFlow(source="poisson", source_rate=3.0)

    def killer(x, t, cond=None):
        return log_rate_pred(NEG, jnp.full(x.shape, 15.0))

    x, _ = run(getattr(discrete, name), killer, process, (2000, 16), solvers.uniform_grid(3))
    # tau-leaping kills everything; unit jumps remove one unit per step while x > 0, and the
    # final step (the endpoint law) removes the rest
    np.testing.assert_array_equal(x, 0)


@pytest.mark.optimized
@pytest.mark.parametrize("name", ["tau_leaping", "unit_jump"])
@pytest.mark.parametrize("grid_kind", ["power", "uniform"])
def test_units_that_must_die_are_dead_at_the_end(name, grid_kind):
    """Poisson(6) -> delta_0 with the exact rates (per-capita death 1/t): x_t ~ Poisson(6 t), so
    P(x >= 1) at t_eps = 1e-4 is 0.0006. Thinning with 1 - exp(-beta h) left 0.216 (power-0.5
    grid, K = 100) and 0.031 (uniform grid) alive; the bridge's death probability beta h is
    exact at every step."""
    process = CountFlow(source="poisson", source_rate=6.0)

    def death(x, t, cond=None):
        return log_rate_pred(NEG, jnp.broadcast_to(-jnp.log(t)[:, None], x.shape))

    grid = (
        solvers.power_grid(100, 0.5, process.t_min)
        if grid_kind == "power"
        else solvers.uniform_grid(100, 1.0, process.t_min)
    )
    x, _ = run(getattr(discrete, name), death, process, (5000, 4), grid)
    alive = float(np.mean(x >= 1))
    assert alive < 0.0006 + 4 * np.sqrt(0.0006 / x.size), alive
    if name == "tau_leaping":  # and the intermediate marginal is Poisson(6 t)
        half = solvers.power_grid(100, 0.5, 0.0)[:51]
        x, _ = run(discrete.tau_leaping, death, process, (20000, 1), half)
        pmf = stats.poisson(6.0 * float(half[-1])).pmf(np.arange(60))
        assert total_variation(x[:, 0], pmf) < 0.02


def test_frozen_rate_exact_sampler_is_exact_for_piecewise_constant_rates():
    """Without a bound the rates are frozen between events and grid times: for a birth rate
    constant on each grid interval the result is Poisson(sum of rate x length)."""
    process = CountFlow(source="zeros")
    grid = jnp.array([1.0, 0.5, 0.0])

    def piecewise(x, t, cond=None):
        rate = jnp.where(t > 0.5, 2.0, 10.0)
        return log_rate_pred(jnp.broadcast_to(jnp.log(rate)[:, None], x.shape), NEG)

    x, info = run(discrete.exact(), piecewise, process, (40000, 1), grid)
    assert int(info["unfinished"]) == 0 and int(info.get("bound_violations", 0)) == 0
    pmf = stats.poisson(0.5 * 2.0 + 0.5 * 10.0).pmf(np.arange(60))
    assert total_variation(x[:, 0], pmf) < 0.02

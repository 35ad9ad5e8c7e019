"""Gaussian diffusion: schedules (G6), conversions (G1), samplers on the exact GMM (G3, G4, F5),
and the ELBO of Gaussian data (G5). Tolerances and sample sizes are docs/math.md §8.2's."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflab import samplers
from difflab.data import toy
from difflab.metrics import oracles
from difflab.models import common, continuous, flow
from difflab.samplers import solvers
from tests.helpers import jit_for_oracles
from tests.test_solvers_oracle import ks_statistic, mode_weights

SCHEDULES = {
    "linear": continuous.linear_beta(),
    "cosine": continuous.cosine(),
    "vdm": continuous.log_snr_schedule(lambda t: 13.3 - 18.3 * t),  # VDM's fixed linear log-SNR
}
GMM1 = toy.standard_mixture_1d()
N = 20_000


def process(schedule="cosine", parameterization="eps"):
    return continuous.GaussianDiffusion(SCHEDULES[schedule], parameterization)


# -- G6 schedule identities -------------------------------------------------------------------


def test_linear_schedule_drift_and_diffusion_match_the_table():
    p = process("linear")
    t = jnp.linspace(0.01, 1.0, 50)
    f, half_g2 = p.drift_and_diffusion(jnp.ones((50, 1)), t)
    beta = 0.1 + t * (20.0 - 0.1)
    np.testing.assert_allclose(f[:, 0], -0.5 * beta, rtol=1e-4)
    np.testing.assert_allclose(2 * half_g2[:, 0], beta, rtol=1e-4)


def test_cosine_schedule_endpoints_and_monotone():
    p = process("cosine")
    np.testing.assert_allclose([p.log_snr(0.0), p.log_snr(1.0)], [15.0, -15.0], atol=1e-4)
    lam = p.log_snr(jnp.linspace(0, 1, 1001))
    assert np.all(np.diff(np.asarray(lam)) < 0)
    # with lambda_min,max -> -+inf the cosine schedule is alpha = cos(pi t / 2)
    wide = continuous.GaussianDiffusion(continuous.cosine(-60.0, 60.0))
    t = jnp.linspace(0.05, 0.95, 10)
    np.testing.assert_allclose(wide.alpha(t), jnp.cos(0.5 * jnp.pi * t), atol=1e-5)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_edm_inverse_round_trips(name):
    p = process(name)
    t = jnp.linspace(max(p.t_min, 1e-3), 1.0, 40)
    sig = jnp.exp(-0.5 * p.log_snr(t))
    back = common.invert_decreasing(p.log_snr, -2 * jnp.log(sig), p.t_min, 1.0)
    np.testing.assert_allclose(back, t, atol=2e-5)
    g = solvers.edm_grid(p, 18)
    assert g.shape == (19,) and float(g[-1]) == 0.0 and np.all(np.diff(np.asarray(g)) < 0)


# -- G1 conversions ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("schedule", ["linear", "cosine", "vdm"])
@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_conversions_round_trip(seed, schedule, param):
    """eps <-> x0 <-> v <-> score <-> velocity from exact (x, eps), t in [t_min, 0.99]."""
    p = process(schedule, param)
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    x, eps = jax.random.normal(k1, (512, 3)), jax.random.normal(k2, (512, 3))
    t = jax.random.uniform(k3, (512,), minval=max(p.t_min, 1e-3), maxval=0.99)
    z = p.corrupt(None, x, t, eps)
    pred = p.pred_from_x0_eps(x, eps, z, t)
    x_hat, eps_hat = p.x0_eps(pred, z, t)
    np.testing.assert_allclose(x_hat, x, rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(eps_hat, eps, rtol=1e-4, atol=2e-4)
    sigma = p.sigma(t)[:, None]
    np.testing.assert_allclose(p.score(pred, z, t) * sigma, -eps, rtol=1e-4, atol=2e-4)
    # velocity = d z_t / dt along the path, by autodiff of alpha and sigma
    u_true = p.d_alpha(t)[:, None] * x + p.d_sigma(t)[:, None] * eps
    np.testing.assert_allclose(p.velocity(pred, z, t), u_true, rtol=1e-3, atol=1e-3)
    f, half_g2 = p.drift_and_diffusion(z, t)
    np.testing.assert_allclose(f * z - half_g2 * p.score(pred, z, t), u_true, rtol=1e-3, atol=1e-3)


def test_posterior_variance_is_stable_for_tiny_steps():
    """sigma_{t|s}^2 via expm1 matches float64 to 1% for h down to 1e-4 (in float32, t - s itself
    carries a relative error of ~1e-7 / h, so smaller h cannot be checked there)."""
    p = process("linear")
    t = 0.5
    for h in (1e-2, 1e-3, 1e-4):
        s = t - h
        _, var = p.posterior_mean_var(jnp.zeros((1, 1)), jnp.zeros((1, 1)), t, s)
        lt, ls = (float(-np.log(np.expm1(0.5 * u**2 * 19.9 + u * 0.1))) for u in (t, s))
        r = -np.expm1(lt - ls)
        truth = r / (1 + np.exp(ls))
        np.testing.assert_allclose(float(var[0, 0]), truth, rtol=1e-2)


def test_ddpm_posterior_matches_bayes_rule_for_gaussian_data():
    """For x ~ N(0, 1): q(z_s | z_t) has the closed form of a Gaussian conditional."""
    p = process("cosine")
    t, s = 0.6, 0.4
    a_t, s_t, a_s, s_s = (float(f(u)) for u in (t, s) for f in (p.alpha, p.sigma))
    z = jnp.linspace(-2, 2, 5)[:, None]
    x_hat = a_t * z  # E[x | z_t] for N(0,1) data under VP (alpha^2 + sigma^2 = 1)
    mean, var = p.posterior_mean_var(z, x_hat, t, s)
    # Joint of (z_s, z_t): Cov = a_s a_t + (a_t / a_s) s_s^2 = a_t / a_s (a_s^2 + s_s^2)
    cov = a_t / a_s
    np.testing.assert_allclose(mean, cov * z, atol=1e-5)  # Var(z_t) = 1
    # total conditional variance = 1 - cov^2 = posterior var + (a_s r)^2 Var(x | z_t)
    r = -math.expm1(float(p.log_snr(t) - p.log_snr(s)))
    np.testing.assert_allclose(float(var[0, 0]) + (a_s * r) ** 2 * s_t**2, 1 - cov**2, rtol=1e-4)


# -- G3 samplers reproduce the GMM ------------------------------------------------------------


@functools.cache
def draw(name, steps, parameterization="eps", eta=None, schedule="cosine"):
    p = process(schedule, parameterization)
    sampler = samplers.get("diffusion", name, eta)
    grid = samplers.grid(name, p, steps)
    if name == "heun_edm":
        grid = solvers.edm_grid(p, steps, sigma_max=float(np.exp(7.5)))
    den = oracles.exact_denoiser(GMM1, p)
    x, info = jit_for_oracles(lambda k: sampler(k, den, p, (N, 1), None, grid))(jax.random.key(0))
    return np.asarray(x), int(info["nfe"])


def assert_reproduces_gmm(x):
    assert ks_statistic(x, GMM1) < 0.02
    assert abs(x.mean() - 0.15) < 0.06
    assert abs(x.var() / 3.8435 - 1) < 0.06
    np.testing.assert_allclose(mode_weights(x, GMM1.means), GMM1.weights, atol=0.015)


# Every sampler on every flow path and VP schedule (v-prediction) is in
# tests/test_gaussian_samplers.py; here eps-prediction, and DDIM with eta = 1.
@pytest.mark.parametrize(
    "name,steps,eta,nfe",
    [
        ("ddim", 100, None, 100),
        ("ddim", 200, 1.0, 200),
    ],
)
def test_samplers_reproduce_the_mixture(name, steps, eta, nfe):
    x, got = draw(name, steps, eta=eta)
    assert_reproduces_gmm(x)
    if nfe is not None:
        assert got == nfe


@pytest.mark.parametrize("param", ["x0", "v"])
def test_other_parameterizations_sample_the_same_law(param):
    x, _ = draw("ddim", 100, param)
    assert_reproduces_gmm(x)


def test_ten_ddim_steps_fail_the_same_test():
    """Negative control (docs/math.md G3): DDIM with T = 10 is visibly off (KS about 0.043)."""
    x, _ = draw("ddim", 10)
    assert ks_statistic(x, GMM1) > 0.02


@pytest.mark.optimized
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_sde_sampler_on_a_flow_model(eta):
    """F5: Euler-Maruyama with the score from the exact velocity, from sigma~ = 80."""
    p = flow.FlowMatching()
    sampler = samplers.get("flow", "em", eta)
    grid = samplers.grid("em", p, 1000)
    assert float(grid[0]) == pytest.approx(80 / 81, rel=1e-5)
    den = oracles.exact_denoiser(GMM1, p)
    x, _ = jit_for_oracles(lambda k: sampler(k, den, p, (N, 1), None, grid))(jax.random.key(3))
    assert_reproduces_gmm(np.asarray(x))


# -- G4 pathwise ODE --------------------------------------------------------------------------


def pathwise_error(move, grid, p):
    z1 = np.linspace(-2.5, 2.5, 11)[:, None].astype(np.float32)
    exact = oracles.flow_map_1d(GMM1, p, z1[:, 0], float(grid[0]), 0.0)
    model = solvers.Bound(oracles.exact_denoiser(GMM1, p), p)
    x0 = solvers.scan_grid(
        lambda k, x, t, s: move(k, model, x, t, s), jax.random.key(0), jnp.asarray(z1), grid
    )
    return float(np.max(np.abs(np.asarray(x0)[:, 0] - exact)))


def test_heun_edm_is_second_order():
    """Observed (docs/math.md G4): N = 64: 0.031, 128: 0.0073, 256: 0.0018."""
    p = process("cosine")
    err = [
        pathwise_error(
            solvers.heun_edm_move, solvers.edm_grid(p, n, sigma_max=float(np.exp(7.5))), p
        )
        for n in (64, 128, 256)
    ]
    assert err[0] < 0.062 and err[1] < 0.0146 and err[2] < 0.0036, err
    assert err[0] / err[1] >= 3 and err[1] / err[2] >= 3, err


def test_ddim_is_first_order_and_agrees_with_the_adaptive_ode():
    p = process("cosine")
    err = [pathwise_error(solvers.ddim_move, solvers.uniform_grid(n), p) for n in (100, 200, 400)]
    assert all(1.6 < a / b < 2.6 for a, b in zip(err[:-1], err[1:], strict=True)), err
    z1 = jnp.linspace(-2.5, 2.5, 11)[:, None]
    model = solvers.Bound(oracles.exact_denoiser(GMM1, p), p)
    x0, _ = solvers.solve_ode(
        lambda t, x, a: model.velocity(x, t), z1, 1.0, 0.0, rtol=1e-6, atol=1e-6
    )
    exact = oracles.flow_map_1d(GMM1, p, np.asarray(z1[:, 0]), 1.0, 0.0)
    assert np.max(np.abs(np.asarray(x0)[:, 0] - exact)) < 2e-3


# -- G5 ELBO of Gaussian data -----------------------------------------------------------------


def test_elbo_of_gaussian_data_with_the_exact_denoiser():
    """E[-ELBO]/d = 1.4189394 nats for N(0, 1) data, VDM endpoints (13.3, -5), within 3 SE."""
    sched = continuous.log_snr_schedule(lambda t: 13.3 - 18.3 * t)
    p = continuous.GaussianDiffusion(sched)
    d = 2
    x = jax.random.normal(jax.random.key(0), (100_000, d))
    exact_eps = lambda z, t, cond: p.sigma(t)[:, None] * z  # eps_hat = sigma z for N(0, I)
    per_example = np.asarray(p.nelbo(exact_eps, jax.random.key(1), x)) / d
    se = per_example.std() / np.sqrt(len(per_example))
    assert abs(per_example.mean() - 1.4189394) < 3 * se, (per_example.mean(), se)
    # the prior and reconstruction terms of docs/math.md §8.1(d)
    np.testing.assert_allclose(float(p.reconstruction(1)), -5.2310615, rtol=1e-5)


def test_training_losses_are_finite_and_ordered():
    """The three losses of one batch: simple and v are MSEs; elbo is bits/dim."""
    den = oracles.exact_denoiser(GMM1, process())
    batch = {"x": GMM1.sample(jax.random.key(0), 4096)}
    for loss in ("simple", "v", "elbo"):
        p = continuous.GaussianDiffusion(SCHEDULES["cosine"], "eps", loss)
        value, _ = p.loss(den, jax.random.key(1), batch)
        assert np.isfinite(float(value))
    assert common.antithetic_times(jax.random.key(0), 4).shape == (4,)


def test_elbo_training_loss_has_the_low_variance_estimator():
    """The elbo loss draws log-SNR uniformly: with the exact denoiser on the 2-D ring (B = 2048,
    cosine +-15) the batch mean's std over keys is far below that of t uniform with weight
    -lambda'(t) (computed here as the negative control), and both estimate the same NELBO."""
    gmm = toy.GMM
    p = continuous.GaussianDiffusion(SCHEDULES["cosine"], "eps", "elbo")
    den = oracles.exact_denoiser(gmm, p)
    x = gmm.sample(jax.random.key(0), 2048)
    d, keys = 2, jax.random.split(jax.random.key(1), 24)
    loss = jit_for_oracles(lambda k: p.loss(den, k, {"x": x})[0] * np.log(2))  # nats per dim

    def t_uniform(k):
        k_t, k_eps = jax.random.split(k)
        t = p.sample_times(k_t, 2048)
        eps = jax.random.normal(k_eps, x.shape)
        zt = p.corrupt(None, x, t, eps)
        sq = jnp.sum((eps - p.x0_eps(den(zt, t), zt, t)[1]) ** 2, axis=1)
        nelbo = p.prior_kl(x) + p.reconstruction(d) + 0.5 * (-p.d_log_snr(t)) * sq
        return jnp.mean(nelbo) / d

    new = np.array([float(loss(k)) for k in keys])
    old = np.array([float(jax.jit(t_uniform)(k)) for k in keys])
    assert new.std() < 0.35 and old.std() > 3 * new.std(), (new.std(), old.std())
    assert abs(new.mean() - old.mean()) < 3 * old.std() / np.sqrt(len(keys))


def test_per_example_nelbo_of_gaussian_data_matches_quadrature():
    """docs/math.md §8.1(d): for x ~ N(0, 1) data and the exact denoiser, the expected NELBO of one
    x is prior_kl(x) + recon + 1/2 int (-lambda') (a^4 + s^2 a^2 x^2) / (a^2 + s^2)^2 dt. Pinned per
    example on a schedule with lambda(1) = -2 (so the prior KL is 0.38 nats at x = 2.5), a dropped
    prior term is many standard errors wide; the data-averaged test above cannot see it."""
    from scipy import integrate

    lam = lambda t: 6.0 - 8.0 * t
    p = continuous.GaussianDiffusion(continuous.log_snr_schedule(lam))
    exact_eps = lambda z, t, cond: p.sigma(t)[:, None] * z
    n = 200_000
    for x in (0.0, 2.5):

        def integrand(t, x=x):
            a2 = 1 / (1 + np.exp(-lam(t)))
            s2 = 1 - a2
            return 0.5 * 8.0 * (a2**2 + s2 * a2 * x**2) / (a2 + s2) ** 2

        diffusion = integrate.quad(integrand, 0, 1, limit=200)[0]
        a1 = 1 / (1 + np.exp(2.0))
        prior = 0.5 * (a1 * x**2 + (1 - a1) - 1 - np.log(1 - a1))
        recon = 0.5 * np.log(2 * np.pi * np.e * np.exp(-6.0))
        xs = jnp.full((n, 1), x)
        draws = np.asarray(
            jit_for_oracles(lambda k, xs: p.nelbo_draw(exact_eps, k, xs))(jax.random.key(7), xs)
        )
        se = draws.std() / np.sqrt(n)
        assert abs(draws.mean() - (prior + recon + diffusion)) < 3 * se + 1e-4, (x, se)
        if x:  # the prior term is many standard errors wide
            assert prior > 8 * se, (prior, se)


def test_drift_and_diffusion_match_the_closed_forms():
    """docs/math.md §1.2: VP-cosine f = lambda' sigma^2 / 2, g^2 = -sigma^2 lambda' with
    lambda' = -4a / sin(2(a t + b)); VP-linear f = -beta(t) / 2, g^2 = beta(t)."""
    t = jnp.linspace(0.02, 0.98, 25)
    x = jnp.ones((25, 1))
    cos = process("cosine")
    b = math.atan(math.exp(-15 / 2))
    a = math.atan(math.exp(15 / 2)) - b
    dlam = -4 * a / np.sin(2 * (a * np.asarray(t) + b))
    s2 = np.asarray(cos.sigma(t)) ** 2
    f, half_g2 = cos.drift_and_diffusion(x, t)
    np.testing.assert_allclose(f[:, 0], 0.5 * dlam * s2, rtol=1e-3)
    np.testing.assert_allclose(2 * half_g2[:, 0], -s2 * dlam, rtol=1e-3)
    lin = process("linear")
    beta = 0.1 + np.asarray(t) * (20.0 - 0.1)
    f, half_g2 = lin.drift_and_diffusion(x, t)
    np.testing.assert_allclose(f[:, 0], -0.5 * beta, rtol=1e-3)
    np.testing.assert_allclose(2 * half_g2[:, 0], beta, rtol=1e-3)


@pytest.mark.parametrize("param", ["v", "eps"])
def test_v_loss_is_the_mean_squared_velocity_error(param):
    """loss_type 'v' = mean |v - v_hat|^2 / d with v = alpha eps - sigma x0 (docs/math.md §1.4),
    computed here from the denoiser's own inputs: the (1 + e^-lambda) eps-weight reproduces it
    (with e^+lambda it would not)."""
    gmm = toy.GMM
    p = continuous.GaussianDiffusion(SCHEDULES["cosine"], param, loss_type="v")
    exact = oracles.exact_denoiser(gmm, p)
    seen = []

    def spy(zt, t, cond=None):
        seen.append((zt, t))
        return exact(zt, t)

    x0 = gmm.sample(jax.random.key(1), 256)
    loss = float(p.loss(spy, jax.random.key(2), {"x": x0})[0])
    zt, t = seen[0]
    a, s = continuous.alpha_sigma(p.log_snr(t[:, None]))
    eps = (zt - a * x0) / s
    x0_hat, eps_hat = p.x0_eps(exact(zt, t), zt, t)
    v, v_hat = a * eps - s * x0, a * eps_hat - s * x0_hat
    direct = float(jnp.mean(jnp.sum((v - v_hat) ** 2, axis=1) / 2))
    np.testing.assert_allclose(loss, direct, rtol=2e-3)

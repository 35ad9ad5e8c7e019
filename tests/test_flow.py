"""Flow matching: interpolant, target, conversions (F1), minimiser identity (F2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflab.data import toy
from difflab.metrics import oracles
from difflab.models import common, flow

PATHS = {"linear": flow.linear_path(), "cosine": flow.cosine_path()}


def test_linear_target_is_x1_minus_x0():
    p = flow.FlowMatching()
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x0, x1 = jax.random.normal(k1, (5, 3)), jax.random.normal(k2, (5, 3))
    t = jax.random.uniform(k3, (5,))
    np.testing.assert_allclose(p.target_velocity(x0, x1, t), x1 - x0, atol=1e-6)
    xt = p.interpolate(x0, x1, t)
    np.testing.assert_allclose(xt, (1 - t[:, None]) * x0 + t[:, None] * x1, atol=1e-6)
    # endpoints: data at t = 0, noise at t = 1
    np.testing.assert_allclose(p.interpolate(x0, x1, jnp.zeros(5)), x0, atol=1e-6)
    np.testing.assert_allclose(p.interpolate(x0, x1, jnp.ones(5)), x1, atol=1e-6)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_conversions_round_trip(name):
    """F1: velocity <-> score <-> x0 <-> eps from exact x0 and eps, t in [1e-3, 1 - 1e-3]."""
    p = flow.FlowMatching(path=PATHS[name])
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    x0, eps = jax.random.normal(k1, (256, 2)), jax.random.normal(k2, (256, 2))
    t = jax.random.uniform(k3, (256,), minval=1e-3, maxval=1 - 1e-3)
    xt = p.interpolate(x0, eps, t)
    u = p.target_velocity(x0, eps, t)
    np.testing.assert_allclose(p.x0_from_velocity(u, xt, t), x0, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(p.eps_from_velocity(u, xt, t), eps, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(p.velocity_from_x0(x0, xt, t), u, rtol=1e-3, atol=1e-3)
    s = p.score_from_velocity(u, xt, t)
    sigma = p.path.sigma(t)[:, None]
    np.testing.assert_allclose(s * sigma, -eps, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(p.velocity_from_score(s, xt, t), u, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_exact_gmm_velocity_matches_score_form(name):
    """The component-form velocity equals f x - g^2/2 grad log p_t (docs/math.md §8.1a)."""
    gmm, path = toy.GMM, PATHS[name]
    p = flow.FlowMatching(path=path)
    x = jax.random.normal(jax.random.key(2), (128, 2)) * 3
    for t in (0.05, 0.3, 0.7, 0.95):
        tb = jnp.full((128,), t)
        u = oracles.velocity(gmm, path, x, tb)
        s = oracles.score(gmm, path, x, tb)
        np.testing.assert_allclose(p.velocity_from_score(s, x, tb), u, rtol=2e-3, atol=2e-3)


def test_score_is_gradient_of_log_density():
    gmm, path = toy.GMM, PATHS["linear"]
    x = jax.random.normal(jax.random.key(3), (16, 2)) * 3
    grad = jax.vmap(jax.grad(lambda xi: oracles.log_density(gmm, path, xi[None], 0.4)[0]))(x)
    np.testing.assert_allclose(oracles.score(gmm, path, x, 0.4), grad, rtol=1e-4, atol=1e-4)


def test_minimiser_identity():
    """F2: L(u + c) - L(u) = |c|^2 / d for the exact velocity u (the cross term vanishes)."""
    gmm, path = toy.GMM, PATHS["linear"]
    p = flow.FlowMatching(path=path)
    c = jnp.array([0.3, -0.2])
    exact = oracles.velocity_denoiser(gmm, path)
    shifted = lambda x, t, cond: exact(x, t) + c
    diffs = []
    for i in range(40):
        batch = {"x": gmm.sample(jax.random.key(100 + i), 4096)}
        key = jax.random.key(i)
        diffs.append(float(p.loss(shifted, key, batch)[0] - p.loss(exact, key, batch)[0]))
    diffs = np.array(diffs)
    expected = float(jnp.sum(c**2)) / 2
    se = diffs.std() / np.sqrt(len(diffs))
    assert abs(diffs.mean() - expected) < 3 * se + 1e-4, (diffs.mean(), expected, se)
    # negative control: the target with the opposite sign gives a much larger loss
    assert float(p.loss(lambda x, t, c_: -exact(x, t), key, batch)[0]) > 1.0


def test_label_dropout_rate():
    label = jnp.zeros(100_000, jnp.int32)
    dropped = common.drop_labels(jax.random.key(0), label, 0.1)
    assert abs(float(jnp.mean(dropped == -1)) - 0.1) < 0.005
    assert set(np.unique(dropped)) <= {-1, 0}


def test_antithetic_times_cover_unit_interval():
    t = np.sort(np.asarray(common.antithetic_times(jax.random.key(0), 64)))
    assert t.min() >= 0 and t.max() < 1
    np.testing.assert_allclose(np.diff(t), 1 / 64, atol=1e-5)


def test_stochastic_interpolant_is_a_gaussian_path_with_a_bounded_target():
    """x_t = (1 - t) x0 + t x1 + sqrt(t (1 - t)) z has noise scale sqrt(t^2 + t (1 - t)); the
    network's target b* = x1 - x0 has bounded variance (u* adds gamma' z, variance ~ 1 / t), and
    the velocity of the exact drift b is the exact marginal velocity of the mixture."""
    p = flow.FlowMatching(path=flow.stochastic_interpolant())
    t = jnp.array([0.01, 0.3, 0.7, 0.99])
    np.testing.assert_allclose(p.sigma(t), np.sqrt(t**2 + t * (1 - t)), rtol=1e-6)
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    x0, x1, z = (jax.random.normal(k, (20_000, 1)) for k in (k1, k2, k3))
    small = jnp.full((20_000,), 1e-3)
    assert float(jnp.var(p.drift_target(x0, x1, small))) < 2.5
    assert float(jnp.var(p.target_velocity(x0, x1, small, z))) > 100
    gmm = toy.GMM
    x = jax.random.normal(jax.random.key(5), (64, 2)) * 2
    for tt in (0.05, 0.5, 0.95):
        tb = jnp.full((64,), tt)
        b = oracles.exact_denoiser(gmm, p)(x, tb)
        u = oracles.velocity(gmm, p, x, tb)  # the marginal Gaussian path (alpha, p.sigma)
        np.testing.assert_allclose(p.velocity(b, x, tb), u, rtol=2e-3, atol=2e-3)
        s = oracles.score(gmm, p, x, tb)
        np.testing.assert_allclose(p.score(b, x, tb), s, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("a", [1.0, 2.0])
def test_stochastic_interpolant_x1_share_is_the_regression_of_x1_on_the_noise(a):
    """x1_share(t) = sigma_t / (sigma_t^2 + gamma_t^2) = 1 / (t + a (1 - t)) (docs/math.md §2.1):
    the least-squares coefficient of x1 on x_t - alpha_t x0 = sigma_t x1 + gamma_t z, from draws."""
    path = flow.stochastic_interpolant(a)
    t = jnp.array([0.1, 0.4, 0.8])
    np.testing.assert_allclose(
        path.x1_share(t), path.sigma(t) / (path.sigma(t) ** 2 + path.gamma(t) ** 2), rtol=1e-5
    )
    np.testing.assert_allclose(path.x1_share(t), 1 / (t + a * (1 - t)), rtol=1e-6)
    x1, z = jax.random.normal(jax.random.key(0), (2, 200_000, 1))
    noise = path.sigma(t) * x1 + path.gamma(t) * z
    slope = jnp.mean(x1 * noise, 0) / jnp.mean(noise**2, 0)
    np.testing.assert_allclose(slope, path.x1_share(t), rtol=0.02)


def test_flow_loss_of_the_exact_velocity_of_a_point_mass_is_zero():
    """Data x0 = c: the marginal velocity (x - c) / t is the conditional target x1 - x0 itself,
    so the loss is 0; a reversed target (x0 - x1) would give 4 E|x1 - c|^2 / d."""
    c = jnp.array([1.0, -2.0])
    p = flow.FlowMatching()
    batch = {"x": jnp.tile(c, (256, 1))}
    exact = lambda x, t, cond=None: (x - c) / t[:, None]
    assert float(p.loss(exact, jax.random.key(0), batch)[0]) < 1e-6
    assert float(p.loss(lambda x, t, cond=None: jnp.zeros_like(x), jax.random.key(0), batch)[0]) > 1

"""Samplers driven by the exact Gaussian-mixture velocity reproduce the mixture (docs/math.md F3,
G3).

Tolerances (N = 20000 samples, 1-D standard GMM: mean 0.15, variance 3.8435): KS < 0.02, each mode
weight within 0.015 (about 3 SE), mean within 0.06 (about 4 SE), variance within 6%.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflab.data import toy
from difflab.metrics import oracles
from difflab.models import flow
from difflab.samplers import solvers

GMM1 = toy.standard_mixture_1d()
PATH = flow.linear_path()
PROCESS = flow.FlowMatching(path=PATH)
N = 20_000


def ks_statistic(samples, gmm):
    x = np.sort(np.asarray(samples)[:, 0].astype(np.float64))
    cdf = oracles.cdf_1d(gmm, PATH, x, 0.0)
    n = len(x)
    return max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))


def mode_weights(samples, means):
    d = np.linalg.norm(np.asarray(samples)[:, None, :] - means[None], axis=-1)
    return np.bincount(np.argmin(d, axis=1), minlength=len(means)) / len(samples)


@functools.cache
def draw(sampler_name, steps):
    sampler = {"euler": solvers.euler, "heun": solvers.heun, "adaptive": solvers.adaptive}
    den = oracles.velocity_denoiser(GMM1, PATH)
    grid = solvers.uniform_grid(steps)
    fn = jax.jit(lambda k: sampler[sampler_name](k, den, PROCESS, (N, 1), None, grid))
    x, info = fn(jax.random.key(0))
    return np.asarray(x), int(info["nfe"])


# the law of every sampler on the linear path: tests/test_gaussian_samplers.py
def test_too_few_euler_steps_fail_the_same_test():
    """Negative control: 3 Euler steps are visibly biased, so the thresholds above can fail."""
    x, _ = draw("euler", 3)
    assert ks_statistic(x, GMM1) > 0.02


def test_samplers_reproduce_2d_mixture():
    """8-mode ring: mean within 0.05, covariance within 5%, mode weights by chi-square."""
    gmm = toy.GMM
    den = oracles.velocity_denoiser(gmm, PATH)
    ref = np.asarray(gmm.sample(jax.random.key(9), 200_000))
    cov_true = np.cov(ref, rowvar=False)
    for sampler, steps in [(solvers.heun, 64), (solvers.adaptive, 1)]:
        x, _ = sampler(jax.random.key(1), den, PROCESS, (N, 2), None, solvers.uniform_grid(steps))
        x = np.asarray(x)
        assert np.all(np.abs(x.mean(0)) < 0.05)
        np.testing.assert_allclose(np.cov(x, rowvar=False), cov_true, atol=0.05 * cov_true[0, 0])
        counts = mode_weights(x, gmm.means) * N
        chi2 = np.sum((counts - N / 8) ** 2 / (N / 8))
        assert chi2 < 24.3  # chi-square(7) quantile at p = 1e-3


def pathwise_error(move, steps):
    """max |x_0 - Phi_{1->0}(x_1)| over 11 starting points in [-2.5, 2.5] (docs/math.md F3)."""
    x1 = np.linspace(-2.5, 2.5, 11)[:, None].astype(np.float32)
    exact = oracles.flow_map_1d(GMM1, PATH, x1[:, 0], 1.0, 0.0)
    model = solvers.Bound(oracles.velocity_denoiser(GMM1, PATH), PROCESS)
    x0 = solvers.scan_grid(
        lambda k, x, t, s: move(k, model, x, t, s),
        jax.random.key(0),
        jnp.asarray(x1),
        solvers.uniform_grid(steps),
    )
    return float(np.max(np.abs(np.asarray(x0)[:, 0] - exact)))


def test_heun_is_second_order_and_euler_first_order():
    heun = [pathwise_error(solvers.heun_move, k) for k in (25, 50, 100)]
    euler = [pathwise_error(solvers.euler_move, k) for k in (100, 200, 400)]
    # observed (docs/math.md F3): Heun K=50 6.5e-4, K=100 1.6e-4; Euler K=100 0.049
    assert heun[1] < 1.3e-3 and heun[2] < 3.2e-4, heun
    assert heun[0] / heun[1] > 3 and heun[1] / heun[2] > 3, heun
    assert 1.6 < euler[0] / euler[1] < 2.5 and 1.6 < euler[1] / euler[2] < 2.5, euler


def test_adaptive_matches_exact_flow_map():
    x1 = np.linspace(-2.5, 2.5, 11)[:, None].astype(np.float32)
    exact = oracles.flow_map_1d(GMM1, PATH, x1[:, 0], 1.0, 0.0)
    model = solvers.Bound(oracles.velocity_denoiser(GMM1, PATH), PROCESS)
    x0, nfe = solvers.solve_ode(
        lambda t, x, a: model.velocity(x, t), jnp.asarray(x1), 1.0, 0.0, rtol=1e-6, atol=1e-6
    )
    assert np.max(np.abs(np.asarray(x0)[:, 0] - exact)) < 1e-4
    assert int(nfe) > 0


def test_grids():
    g = solvers.uniform_grid(4)
    np.testing.assert_allclose(g, [1, 0.75, 0.5, 0.25, 0])
    s = solvers.rho_sigmas(18, 0.002, 80.0, 7.0)
    assert s.shape == (19,) and float(s[-1]) == 0.0
    np.testing.assert_allclose([s[0], s[-2]], [80.0, 0.002], rtol=1e-4)
    assert np.all(np.diff(np.asarray(s)) < 0)
    t = solvers.edm_grid(PROCESS, 18)
    np.testing.assert_allclose(t[0], 80 / 81, rtol=1e-5)  # linear path: t = s~ / (1 + s~)
    assert np.all(np.diff(np.asarray(t)) < 0) and float(t[-1]) == 0.0
    sh = solvers.shifted_grid(10, 3.0)
    assert float(sh[0]) == pytest.approx(1.0) and float(sh[-1]) == 0.0
    with pytest.raises(ValueError, match="positive integer"):
        solvers.uniform_grid(0)

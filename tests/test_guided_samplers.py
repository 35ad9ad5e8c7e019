"""Every Gaussian sampler under every gradient guidance and under inpainting, on the linear flow
(whose velocity conversions are 0/0 at t = 0 if a shifted estimate is converted back there) and
the VP-cosine diffusion: the samples are finite and follow the guided law (docs/math.md §6.2,
§6.3)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflab import samplers
from difflab.data import toy
from difflab.metrics import oracles
from difflab.models import continuous, flow
from difflab.samplers import guidance
from difflab.samplers.observed import observe

GMM1 = toy.standard_mixture_1d()  # class 2 is N(2.5, 0.4^2)
NORMAL = toy.GaussianMixture(np.ones(1), np.zeros((1, 1)), np.ones((1, 1)))
TWO_MODES = toy.GaussianMixture(
    np.array([0.5, 0.5]), np.array([[-2.0, -2.0], [2.0, 2.0]]), np.full((2, 2), 0.5)
)
PROCESSES = {
    "flow": flow.FlowMatching(path=flow.linear_path()),
    "diffusion": continuous.GaussianDiffusion(continuous.cosine(), "eps"),
}
SAMPLERS = ("euler", "heun", "heun_edm", "ddpm", "ddim", "em", "adaptive")
N = 2000
BETA, RHO = 1.0, 1.5  # reward r = beta x on N(0, 1) data, scale rho: exactly N(rho beta, 1)


def observation(n):
    """x^0 = 1 observed: p(x^1 | x^0 = 1) is N(2, 0.5^2) up to e^-16."""
    values, known = np.zeros((n, 2), np.float32), np.zeros((n, 2), bool)
    values[:, 0], known[:, 0] = 1.0, True
    return values, known


@functools.cache
def guided_draws(family, name):
    """Samples under classifier (scale 1, class 2), reward, measurement (no replacement) and
    inpainting (replacement + measurement), one compiled program."""
    process = PROCESSES[family]
    sample = samplers.get(family, name)
    grid = samplers.grid(name, process, 100 if name == "em" else 40)
    values, known = observation(N)

    @jax.jit
    def run(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        log_p = lambda x, t: oracles.log_responsibilities(GMM1, process, x, t)
        den = oracles.exact_denoiser(GMM1, process)
        classified = guidance.gradient(den, process, guidance.classifier_potential(log_p), 1.0)
        cls = sample(k1, classified, process, (N, 1), jnp.full((N,), 2), grid)[0]
        reward = guidance.reward_potential(process, lambda x0: BETA * x0[:, 0])
        tilted = guidance.gradient(oracles.exact_denoiser(NORMAL, process), process, reward, RHO)
        rew = sample(k2, tilted, process, (N, 1), None, grid)[0]
        two = oracles.exact_denoiser(TWO_MODES, process)
        measured = observe(process, values, known, replace=False, measurement_scale=1.0)
        mea = sample(k3, two, measured, (N, 2), None, grid)[0]
        inpainted = observe(process, values, known, measurement_scale=1.0)
        inp = sample(k4, two, inpainted, (N, 2), None, grid)[0]
        return cls, rew, mea, inp

    return tuple(np.asarray(v) for v in run(jax.random.key(0)))


CASES = [(f, s) for f in PROCESSES for s in SAMPLERS if not (f == "diffusion" and s == "adaptive")]


@pytest.mark.parametrize("family, name", CASES)
def test_classifier_and_reward_guidance_sample_their_targets(family, name):
    cls, rew, _, _ = guided_draws(family, name)
    assert np.isfinite(cls).all() and np.isfinite(rew).all()
    assert abs(cls.mean() - 2.5) < 0.05 and abs(cls.std() - 0.4) < 0.05, (cls.mean(), cls.std())
    assert abs(rew.mean() - RHO * BETA) < 0.1 and abs(rew.std() - 1.0) < 0.08, (
        rew.mean(),
        rew.std(),
    )


@pytest.mark.parametrize("family, name", CASES)
def test_measurement_guidance_and_inpainting_find_the_observed_mode(family, name):
    _, _, mea, inp = guided_draws(family, name)
    assert np.isfinite(mea).all() and np.isfinite(inp).all()
    assert (mea[:, 1] > 0).mean() > 0.95 and abs(mea[:, 0].mean() - 1.0) < 0.2, mea.mean(0)
    np.testing.assert_array_equal(inp[:, 0], 1.0)
    assert (inp[:, 1] > 0).mean() > 0.98 and abs(inp[inp[:, 1] > 0, 1].mean() - 2.0) < 0.15

"""Every Gaussian sampler on every flow path and VP schedule reproduces the 1-D mixture when driven
by the exact, time-dependent mixture denoiser (docs/math.md §8.1a; G3 / F3 thresholds), through the
same `samplers.get` / `samplers.grid` that `sample.py` uses.

Tolerances (N = 20000, standard 1-D GMM: mean 0.15, variance 3.8435): KS < 0.02, mode weights
within 0.015, mean within 0.06, variance within 6%.
"""

import functools

import jax
import numpy as np
import pytest

from difflab import samplers
from difflab.data import toy
from difflab.metrics import oracles
from difflab.models import continuous, flow
from difflab.samplers import solvers
from tests.helpers import jit_for_oracles

GMM1 = toy.standard_mixture_1d()
N = 20_000
PROCESSES = {
    "flow_linear": flow.FlowMatching(path=flow.linear_path()),
    "flow_cosine": flow.FlowMatching(path=flow.cosine_path()),
    "flow_stochastic": flow.FlowMatching(path=flow.stochastic_interpolant()),
    "vp_cosine": continuous.GaussianDiffusion(continuous.cosine(), "v"),
    "vp_linear": continuous.GaussianDiffusion(continuous.linear_beta(), "v"),
}
STEPS = {"euler": 200, "heun": 50, "heun_edm": 64, "ddpm": 500, "ddim": 100, "em": 500}
STEPS |= {"dpmpp_2m": 40, "dpmpp_3m": 40, "dpmpp_2m_sde": 100, "unipc": 40}


def ks_statistic(x, process):
    x = np.sort(np.asarray(x)[:, 0].astype(np.float64))
    cdf = oracles.cdf_1d(GMM1, process, x, 0.0)
    n = len(x)
    return max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))


def mode_weights(x):
    d = np.abs(np.asarray(x)[:, :1] - np.asarray(GMM1.means)[None, :, 0])
    return np.bincount(np.argmin(d, axis=1), minlength=len(GMM1.means)) / len(x)


@functools.cache
def draw(process_name, sampler_name, steps):
    p = PROCESSES[process_name]
    family = "flow" if isinstance(p, flow.FlowMatching) else "diffusion"
    sampler = samplers.get(family, sampler_name)
    grid = samplers.grid(sampler_name, p, steps)
    den = oracles.exact_denoiser(GMM1, p)
    x, info = jit_for_oracles(lambda k: sampler(k, den, p, (N, 1), None, grid))(jax.random.key(0))
    return np.asarray(x), int(info["nfe"])


NFE_PER_STEP = {"euler": 1, "heun": 2, "ddpm": 1, "ddim": 1, "em": 1}
NFE_PER_STEP |= {"dpmpp_2m": 1, "dpmpp_3m": 1, "dpmpp_2m_sde": 1, "unipc": 1}


# Every Gaussian sampler of the registry (samplers.SPECS): one added without a STEPS entry here
# fails at collection. Heun and the adaptive solvers use nothing of a path but its velocity,
# which Euler checks on every path; they run on one flow path and one VP schedule (Tsit5 and
# Dopri5, whose tableaux differ, on the linear flow path).
GAUSSIAN = [n for n, spec in samplers.SPECS.items() if spec.kind == "gaussian"]
CASES = [
    (p, s)
    for p in sorted(PROCESSES)
    for s in GAUSSIAN
    if (STEPS[s] if samplers.SPECS[s].grid != "ends" else True)
    and (s not in ("heun", *samplers.ADAPTIVE) or p in ("flow_linear", "vp_cosine"))
    and (s not in ("tsit5", "dopri5") or p == "flow_linear")
]


@pytest.mark.optimized
@pytest.mark.parametrize("process_name,sampler_name", CASES)
def test_sampler_reproduces_the_mixture(process_name, sampler_name):
    steps = STEPS.get(sampler_name, 1)
    x, nfe = draw(process_name, sampler_name, steps)
    assert np.all(np.isfinite(x))
    if sampler_name == "heun_edm":
        assert nfe == 2 * steps - 1  # Euler on the final step to sigma~ = 0
    elif sampler_name in samplers.ADAPTIVE:
        assert 10 < nfe < 4096 * 6
    else:
        assert nfe == NFE_PER_STEP[sampler_name] * steps
    p = PROCESSES[process_name]
    assert ks_statistic(x, p) < 0.02
    assert abs(x.mean() - 0.15) < 0.06
    assert abs(x.var() / 3.8435 - 1) < 0.06
    np.testing.assert_allclose(mode_weights(x), GMM1.weights, atol=0.015)


def test_too_few_steps_fail_the_same_test():
    """Negative control: 4 DDIM steps on the cosine flow path are visibly off."""
    assert ks_statistic(draw("flow_cosine", "ddim", 4)[0], PROCESSES["flow_cosine"]) > 0.02


@pytest.mark.parametrize("process_name", ["flow_linear", "vp_cosine"])
def test_euler_maruyama_trajectory_follows_the_marginals(process_name):
    """At the default 50 steps every state of the EM trajectory has the marginal std of p_t,
    sqrt(alpha_t^2 Var[x0] + sigma_t^2), within 10% (a uniform grid from t = 0.999 gave std 20
    after the first step on the linear flow path)."""
    p = PROCESSES[process_name]
    grid = samplers.grid("em", p, 50)
    step = solvers.Step(functools.partial(solvers.em_move, eta=1.0), nfe=1)
    x1 = p.prior(jax.random.key(1), (N, 1), grid[0])
    den = oracles.exact_denoiser(GMM1, p)
    path = jax.jit(lambda k: solvers.trajectory(step, k, den, p, x1, None, grid))(jax.random.key(2))
    t = np.asarray(grid)
    exact = np.sqrt(np.asarray(p.alpha(t)) ** 2 * 3.8435 + np.asarray(p.sigma(t)) ** 2)
    std = np.asarray(path)[:, :, 0].std(axis=1)
    np.testing.assert_allclose(std, exact, rtol=0.1)


def test_ddpm_returns_the_denoised_mean_on_its_last_step():
    """docs/math.md §1.5(a): no noise on the final step, on a schedule whose t_min has sigma > 0."""
    p = PROCESSES["vp_linear"]
    model = solvers.Bound(oracles.exact_denoiser(GMM1, p), p)
    x = jax.numpy.linspace(-1.0, 1.0, 5)[:, None]
    t = 0.01
    out = [solvers.ddpm_move(jax.random.key(k), model, x, t, p.t_min) for k in range(2)]
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_allclose(out[0], model.x0_eps(x, t)[0], atol=1e-6)


def test_adaptive_samplers_are_named_and_requested_by_tolerance():
    """tsit5 and dopri5 are samplers of their own (adaptive is Tsit5); they take no step count
    (--steps with one is refused, naming the tolerance) and walk only the grid's end points."""
    from difflab.models import flow
    from difflab.sampling.draw import check_request
    from tests.helpers import tiny_config

    process = flow.FlowMatching()
    for name in ("adaptive", "tsit5", "dopri5"):
        samplers.check("flow", name)
        np.testing.assert_array_equal(samplers.grid(name, process, 50), [1.0, 0.0])
    config = tiny_config()
    assert check_request(config, "dopri5", None, 8, None, False, None) == ("dopri5", None, 8)
    with pytest.raises(ValueError, match=r"--steps=50 does not apply to the adaptive sampler "):
        check_request(config, "tsit5", 50, 8, None, False, None)

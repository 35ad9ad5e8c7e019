"""Adaptive projected guidance (docs/math.md §6.6) on a class-conditional 1-D mixture: with the
parallel part at full weight and no threshold it is CFG; down-weighting the parallel part and
capping the update change the prediction as defined."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflab import samplers
from difflab.data import toy
from difflab.metrics import oracles
from difflab.models import continuous, flow
from difflab.models.mixing import NULL_LABEL
from difflab.samplers import guidance

GMM1 = toy.standard_mixture_1d()


def conditional(process):
    """The exact denoiser of mixture component `cond`, the whole mixture at the null label."""
    parts = [
        oracles.exact_denoiser(
            toy.GaussianMixture(np.ones(1), GMM1.means[k : k + 1], GMM1.stds[k : k + 1]), process
        )
        for k in range(len(GMM1.weights))
    ]
    whole = oracles.exact_denoiser(GMM1, process)

    def den(x, t, cond=None, h=None):
        preds = jnp.stack([p(x, t) for p in parts])  # [K, B, 1]
        pick = preds[jnp.clip(cond, 0), jnp.arange(x.shape[0])]
        return jnp.where((cond == NULL_LABEL)[:, None], whole(x, t), pick)

    return den


@pytest.mark.parametrize(
    "process", [flow.FlowMatching(), continuous.GaussianDiffusion(continuous.cosine(), "v")]
)
def test_full_parallel_weight_without_threshold_is_cfg(process):
    den = conditional(process)
    cond = jnp.arange(64) % 3
    sampler, grid = samplers.get("flow", "heun"), samplers.grid("heun", process, 16)
    run = lambda d: jax.jit(lambda k: sampler(k, d, process, (64, 1), cond, grid))(
        jax.random.key(0)
    )
    cfg = run(guidance.classifier_free(den, 3.0))[0]
    apg = run(guidance.projected(den, process, 3.0, parallel=1.0))[0]
    np.testing.assert_allclose(apg, cfg, rtol=0, atol=2e-4)


def test_the_parallel_part_and_the_threshold_act_as_defined():
    """One evaluation: x_hat of APG equals x_hat_c + (w - 1)(orth + eta par) computed by hand,
    and with a threshold the update's norm is at most r (w - 1)."""
    process = flow.FlowMatching()
    den = conditional(process)
    x = jnp.linspace(-3, 3, 8)[:, None]
    t = jnp.full(8, 0.5)
    cond = jnp.zeros(8, jnp.int32)
    x_c = process.x0_eps(den(x, t, cond), x, t)[0]
    x_u = process.x0_eps(den(x, t, jnp.full(8, NULL_LABEL)), x, t)[0]
    delta = x_c - x_u  # 1-D: all of it is parallel to x_c, so eta scales it
    for eta in (0.0, 0.5):
        got = process.x0_eps(guidance.projected(den, process, 3.0, eta)(x, t, cond), x, t)[0]
        np.testing.assert_allclose(got, x_c + 2.0 * eta * delta, atol=1e-4)
    capped = guidance.projected(den, process, 3.0, 1.0, threshold=0.1)(x, t, cond)
    step = process.x0_eps(capped, x, t)[0] - x_c
    assert np.all(np.abs(step) <= 2.0 * 0.1 + 1e-5) and np.abs(step).max() > 0.19


def test_apg_settings_are_checked():
    from difflab.sampling import guides
    from tests.helpers import tiny_config

    config = tiny_config()
    with pytest.raises(ValueError, match="APG .* give --cfg_scale and --apg_parallel"):
        guides.check(config, guides.Guide(apg_parallel=0.0), "euler", None, None)
    with pytest.raises(ValueError, match="APG .* give --cfg_scale and --apg_parallel"):
        guides.check(config, guides.Guide(apg_threshold=1.0), "euler", None, 2.0)


def test_momentum_runs_the_sum_of_updates_over_the_sampler_calls():
    """With momentum beta, Euler through APG (parallel 1) equals a hand-written loop that keeps
    D_k = Delta_k + beta D_{k-1} and steps with x_hat = x_hat_c + (w - 1) D_k; it differs from
    APG without momentum, and samplers that cannot thread the memory say so."""
    process, w, beta, steps = flow.FlowMatching(), 3.0, -0.5, 12
    den = conditional(process)
    cond = jnp.arange(64) % 3
    grid = samplers.grid("euler", process, steps)
    x0 = process.prior(jax.random.key(1), (64, 1), grid[0])

    def by_hand(x):
        running = jnp.zeros_like(x)
        for k in range(steps):
            t = jnp.full(64, grid[k])
            x_c = process.x0_eps(den(x, t, cond), x, t)[0]
            x_u = process.x0_eps(den(x, t, jnp.full(64, NULL_LABEL)), x, t)[0]
            running = (x_c - x_u) + beta * running
            pred = process.pred_from_x0(x_c + (w - 1.0) * running, x, t)
            x = x - (grid[k] - grid[k + 1]) * process.velocity(pred, x, t)
        return x

    step = samplers.solvers.Step(samplers.solvers.euler_move, nfe=1)
    walk = lambda d: samplers.solvers.walk(  # noqa: E731
        step, jax.random.key(2), d, process, x0, cond, grid
    )[0]
    apg = guidance.projected(den, process, w, parallel=1.0, momentum=beta)
    np.testing.assert_allclose(walk(apg), by_hand(x0), rtol=0, atol=2e-4)
    plain = walk(guidance.projected(den, process, w, parallel=1.0))
    assert np.abs(np.asarray(walk(apg) - plain)).max() > 0.05
    with pytest.raises(ValueError, match="one network call per step"):
        samplers.get("flow", "heun")(jax.random.key(0), apg, process, (8, 1), cond[:8], grid)
    with pytest.raises(ValueError, match="remembers across calls"):
        apg(x0, jnp.full(64, 0.5), cond)

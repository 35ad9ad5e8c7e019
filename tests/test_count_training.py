"""Count flow matching trains: the rate network learns the exact marginal rates of a known law
(docs/math.md C5, second part), and a short run of the trainer on simulated cells approaches the
data."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from difflab import models
from difflab.configs import counts_cells
from difflab.models.counts import CountFlow
from difflab.models.nets.counts import CountNet
from difflab.sampling.evaluate import evaluate
from difflab.training.loop import train

W = jnp.array([1.0, 2.0, 0.5])
R, BETA = 2.0, 0.5


def shared_gamma_nb(rng, shape):
    """x_d | L ~ Poisson(w_d L), L ~ Gamma(r, rate beta); numpy draws (no program to compile)."""
    lam = rng.gamma(R, 1 / BETA, (*shape, 1))
    return rng.poisson(np.asarray(W) * lam).astype(np.int32)


def exact_birth(x, t):
    return W * (R + jnp.sum(x, -1, keepdims=True)) / (BETA + (1.0 - t[:, None]) * W.sum())


# relative RMSE 0.044-0.051 over three seeds (0.05-0.18 after 300-1500 steps at a constant 3e-3)
STEPS = 400


@pytest.mark.slow
def test_rate_network_learns_the_exact_marginal_rates():
    process = CountFlow(source="zeros")
    graphdef, params = models.split(CountNet(3, 64, 2, rngs=nnx.Rngs(0)))
    opt = optax.adam(optax.cosine_decay_schedule(1e-2, STEPS))  # the decay: a steady end
    state = (params, opt.init(params))

    @jax.jit
    def step(state, key, x):
        params, opt_state = state
        loss_fn = lambda p: process.loss(models.denoiser(graphdef, p), key, {"x": x})[0]
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), loss

    @jax.jit  # one program: op by op, the evaluation compiled ~90 primitives (10 s)
    def errors(params, x0):
        """Relative RMSE of the birth rates on states the path visits (x_t ~ bridge from x_0 at
        t in (0.05, 0.95)), and the mean death rate relative to the mean birth rate."""
        k2, k3 = jax.random.split(jax.random.key(10_000))
        t = jax.random.uniform(k2, (4000,), minval=0.05, maxval=0.95)
        xt = process.corrupt(k3, x0, t)
        birth, death = process.rates(models.denoiser(graphdef, params)(xt, t), xt)
        exact = exact_birth(xt, t)
        rmse = jnp.sqrt(jnp.mean((birth - exact) ** 2)) / jnp.sqrt(jnp.mean(exact**2))
        return rmse, jnp.mean(death) / jnp.mean(exact)

    rng = np.random.default_rng(0)
    data = shared_gamma_nb(rng, (STEPS, 512))
    for i in range(STEPS):
        state, _ = step(state, jax.random.key(i), data[i])
    rmse, deaths = map(float, errors(state[0], shared_gamma_nb(rng, (4000,))))
    assert rmse < 0.1, rmse
    assert deaths < 0.05, deaths  # no deaths on this path


@pytest.mark.optimized
@pytest.mark.slow
def test_short_count_run_on_cells_approaches_the_data(tmp_path):
    c = counts_cells.get_config()
    c.data.dim = 20
    c.model.width = 64
    c.model.depth = 2
    c.train.steps = 600
    c.train.batch_size = 128
    c.train.steps_per_call = 10
    c.train.log_every = 100
    c.train.eval_every = 600
    c.train.save_every = 600
    c.train.ema_decay = 0.99
    c.eval.num_samples = 500
    c.eval.steps = 50
    m = train(c, str(tmp_path), evaluate=evaluate)
    # measured after 600 steps over 10 sampling keys and two initialisations: mean_error
    # 0.15-0.21 (data vs data 0.044; the untrained network and the Poisson(1) source: 3.25 and
    # 3.29), zero_fraction_error 0.015 (data 0.004; untrained 0.34). The bound of 3x data + 0.05
    # (0.18) that stood here sat inside that spread and failed on a change of sampling key.
    assert m["mean_error"] < 7 * m["mean_error_data"]
    assert m["zero_fraction_error"] < 3 * m["zero_fraction_error_data"] + 0.03

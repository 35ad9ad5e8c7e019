"""Particle sampling of a run through `sampling.draw.draw` (what sample.py --steer runs): each
method builds, counts its network passes, and refuses settings it cannot take, naming them."""

import dataclasses

import numpy as np
import pytest

from difflab.sampling.draw import draw
from difflab.sampling.particles import Steering
from difflab.training.components import build
from tests.helpers import tiny_config
from tests.test_guidance import conditional_components

REWARD = Steering("reward", reward="target", reward_arg="0.5,0.5", scale=2.0)


@pytest.fixture(scope="module")
def comp():
    return build(tiny_config())


def test_each_method_draws_and_counts_network_passes(comp, tmp_path):
    params = comp.init_params
    x, info = draw(comp, params, "ddpm", 4, 16, 0, steer=REWARD)
    assert x.shape == (16, 2) and np.isfinite(x).all() and int(info["nfe"]) == 4
    assert info["ess"].shape == (4,) and np.isfinite(info["log_z"])
    x, info = draw(comp, params, "em", 4, 16, 0, steer=Steering("anneal", beta=2.0))
    assert np.isfinite(x).all() and int(info["nfe"]) == 4
    product = Steering("product", weights=(1.0, 1.0))
    _, info = draw(comp, params, "em", 4, 16, 0, steer=product, experts=[(comp, params)])
    assert int(info["nfe"]) == 8 and int(info["denoiser_calls"]) == 4
    cond = conditional_components(tmp_path)
    cfg = Steering("cfg", cfg_scale=2.0, label=1)
    _, info = draw(cond, cond.init_params, "em", 4, 16, 0, steer=cfg)
    assert int(info["nfe"]) == 8
    # each class's population: the label is an argument of one compiled sampler
    compiled = len(cond.compiled)
    x1, _ = draw(cond, cond.init_params, "em", 4, 16, 0, steer=cfg)
    x2, _ = draw(cond, cond.init_params, "em", 4, 16, 0, steer=dataclasses.replace(cfg, label=2))
    assert len(cond.compiled) == compiled and not np.allclose(x1, x2)
    assert all(fn._cache_size() == 1 for fn in cond.compiled.values())


@pytest.mark.parametrize(
    "sampler,steer,message",
    [
        ("heun", REWARD, "SMC needs a stochastic step"),
        ("ddim", REWARD, "with eta=None is not one"),
        ("ddpm", Steering("anneal"), "use --sampler=em"),
        ("ancestral", Steering("anneal"), "not available for the .flow. family"),
        ("em", Steering("product", weights=(1.0,)), "needs 2 exponents"),
        ("ddpm", Steering("reward"), "needs --reward"),
        ("ddpm", Steering("reward", reward="token"), "reward 'token' scores tokens"),
        ("ddpm", Steering("reward", reward="target", reward_arg="1"), "must be a point of 2"),
        ("em", Steering("cfg", cfg_scale=2.0), "class-conditional run"),
        ("ddpm", Steering("reward", reward="target", reward_arg="0,0", scheme="gready"), "gready"),
    ],
)
def test_settings_the_run_cannot_take_are_named(comp, sampler, steer, message):
    experts = [(comp, comp.init_params)] if steer.method == "product" else []  # needs 2 weights
    with pytest.raises(ValueError, match=message):
        draw(comp, comp.init_params, sampler, 4, 16, 0, steer=steer, experts=experts)


def test_conditional_runs_need_one_label_for_the_population(tmp_path):
    cond = conditional_components(tmp_path)
    with pytest.raises(ValueError, match="give --label"):
        draw(cond, cond.init_params, "ddpm", 4, 16, 0, steer=REWARD)


def test_masked_runs_take_annealing():
    """The masked family's correctors move with the mixed ancestral step."""
    from tests.test_configs import CONFIGS, shrunk

    comp = build(shrunk(next(p for p in CONFIGS if p.endswith("masked_markov.py"))))
    params = comp.init_params
    x, info = draw(comp, params, "ancestral", 4, 16, 0, steer=Steering("anneal", beta=2.0))
    assert x.shape == (16, *comp.dataset.shape) and int(info["nfe"]) == 4
    assert (x < comp.dataset.vocab_size).all()  # every position unmasked
    # a product of the run's model alone (one exponent, no experts) is annealing: same draw
    alone = Steering("product", weights=(2.0,))
    y, _ = draw(comp, params, "ancestral", 4, 16, 0, steer=alone)
    np.testing.assert_array_equal(y, x)


def test_named_rewards_score_what_they_name():
    """class: the digit classifier's log p(k | x) is highest on images of k; token counts the
    token; total sums counts."""
    import jax.numpy as jnp

    from difflab.data import digits, rewards

    data = digits(0, "test")
    r = np.asarray(rewards.build("class", "3", data)(jnp.asarray(data.x)))
    assert (r <= 0).all() and r[data.label == 3].mean() > r[data.label != 3].mean() + 3
    text = type("T", (), {"kind": "tokens", "vocab": ("a", "b"), "vocab_size": 2, "name": "t"})
    np.testing.assert_array_equal(rewards.build("token", "b", text)(jnp.array([[0, 1, 1]])), [2])
    counts = type("C", (), {"kind": "counts", "name": "c"})
    np.testing.assert_array_equal(
        rewards.build("total", "", counts)(jnp.array([[1, 2], [0, 5]])), [3, 5]
    )


def test_the_cfg_target_weights_the_conditional_model_by_w(tmp_path):
    """--steer=cfg targets p(x | c)^w p(x)^(1 - w): the guided score of what the particles are
    given is w s(x | c) + (1 - w) s(x), not the exponents swapped (guidance away from c)."""
    import jax.numpy as jnp

    from difflab.models.mixing import NULL_LABEL
    from difflab.samplers import fkc
    from difflab.sampling import particles

    cond = conditional_components(tmp_path)
    setting = Steering("cfg", cfg_scale=3.0, label=1)
    den = cond.denoiser(cond.init_params)
    _, stacked = particles.sampler_and_denoiser(cond, setting, "em", None, True, den)
    betas = particles.betas(setting, 0)
    x = jnp.linspace(-2.0, 2.0, 10).reshape(5, 2)
    t, label = jnp.full((5,), 0.5), jnp.full((5,), 1)
    score = lambda pred: cond.process.score(pred, x, t)
    preds = stacked(x, t, label)
    guided = fkc.guided_score(betas, jnp.stack([score(preds[:, i]) for i in range(2)], 1))
    want = 3.0 * score(den(x, t, label)) - 2.0 * score(den(x, t, jnp.full((5,), NULL_LABEL)))
    np.testing.assert_allclose(guided, want, rtol=1e-4, atol=1e-4)


def test_steer_takes_the_names_the_cli_takes(comp):
    """draw / Run.sample accept steer='anneal' (the method's defaults, as sample.py --steer
    gives them) with the same samples as Steering('anneal'); other values are named."""
    x, _ = draw(comp, comp.init_params, "em", 4, 16, 0, steer="anneal")
    y, _ = draw(comp, comp.init_params, "em", 4, 16, 0, steer=Steering("anneal"))
    np.testing.assert_array_equal(x, y)
    for bad in ("annealing", 2.0):
        with pytest.raises(ValueError, match=r"steer must be a sampling.particles.Steering or one"):
            draw(comp, comp.init_params, "em", 4, 16, 0, steer=bad)

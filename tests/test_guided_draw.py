"""Guidance through `sampling.draw.draw` (what sample.py and Run.sample use): a classifier
run guides a flow run, SVDD and reward-gradient guidance take named rewards, observations
condition every sample, NFE counts every network and classifier pass, and settings a run cannot
take are clear errors."""

import dataclasses

import numpy as np
import pytest

from difflab.configs import classifier_digits
from difflab.configs.common import classifier_process
from difflab.sampling import guides
from difflab.sampling.draw import check_request, draw
from difflab.sampling.guides import Guide, guided_denoiser
from difflab.training.components import build
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny unconditional flow on labelled 2-D points and a classifier under its process."""
    rng = np.random.default_rng(0)
    path = str(tmp_path_factory.mktemp("data") / "points.npz")
    labels = np.arange(64) % 4
    np.savez(path, x=rng.normal(size=(64, 2)).astype(np.float32) + labels[:, None], label=labels)
    flow = tiny_config()
    flow.data.name, flow.data.path = "npz", path
    clf = classifier_digits.get_config()
    clf.data.name, clf.data.path = "npz", path
    clf.model.width, clf.model.depth = 16, 1
    clf.process = classifier_process(flow.process)
    return build(flow), build(clf)


def test_classifier_guidance_counts_classifier_passes(runs):
    flow, clf = runs
    guide = Guide(classifier_scale=2.0)
    x, info = draw(
        flow, flow.init_params, "euler", 4, 8, 0, guide=guide, classifier=(clf, clf.init_params)
    )
    assert x.shape == (8, 2) and np.isfinite(x).all()
    assert int(info["nfe"]) == 4 and int(info["classifier_calls"]) == 4
    plain, _ = draw(flow, flow.init_params, "euler", 4, 8, 0)
    assert np.abs(x - plain).max() > 1e-4  # the gradient moved the samples


def test_svdd_and_reward_gradient_through_draw(runs):
    flow, _ = runs
    guide = Guide(reward="target", reward_arg="3,3", svdd=4)
    x, info = draw(flow, flow.init_params, "ddpm", 5, 6, 0, guide=guide)
    assert x.shape == (6, 2) and int(info["nfe"]) == 5 + 4 * 4
    guide = Guide(reward="target", reward_arg="3,3", reward_scale=1.0)
    x, info = draw(flow, flow.init_params, "euler", 5, 6, 0, guide=guide)
    assert np.isfinite(x).all() and int(info["nfe"]) == 5


def test_inpainting_rows_condition_each_sample(runs):
    flow, _ = runs
    values = np.array([[1.5, 0.0], [-2.0, 0.0]], np.float32)
    known = np.array([[True, False], [True, False]])
    x, _ = draw(flow, flow.init_params, "ddpm", 6, 5, 0, observed=(values, known), batch_size=2)
    np.testing.assert_allclose(x[:, 0], [1.5, -2.0, 1.5, -2.0, 1.5], atol=1e-5)


def test_guidance_settings_the_run_cannot_take_are_errors(runs):
    flow, clf = runs
    with pytest.raises(ValueError, match="--classifier_scale needs --classifier"):
        draw(flow, flow.init_params, "euler", 4, 8, 0, guide=Guide(classifier_scale=1.0))
    with pytest.raises(ValueError, match="--svdd needs --reward"):
        draw(flow, flow.init_params, "ddpm", 4, 8, 0, guide=Guide(svdd=4))
    with pytest.raises(ValueError, match="stochastic step"):
        draw(flow, flow.init_params, "euler", 4, 8, 0, guide=Guide(svdd=4, reward="target"))
    with pytest.raises(ValueError, match="--cfg_interval sets where --cfg_scale applies"):
        draw(flow, flow.init_params, "euler", 4, 8, 0, guide=Guide(cfg_interval=(0.2, 0.8)))
    with pytest.raises(ValueError, match=r"--reward_guidance differentiates.*got 'total'"):
        draw(flow, flow.init_params, "euler", 4, 8, 0, guide=Guide(reward="total", reward_scale=1))
    with pytest.raises(ValueError, match="is a classifier run: it is not sampled"):
        check_request(clf.config, None, None, None, None, False, None)
    other = tiny_config()
    other.process.path = "cosine"
    with pytest.raises(ValueError, match="was trained under a flow process"):
        draw(
            build(other),
            flow.init_params,
            "euler",
            4,
            8,
            0,
            guide=Guide(classifier_scale=1),
            classifier=(clf, clf.init_params),
        )


def test_masked_classifier_guidance_through_draw():
    """A classifier run under the masked process guides a masked run on the digit tokens:
    exactly (L V = 64 x 17 classifier passes per step) or to first order (one)."""
    from difflab.configs import classifier_digits_tokens, masked_digits

    model = masked_digits.get_config()
    model.model.width, model.model.depth = 16, 1
    clf = classifier_digits_tokens.get_config()
    clf.model.width, clf.model.depth = 16, 1
    comp, head = build(model), build(clf)
    guide = Guide(classifier_scale=1.0, classifier_exact=False)
    helper = (head, head.init_params)
    x, info = draw(comp, comp.init_params, "ancestral", 2, 2, 0, guide=guide, classifier=helper)
    assert x.shape == (2, 64) and (x < 17).all()
    assert int(info["classifier_calls"]) == int(info["denoiser_calls"])
    # under prompt guidance the guided denoiser (classifier included) runs on the doubled batch
    prompted = dataclasses.replace(guide, prompt_scale=1.0)
    observed = (np.zeros((1, 64), np.int32), np.arange(64)[None] < 8)
    _, info = draw(
        comp,
        comp.init_params,
        "ancestral",
        2,
        2,
        0,
        guide=prompted,
        classifier=helper,
        observed=observed,
    )
    assert int(info["nfe"]) == 2 * int(info["denoiser_calls"])
    assert int(info["classifier_calls"]) == 2 * int(info["denoiser_calls"])
    # the exact tilted denoiser's passes (it is sampled against the Markov oracle in
    # tests/test_guidance.py)
    den = comp.denoiser(comp.init_params)
    exact = guided_denoiser(comp, Guide(classifier_scale=1.0), den, None, helper)
    assert exact.guidance_calls == 64 * 17


def test_temperature_and_top_p_shape_masked_runs_only(runs):
    """--temperature / --top_p reach the masked denoiser through the guide (and the classifier
    passes it counts), and are refused on other families."""
    from difflab.configs import masked_digits

    flow, _ = runs
    with pytest.raises(ValueError, match="--temperature and --top_p reshape the token logits"):
        draw(flow, flow.init_params, "euler", 4, 8, 0, guide=Guide(temperature=0.5))
    model = masked_digits.get_config()
    model.model.width, model.model.depth = 16, 1
    comp = build(model)
    den = comp.denoiser(comp.init_params)
    shaped = guided_denoiser(comp, Guide(temperature=0.5, top_p=0.9), den, None)
    z = np.full((2, 64), comp.process.mask_id, np.int32)
    t, cond = np.full(2, 0.5, np.float32), np.zeros(2, np.int32)
    plain, sharp = (
        comp.process.log_probs(den(z, t, cond), z),
        comp.process.log_probs(shaped(z, t, cond), z),
    )
    assert not np.allclose(plain, sharp)
    x, _ = draw(comp, comp.init_params, "remdm_cap", 3, 2, 0, guide=Guide(temperature=0.5))
    assert x.shape == (2, 64) and (x < 17).all()


def test_autoguidance_through_draw(runs):
    """A weak model (here: other parameters of the same network) guides the run; with the run's
    own parameters as the weak model the samples are the plain ones; two passes per step."""
    import jax

    flow, _ = runs
    other = jax.tree.map(lambda p: 0.5 * p, flow.init_params)
    guide = Guide(autoguide_scale=2.0)
    plain, _ = draw(flow, flow.init_params, "euler", 4, 8, 0)
    same, info = draw(
        flow, flow.init_params, "euler", 4, 8, 0, guide=guide, weak=(flow, flow.init_params)
    )
    np.testing.assert_allclose(same, plain, rtol=0, atol=1e-6)
    assert int(info["nfe"]) == 8 and int(info["denoiser_calls"]) == 4
    guided, _ = draw(flow, flow.init_params, "euler", 4, 8, 0, guide=guide, weak=(flow, other))
    assert np.abs(guided - plain).max() > 1e-3
    with pytest.raises(ValueError, match="autoguidance needs both the weak model"):
        draw(flow, flow.init_params, "euler", 4, 8, 0, guide=guide)
    with pytest.raises(ValueError, match="--autoguide and --cfg_scale exclude each other"):
        guides.check(flow.config, guide, "euler", None, 2.0)


def test_a_gaussian_sampler_walks_the_grid_of_the_request(runs):
    flow, _ = runs
    plain, _ = draw(flow, flow.init_params, "dpmpp_2m", 4, 8, 0)
    other, info = draw(flow, flow.init_params, "dpmpp_2m", 4, 8, 0, grid="logsnr")
    assert int(info["nfe"]) == 4 and np.abs(other - plain).max() > 1e-4
    with pytest.raises(ValueError, match="grid='logsnr' applies to the Gaussian samplers"):
        draw(flow, flow.init_params, "adaptive", None, 8, 0, grid="logsnr")


def test_uniform_classifier_guidance_through_draw():
    """A classifier run under uniform noise guides a uniform-state run on the digit tokens: the
    sampler's step is tilted (64 x 17 classifier passes per call, counted), every token stays in
    range, and the tilt changes the samples (against the exact oracle in tests/test_uniform.py)."""
    from difflab.configs import classifier_digits_uniform, uniform_digits

    model = uniform_digits.get_config()
    model.model.width, model.model.depth = 16, 1
    clf = classifier_digits_uniform.get_config()
    clf.model.width, clf.model.depth = 16, 1
    comp, head = build(model), build(clf)
    helper = (head, head.init_params)
    guide = Guide(classifier_scale=4.0, unconditional=True)
    x, info = draw(comp, comp.init_params, "uniform_ancestral", 2, 2, 0, guide=guide,
                   classifier=helper)  # fmt: skip
    assert x.shape == (2, 64) and (x >= 0).all() and (x < 17).all()
    assert int(info["classifier_calls"]) == 64 * 17 * int(info["denoiser_calls"])
    plain, _ = draw(comp, comp.init_params, "uniform_ancestral", 2, 2, 0,
                    guide=Guide(unconditional=True))  # fmt: skip
    assert (np.asarray(plain) != np.asarray(x)).any()

"""Classifier-free guidance as one batched network call, its NFE, and the compiled-sampler cache
of `training.sampling.draw`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflab.samplers.guidance import classifier_free, network_passes
from difflab.training.components import build
from difflab.training.sampling import draw
from tests.helpers import tiny_config


def test_guidance_is_one_call_on_the_doubled_batch():
    """MATH.md §6.1: one network call on [x; x] with labels [c; null]."""
    calls = []

    def net(x, t, cond=None, h=None):
        calls.append((x.shape[0], t.shape, np.asarray(cond).tolist()))
        return x + jnp.where(cond >= 0, cond, 10)[:, None].astype(jnp.float32)

    x, t, cond = jnp.zeros((3, 2)), 0.5, jnp.array([0, 1, 2])
    out = classifier_free(net, 2.0)(x, t, cond)
    assert calls == [(6, (6,), [0, 1, 2, -1, -1, -1])]
    np.testing.assert_allclose(out, 10 + 2.0 * (np.array([0, 1, 2])[:, None] - 10.0) + 0 * x)
    assert network_passes(classifier_free(net, 2.0)) == 2 and network_passes(net) == 1


def conditional_components(tmp_path, label_dropout=0.1):
    """A tiny class-conditional flow on labelled 2-D points from an .npz."""
    rng = np.random.default_rng(0)
    path = str(tmp_path / "points.npz")
    np.savez(path, x=rng.normal(size=(64, 2)).astype(np.float32), label=np.arange(64) % 4)
    c = tiny_config()
    c.model.conditional = True
    c.data.name, c.data.path = "npz", path
    c.process.label_dropout = label_dropout
    return build(c)


def test_guided_nfe_counts_network_passes_and_the_compiled_sampler_is_reused(tmp_path):
    comp = conditional_components(tmp_path)
    _, plain = draw(comp, comp.init_params, "heun", 4, 8, 0)
    _, guided = draw(comp, comp.init_params, "heun", 4, 8, 0, cfg_scale=2.0)
    assert int(plain["nfe"]) == 8 and int(guided["nfe"]) == 16
    assert int(guided["denoiser_calls"]) == 8
    # new parameters and seed: the same compiled sampler, no new trace
    params = jax.tree.map(lambda p: p + 0.01, comp.init_params)
    draw(comp, params, "heun", 4, 8, 1, cfg_scale=2.0)
    assert len(comp.compiled) == 2
    assert all(fn._cache_size() == 1 for fn in comp.compiled.values())


def test_guidance_on_a_run_without_label_dropout_is_refused(tmp_path):
    comp = conditional_components(tmp_path, label_dropout=0.0)
    with pytest.raises(ValueError, match=r"config.process.label_dropout=0.0"):
        draw(comp, comp.init_params, "heun", 4, 8, 0, cfg_scale=2.0)

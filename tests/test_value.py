"""SVDD-MC's value networks (models.value): the loss is minimised by E[r(x_0) | x_t] (checked
against its closed form for Gaussian data; training itself runs in the every-config test), and a
value run values SVDD's candidates through `draw`."""

import jax
import numpy as np
import pytest

from difflab.configs import value_checkerboard
from difflab.configs.common import flow_process, value_process
from difflab.sampling.draw import draw
from difflab.sampling.guides import Guide
from difflab.training.components import build
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def gaussian_npz(tmp_path_factory) -> str:
    """4096 draws of N(0, 1) as an npz data file (in pytest's temporary folder)."""
    path = str(tmp_path_factory.mktemp("value") / "normal.npz")
    np.savez(path, x=np.random.default_rng(0).normal(size=(4096, 1)).astype(np.float32))
    return path


def test_the_exact_posterior_expected_reward_minimises_the_value_loss(gaussian_npz):
    """Data N(0, 1), linear flow path, r(x) = -x^2 / 2: E[r | x_t] = -(m^2 + v) / 2 with
    m = alpha x_t / (alpha^2 + sigma^2), v = sigma^2 / (alpha^2 + sigma^2) minimises the
    implemented loss (x_t from the process's own corruption and time law): shifted, scaled or
    time-reversed versions of it score worse on the same 2^16 draws."""
    process = build(gaussian_config(gaussian_npz)).process

    def exact(x, t, cond=None, shift=0.0, scale=1.0, flip=False):
        t = 1.0 - t if flip else t
        a, s = (1.0 - t)[:, None], t[:, None]
        m, v = a * x / (a**2 + s**2), s**2 / (a**2 + s**2)
        return scale * (-(m**2 + v) / 2) + shift

    batch = {"x": jax.random.normal(jax.random.key(0), (1 << 16, 1))}
    loss = lambda **kw: float(process.loss(lambda x, t, c=None: exact(x, t, **kw), KEY, batch)[0])
    best = loss()
    for kw in ({"shift": 0.05}, {"shift": -0.05}, {"scale": 0.9}, {"scale": 1.1}, {"flip": True}):
        assert loss(**kw) > best + 1e-3, kw


KEY = jax.random.key(1)


def gaussian_config(path):
    c = value_checkerboard.get_config()
    c.data.name = "npz"
    c.data.path = path
    c.process = value_process(flow_process(), "target", "0")
    return c


def test_svdd_mc_values_candidates_through_draw():
    """A value run's network values the candidates: no extra denoiser pass (nfe = steps),
    value_calls = M K (the network values the last step's candidates too); a value run of
    another process is refused."""
    flow = tiny_config()
    value = value_checkerboard.get_config()
    value.model.width, value.model.depth = 16, 1
    flow_comp, value_comp = build(flow), build(value)
    x, info = draw(
        flow_comp,
        flow_comp.init_params,
        "ddpm",
        5,
        6,
        0,
        guide=Guide(svdd=4),
        value=(value_comp, value_comp.init_params),
    )
    assert x.shape == (6, 2) and int(info["nfe"]) == 5 and int(info["value_calls"]) == 4 * 5
    with pytest.raises(ValueError, match="needs --reward .* or --value"):
        draw(flow_comp, flow_comp.init_params, "ddpm", 5, 6, 0, guide=Guide(svdd=4))
    other = tiny_config()
    other.process.path = "cosine"
    with pytest.raises(ValueError, match="was trained under a flow process"):
        draw(
            build(other),
            flow_comp.init_params,
            "ddpm",
            5,
            6,
            0,
            guide=Guide(svdd=4),
            value=(value_comp, value_comp.init_params),
        )

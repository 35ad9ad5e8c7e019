"""Trainer: resume equivalence, loss goes down, multi-device and multi-process equivalence."""

import json
import os

import jax
import numpy as np
import pytest

from difflab.configs.common import diffusion_process
from difflab.training.loop import train
from difflab.training.run import load_state
from tests.helpers import (
    ROOT,
    cpu_devices_env,
    overrides,
    run_train,
    tiny_config,
)


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_equals_uninterrupted(tmp_path):
    """2N steps == N steps, stop, resume, N more: params, EMA, optimizer state identical."""
    c = tiny_config(steps=40, steps_per_call=5, evaluate=False)
    c.train.save_every = 10
    assert train(c, str(tmp_path / "full")) == {}  # eval_every = 0: no evaluation at all
    train(c, str(tmp_path / "split"), stop_after=20)
    _, _, half, step = load_state(str(tmp_path / "split"))
    assert step == 20 and int(half["step"]) == 20
    train(c, str(tmp_path / "split"))
    _, _, a, _ = load_state(str(tmp_path / "full"))
    _, _, b, _ = load_state(str(tmp_path / "split"))
    assert int(a["step"]) == int(b["step"]) == 40
    assert_trees_equal(a, b)
    # negative control: the state half-way differs from the end state
    assert not np.array_equal(jax.tree.leaves(half["params"])[0], jax.tree.leaves(a["params"])[0])
    # the metrics log holds each step once, despite the restart
    steps = [
        r["step"]
        for r in map(json.loads, open(tmp_path / "split" / "metrics.jsonl"))
        if "loss" in r
    ]
    assert steps == sorted(set(steps)) and steps[-1] == 40
    assert not any(name.startswith("samples") for name in os.listdir(tmp_path / "full"))


@pytest.mark.optimized
@pytest.mark.parametrize("family", ["flow", "diffusion"])
def test_training_lowers_loss_and_learns_the_mixture(tmp_path, family):
    c = tiny_config(steps=2000, steps_per_call=50, batch_size=256)
    if family == "diffusion":
        c.process = diffusion_process()
        c.eval.sampler = "ddim"
    c.model.width, c.model.depth = 64, 2
    c.train.ema_decay = 0.99
    c.eval.num_samples, c.eval.steps = 2000, 20
    final = train(c, str(tmp_path / "run"))
    losses = [
        r["loss"] for r in map(json.loads, open(tmp_path / "run" / "metrics.jsonl")) if "loss" in r
    ]
    assert losses[-1] < 0.8 * losses[0]
    # 8 well-separated modes: untrained samples sit near the origin, SW ~ 3
    assert final["sliced_wasserstein"] < 3 * final["sliced_wasserstein_data"] + 0.2


def loss_curve(workdir):
    return np.array(
        [
            r["loss"]
            for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))
            if "loss" in r
        ]
    )


@pytest.mark.slow
def test_eight_devices_match_one_device(tmp_path):
    """200 steps, global batch 64: the loss curve on 8 virtual CPU devices equals 1 device's."""
    c = tiny_config(steps=200, steps_per_call=10, batch_size=64, evaluate=False)
    curves = {}
    for n in (1, 8):
        r = run_train(
            [
                "--config",
                os.path.join(ROOT, "configs/flow_gmm.py"),
                *overrides(c),
                f"--workdir={tmp_path / str(n)}",
            ],
            cpu_devices_env(n),
        )
        assert r.returncode == 0, r.stderr[-3000:]
        curves[n] = loss_curve(tmp_path / str(n))
    assert len(curves[1]) == 20
    np.testing.assert_allclose(curves[8], curves[1], rtol=2e-4)
    assert curves[1][-1] < curves[1][0]


def test_bfloat16_compute_trains_with_float32_state(tmp_path):
    c = tiny_config(steps=20, steps_per_call=10)
    c.model.dtype = "bfloat16"
    train(c, str(tmp_path / "bf16"))
    _, _, state, _ = load_state(str(tmp_path / "bf16"))
    leaves = jax.tree.leaves(state["params"]) + jax.tree.leaves(state["opt_state"])
    assert all(x.dtype in (np.float32, np.int32) for x in leaves)
    losses = loss_curve(tmp_path / "bf16")
    assert np.isfinite(losses).all() and losses[-1] < losses[0]

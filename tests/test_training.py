"""Trainer: resume equivalence, loss goes down, multi-device and multi-process equivalence."""

import json
import os

import jax
import numpy as np
import pytest

from difflab.configs.common import diffusion_process
from difflab.sampling.evaluate import evaluate
from difflab.sampling.runs import load_state
from difflab.training.loop import train
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
    final = train(c, str(tmp_path / "run"), evaluate=evaluate)
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


def test_ema_update_is_decay_times_ema_plus_the_rest_times_params():
    """One update with decay d from ema = p0 towards p1 gives d p0 + (1 - d) p1."""
    from difflab.training.state import ema_update

    p0, p1 = {"w": np.array([1.0, -2.0])}, {"w": np.array([3.0, 4.0])}
    out = ema_update(p0, p1, 0.9)
    np.testing.assert_allclose(out["w"], 0.9 * p0["w"] + 0.1 * p1["w"], rtol=1e-6)


def test_ema_of_a_short_run_follows_its_recursion_and_lags_the_parameters():
    """Four jitted training steps: ema_k = d ema_{k-1} + (1 - d) params_k exactly as the step
    computes it, so the EMA stays near the initial parameters while they move away."""
    from difflab.training import components
    from difflab.training.state import init_state, make_optimizer
    from difflab.training.step import train_step

    c = tiny_config(steps=4)
    c.optim.lr, c.optim.warmup_steps, decay = 3e-2, 0, 0.9
    comp = components.build(c)
    optimizer = make_optimizer(c.optim, 4)
    state = init_state(comp.init_params, optimizer)
    step = jax.jit(train_step(comp.process, comp.graphdef, optimizer, decay, jax.random.key(0)))
    start, ema = state["params"], state["params"]
    for n in range(4):
        state, _ = step(state, comp.dataset.batch(n, 0, 64, 64))
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, state["params"])
    distance = lambda a, b: float(
        sum(
            np.sum((np.asarray(x) - np.asarray(y)) ** 2)
            for x, y in zip(*map(jax.tree.leaves, (a, b)), strict=True)
        )
    )
    assert distance(state["ema_params"], ema) < 1e-10 * distance(start, state["params"])
    # it lags: nearer the start than the live parameters are (with decay and 1 - decay swapped
    # it would be nearer the live ones)
    assert distance(state["ema_params"], start) < 0.5 * distance(state["params"], start)


def test_learning_rate_warms_up_then_decays_over_the_remaining_steps():
    """Linear warmup to lr at step W, cosine to lr * min_ratio at step T: the midpoint
    (W + T) / 2 of the decay is halfway, (lr + lr * min_ratio) / 2."""
    import ml_collections

    from difflab.training.state import learning_rate

    oc = ml_collections.ConfigDict({"lr": 1e-3, "warmup_steps": 100, "min_lr_ratio": 0.1})
    schedule, total = learning_rate(oc, 1100), 1100
    np.testing.assert_allclose(float(schedule(50)), 5e-4, rtol=1e-5)
    np.testing.assert_allclose(float(schedule(100)), 1e-3, rtol=1e-5)
    np.testing.assert_allclose(float(schedule(600)), 0.5 * (1e-3 + 1e-4), rtol=1e-5)
    np.testing.assert_allclose(float(schedule(total)), 1e-4, rtol=1e-5)
    quarter = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + np.cos(np.pi * 0.25))
    np.testing.assert_allclose(float(schedule(350)), quarter, rtol=1e-5)

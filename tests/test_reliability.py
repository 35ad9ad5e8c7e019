"""Reliability: non-finite steps never reach the state, SIGTERM checkpoints and exits 0, a
workdir of another config is refused."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.helpers import ROOT, tiny_config
from training import loop
from training.loop import train
from training.run import load_state


def poisoned(step_to_poison):
    """local_batches with NaN data at one step (data loaders refuse NaN, so inject it here)."""
    original = loop.local_batches

    def batches(comp, step, steps_per_call):
        out = original(comp, step, steps_per_call)
        if step == step_to_poison:
            out = {**out, "x": np.full_like(out["x"], np.nan)}
        return out

    return batches


def test_nonfinite_stop_names_the_step(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "local_batches", poisoned(7))
    c = tiny_config(steps=20, steps_per_call=1)
    with pytest.raises(FloatingPointError, match="non-finite loss at step 7"):
        train(c, str(tmp_path / "run"))


def test_nonfinite_skip_counts_and_keeps_the_state_finite(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "local_batches", poisoned(5))
    c = tiny_config(steps=20, steps_per_call=5)
    c.train.nonfinite = "skip"
    train(c, str(tmp_path / "run"))
    _, _, state, _ = load_state(str(tmp_path / "run"))
    # the poisoned call holds steps 5..9: all five are skipped, the first is reported
    assert int(state["nonfinite_steps"]) == 5 and int(state["first_nonfinite_step"]) == 5
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["opt_state"]))


def test_workdir_of_another_config_is_refused(tmp_path):
    c = tiny_config(steps=10, steps_per_call=5)
    train(c, str(tmp_path / "run"))
    c.optim.lr = 0.5
    with pytest.raises(
        ValueError,
        match=r"holds a checkpoint of a different config "
        r"\(optim.lr: checkpoint 0.001 vs now 0.5\)",
    ):
        train(c, str(tmp_path / "run"))
    c.optim.lr = 1e-3
    c.train.log_every = 10  # logging changes are fine
    c.train.steps = 10
    train(c, str(tmp_path / "run"))


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path):
    work = tmp_path / "run"
    args = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--config.train.steps=100000",
        "--config.train.steps_per_call=50",
        "--config.train.log_every=50",
        "--config.train.save_every=50000",
        "--config.train.eval_every=50000",
        "--config.model.width=32",
        f"--workdir={work}",
    ]
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (work / "metrics.jsonl").exists():
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM received: saved a checkpoint at step" in out
    steps = sorted(int(s) for s in os.listdir(work / "checkpoints") if s.isdigit())
    assert steps and 0 < steps[-1] < 100000 and steps[-1] % 50 == 0

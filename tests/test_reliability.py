"""Reliability: non-finite steps never reach the state, SIGTERM and Ctrl-C checkpoint and exit 0,
a workdir of another config or with a trainer already on it is refused."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from difflab.sampling.runs import load_state
from difflab.training import checkpoint, loop
from difflab.training.loop import train
from tests.helpers import ROOT, cpu_devices_env, subprocess_env, tiny_config


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
    c = tiny_config(steps=20, steps_per_call=5, evaluate=False)
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
    c.train.steps_per_call, c.train.log_every = 10, 10  # refused, not mistaken for train.steps
    with pytest.raises(ValueError, match=r"train.steps_per_call: checkpoint 5 vs now 10"):
        train(c, str(tmp_path / "run"))
    c.train.steps_per_call = 5
    c.train.log_every = 10  # logging changes are fine
    train(c, str(tmp_path / "run"))
    # a finished run is extended by a larger train.steps (it was refused as another config)
    c.train.steps, c.train.eval_every, c.train.save_every = 20, 20, 20
    train(c, str(tmp_path / "run"))
    mgr = checkpoint.manager(str(tmp_path / "run"), 5, create=False)
    assert max(mgr.all_steps()) == 20
    mgr.close()


@pytest.mark.slow
def start_long_run(work):
    """train.py for 100000 steps in `work`, returned once it has logged its first steps."""
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
        env=subprocess_env({"JAX_PLATFORMS": "cpu"}),
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (work / "metrics.jsonl").exists():
        time.sleep(0.5)
    time.sleep(2)
    return proc, args


def saved_steps(work) -> list:
    return sorted(int(s) for s in os.listdir(work / "checkpoints") if s.isdigit())


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    work = tmp_path / "run"
    proc, _ = start_long_run(work)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM received: saved a checkpoint at step" in out
    steps = saved_steps(work)
    assert steps and 0 < steps[-1] < 100000 and steps[-1] % 50 == 0


def test_a_second_trainer_is_refused_and_ctrl_c_saves(tmp_path):
    """While a run trains, train.py on the same workdir ends in one line naming the holder;
    Ctrl-C (SIGINT) then saves a checkpoint and exits 0 like SIGTERM, without a traceback."""
    work = tmp_path / "run"
    proc, args = start_long_run(work)
    second = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, env=subprocess_env(), timeout=120
    )
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 1 and len(lines) == 1, second.stderr[-2000:]
    assert (
        lines[0].startswith("error: ")
        and f"is being trained by train.py pid {proc.pid}" in lines[0]
    )
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert "SIGINT received: saved a checkpoint at step" in out
    assert saved_steps(work) and 0 < saved_steps(work)[-1] < 100000


def test_corrupted_newest_checkpoint_falls_back_with_a_warning(tmp_path):
    c = tiny_config(steps=20, steps_per_call=5, evaluate=False)
    c.train.save_every = 10
    work = tmp_path / "run"
    train(c, str(work), stop_after=20)
    # garble every file of the newest checkpoint's state
    for root, _, files in os.walk(work / "checkpoints" / "20" / "state"):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    c.train.steps = 20
    with pytest.warns(UserWarning, match="checkpoint at step 20 .* is unreadable"):
        train(c, str(work))
    # it resumed from step 10 and trained to the end again
    assert sorted(int(s) for s in os.listdir(work / "checkpoints") if s.isdigit())[-1] == 20


@pytest.mark.slow
def test_restore_on_a_different_number_of_devices(tmp_path):
    """8 devices to step 20, then 1 device to 40 (and 1 -> 8) == 40 steps on 1 device."""
    from tests.helpers import overrides, run_train

    c = tiny_config(steps=40, steps_per_call=10, evaluate=False)
    c.train.save_every = 10
    args = ["--config", os.path.join(ROOT, "configs/flow_gmm.py"), *overrides(c)]
    for name, first, second in (("8to1", 8, 1), ("1to8", 1, 8)):
        work = f"--workdir={tmp_path / name}"
        r = run_train([*args, work, "--stop_after=20"], cpu_devices_env(first))
        assert r.returncode == 0, r.stderr[-2000:]
        r = run_train([*args, work], cpu_devices_env(second))
        assert r.returncode == 0, r.stderr[-2000:]
        assert "resuming" in r.stdout
    r = run_train([*args, f"--workdir={tmp_path / 'ref'}"], cpu_devices_env(1))  # uninterrupted
    assert r.returncode == 0, r.stderr[-2000:]
    _, _, ref, _ = load_state(str(tmp_path / "ref"))
    for name in ("8to1", "1to8"):
        _, _, got, _ = load_state(str(tmp_path / name))
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
            np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-6)

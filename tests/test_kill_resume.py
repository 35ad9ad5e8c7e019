"""kill -9 at several moments (mid-step, mid-save, between steps), then restart: the run resumes
from its latest complete checkpoint and ends bit-identical to an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from difflab.sampling.runs import load_state
from tests.helpers import ROOT, cpu_devices_env, overrides, subprocess_env, tiny_config

STEPS = 200  # ~2 s of training on CPU: kills land before, during and between saves
ENV = subprocess_env(cpu_devices_env(1))


def config():
    c = tiny_config(steps=STEPS, steps_per_call=10, batch_size=64, evaluate=False)
    c.train.save_every = 20  # frequent async saves: kills land during writes too
    c.train.log_every = 10
    return ["--config", os.path.join(ROOT, "configs/flow_gmm.py"), *overrides(c)]


def launch(workdir, extra=(), process_id=None):
    cmd = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        *config(),
        f"--workdir={workdir}",
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_progress(workdir, min_step, timeout=180):
    """Block until metrics.jsonl shows at least `min_step` (the run is mid-training)."""
    path = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                steps = [json.loads(line)["step"] for line in f if line.strip()]
            if steps and max(steps) >= min_step:
                return
        time.sleep(0.05)
    raise TimeoutError(f"no progress past step {min_step} in {workdir}")


def assert_same_final_state(a, b):
    _, _, sa, _ = load_state(str(a))
    _, _, sb, _ = load_state(str(b))
    assert int(sa["step"]) == int(sb["step"]) == STEPS
    for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb), strict=True):
        np.testing.assert_array_equal(x, y)


def one_step_per_record(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f if "loss" in line]
    return steps == sorted(set(steps))


@pytest.mark.slow
def test_kill_minus_nine_and_resume_is_bit_identical(tmp_path):
    ref = launch(tmp_path / "ref")
    assert ref.wait(timeout=600) == 0, ref.stdout.read()[-2000:]
    work = tmp_path / "killed"
    # kill points: soon after start, mid-run (steps are ~ms: lands mid-step or mid-save), late
    for min_step, extra_delay in ((30, 0.0), (80, 0.013), (140, 0.031)):
        proc = launch(work)
        wait_for_progress(work, min_step)
        time.sleep(extra_delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = [int(s) for s in os.listdir(work / "checkpoints") if s.isdigit()]
    assert saved and max(saved) < STEPS  # the kills interrupted the run before its end
    final = launch(work)
    out = final.communicate(timeout=600)[0]
    assert final.returncode == 0, out[-2000:]
    assert "resuming" in out
    assert_same_final_state(tmp_path / "ref", work)
    assert one_step_per_record(work)


@pytest.mark.slow
def test_two_process_run_matches_one_process_and_survives_kill_and_resume(tmp_path):
    """train.py as 2 jax.distributed processes (gloo) equals 1 process on the same global batch
    (up to the order of the gradient sum: 3% of the tolerance after 200 steps), and a pair
    killed mid-run resumes bit-identical to an uninterrupted pair."""

    def pair(workdir):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return [
            launch(
                workdir,
                [
                    f"--coordinator_address=127.0.0.1:{port}",
                    "--num_processes=2",
                    f"--process_id={i}",
                ],
            )
            for i in range(2)
        ]

    ref = [*pair(tmp_path / "ref"), launch(tmp_path / "single")]
    for p in ref:
        assert p.wait(timeout=600) == 0, p.stdout.read()[-2000:]
    _, _, multi, _ = load_state(str(tmp_path / "ref"))
    _, _, single, _ = load_state(str(tmp_path / "single"))
    for x, y in zip(jax.tree.leaves(multi), jax.tree.leaves(single), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    work = tmp_path / "killed"
    procs = pair(work)
    wait_for_progress(work, 70)
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    saved = [int(s) for s in os.listdir(work / "checkpoints") if s.isdigit()]
    assert saved and max(saved) < STEPS
    procs = pair(work)
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-2000:]
    assert any("resuming" in out for out in outs)
    assert_same_final_state(tmp_path / "ref", work)

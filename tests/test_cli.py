"""End to end: train.py writes its outputs, sample.py and load_run read them back."""

import json
import os
import re
import signal
import time

import numpy as np
import pytest

from difflab.sampling.draw import check_request
from difflab.sampling.request import Request
from difflab.sampling.runs import load_config, load_run
from tests.helpers import run_sample, run_train, start_sample


@pytest.mark.slow
def test_train_then_sample(tmp_path):
    work = tmp_path / "run"
    r = run_train(
        [
            "--config.train.steps=100",
            "--config.train.steps_per_call=50",
            "--config.train.log_every=50",
            "--config.train.eval_every=100",
            "--config.train.save_every=50",
            "--config.eval.num_samples=500",
            "--config.eval.steps=10",
            f"--workdir={work}",
        ]
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sliced_wasserstein" in r.stdout and "data vs data" in r.stdout
    for name in ("metrics.jsonl", "config.json", "loss.png", "samples_0000100.png"):
        assert (work / name).exists(), name
    assert os.listdir(work / "tensorboard")
    assert sorted(os.listdir(work / "checkpoints")) == ["100", "50"]
    records = [json.loads(line) for line in open(work / "metrics.jsonl")]
    assert {"loss", "grad_norm", "lr", "steps_per_sec"} <= set(records[0])
    assert any("sliced_wasserstein_data" in r for r in records)

    # sample.py killed with SIGKILL mid-way, then run again: it draws only the missing shards,
    # and the whole set equals the samples drawn in one piece in-process
    args = [f"--workdir={work}", "--num_samples=600", "--batch_size=5", "--sampler=euler"]
    out = work / "samples" / "euler_20steps_seed0_ckpt100"
    killed = kill_when(start_sample([*args, "--steps=20"]), lambda: len(shard_files(out)) >= 20)
    assert killed and 20 <= len(shard_files(out)) < 120 and not (out / "samples.npz").exists()
    s = run_sample([*args, "--steps=20"])
    assert s.returncode == 0, s.stderr[-3000:]
    x = np.load(out / "samples.npz")["x"]
    whole, _ = load_run(str(work)).sample("euler", steps=20, num_samples=600)
    assert x.shape == (600, 2) and np.isfinite(x).all()
    np.testing.assert_allclose(x, whole, rtol=0, atol=1e-4)
    assert (out / "samples.png").exists()
    result = json.load(open(out / "metrics.json"))
    assert result["nfe"] == 20 and result["batch_size"] == 5
    # another setting writes its own folder and records the effective eta; FK steering as well
    steer = ["--steer=reward", "--reward=target", "--reward_arg=1,-1", "--reward_scale=2"]
    s = run_sample([f"--workdir={work}", "--num_samples=50", "--sampler=em", "--steps=10", *steer])
    assert s.returncode == 0, s.stderr[-3000:]
    name = "em_10steps_eta1_reward_target1--1_x2_diff_seed0_ckpt100"
    result = json.load(open(work / "samples" / name / "metrics.json"))
    assert result["eta"] == pytest.approx(1.0) and result["steer"]["scale"] == 2.0
    assert result["nfe"] == 10 and np.isfinite(result["log_z"]) and result["min_ess"] >= 1
    assert (out / "samples.npz").exists()

    # SVDD with a named reward, on the observed x^0 = 0.5 of every sample (inpainting)
    np.savez(tmp_path / "obs.npz", x=np.array([[0.5, 0.0]]), known=np.array([[True, False]]))
    svdd = ["--sampler=ddpm", "--steps=5", "--svdd=2", "--reward=target", "--reward_arg=1,-1"]
    observed = [f"--observed={tmp_path / 'obs.npz'}", "--num_samples=20"]
    s = run_sample([f"--workdir={work}", *svdd, *observed])
    assert s.returncode == 0, s.stderr[-3000:]
    name = "ddpm_5steps_seed0_ckpt100_svdd2a0target1--1_observed-obs"
    result = json.load(open(work / "samples" / name / "metrics.json"))
    assert result["nfe"] == 5 + 2 * 4 and result["guide"]["svdd"] == 2
    # the known coordinate ends at y, up to float32 rounding of the x0 <-> prediction conversions
    x0 = np.load(work / "samples" / name / "samples.npz")["x"][:, 0]
    np.testing.assert_allclose(x0, 0.5, rtol=0, atol=1e-6)

    # an adaptive sampler is named and recorded by its tolerance, not a step count it ignores
    s = run_sample([f"--workdir={work}", "--sampler=dopri5", "--num_samples=16"])
    assert s.returncode == 0, s.stderr[-3000:]
    result = json.load(open(work / "samples" / "dopri5_rtol1e-05_seed0_ckpt100" / "metrics.json"))
    assert result["steps"] is None and result["rtol"] == 1e-5 and result["nfe"] > 6, result

    bad = run_sample([f"--workdir={work}", "--sampler=first_hitting"])
    message = "sampler 'first_hitting' is not available for the 'flow'"
    assert bad.returncode != 0 and one_line_error(bad.stderr, message), bad.stderr
    anneal = ["--steer=anneal", "--beta=2", "--sampler=em", "--eta=0.5", "--num_samples=8"]
    bad = run_sample([f"--workdir={work}", *anneal])
    message = "eta=0.5 is below the stability bound eta >= 0.7071 of the exponents [2.0]"
    assert bad.returncode != 0 and one_line_error(bad.stderr, message), bad.stderr
    # the same checks in-process (sample.py runs them on the saved config before loading)
    config, _ = load_config(str(work))
    for kwargs, message in [
        ({"float32": True}, "apply only to the samplers"),
        ({"steps": 0}, "--steps=0 and --num_samples=500 must be positive"),
        ({"num": 0}, "--steps=10 and --num_samples=0 must be positive"),
        ({"cfg_scale": 2.0}, "needs a class-conditional run"),
    ]:
        request = {"sampler": None, "steps": None, "num": None, "eta": None, "float32": False}
        with pytest.raises(ValueError, match=re.escape(message)):
            check_request(config, **{**request, "cfg_scale": None, **kwargs})

    run = load_run(str(work), step=50)
    assert run.step == 50 and run.config.name == "flow_checkerboard"
    samples, info = run.sample("heun", steps=5, num_samples=64)
    assert samples.shape == (64, 2) and int(info["nfe"]) == 10
    # the same job as a Request, and the run's eval settings for the fields left out
    again, _ = run.sample(Request(sampler="heun", steps=5, num_samples=64))
    np.testing.assert_array_equal(again, samples)
    assert run.sample(num_samples=4)[0].shape == (4, 2)  # config.eval: euler, 10 steps
    u = run.denoiser(samples, np.full(64, 0.5, np.float32), None)
    assert u.shape == (64, 2)


def shard_files(out) -> list:
    """The shards sample.py has written so far: none before it makes <out>/shards (it makes
    <out> first, and a check of <out> alone once raced it) or after it removes them."""
    try:
        return [n for n in os.listdir(out / "shards") if n.endswith(".npz")]
    except FileNotFoundError:
        return []


def kill_when(proc, ready, timeout=300) -> bool:
    """SIGKILL proc once ready() holds; False if it ended first."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    proc.kill()
    return False


def one_line_error(stderr: str, message: str) -> bool:
    """stderr is the single line `error: ...message...` (no traceback)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_expected_errors_are_one_line_and_create_nothing(tmp_path):
    missing = tmp_path / "missing"
    s = run_sample([f"--workdir={missing}"])
    assert s.returncode != 0 and one_line_error(s.stderr, "no checkpoint in"), s.stderr
    assert not missing.exists()  # reading never creates directories
    t = run_train(["--config.optim.lrr=1", f"--workdir={tmp_path / 'a'}"])
    assert t.returncode != 0, t.stderr
    assert one_line_error(t.stderr, "config.optim has no field 'lrr'; did you mean 'lr'"), t.stderr
    # the README's form, --config FILE: a misspelt field, and a misspelt file, each one line
    t = run_train(["--config", "configs/flow_checkerboard.py", "--config.train.step=5"])
    message = "config.train has no field 'step'; did you mean 'steps'"
    assert t.returncode != 0 and one_line_error(t.stderr, message), t.stderr
    t = run_train(["--config", "configs/flow_checkerbord.py"])
    message = "config file 'configs/flow_checkerbord.py' does not exist"
    assert t.returncode != 0 and one_line_error(t.stderr, message), t.stderr
    bad_data = ["--config.data.name=npz", f"--config.data.path={tmp_path / 'none.npz'}"]
    t = run_train([*bad_data, f"--workdir={tmp_path / 'b'}"])
    assert t.returncode != 0 and one_line_error(t.stderr, "does not exist"), t.stderr
    assert not (tmp_path / "b").exists()  # data checks run before the workdir is made
    t = run_train([*bad_data, f"--workdir={tmp_path / 'b'}"], {"DIFFLAB_TRACEBACK": "1"})
    assert "Traceback" in t.stderr

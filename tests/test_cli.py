"""End to end: train.py writes its outputs, sample.py and load_run read them back."""

import json
import os

import numpy as np

from tests.helpers import run_sample, run_train
from training.run import load_run


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

    s = run_sample(
        [
            f"--workdir={work}",
            "--num_samples=300",
            "--sampler=euler",
            "--steps=20",
        ]
    )
    assert s.returncode == 0, s.stderr[-3000:]
    x = np.load(work / "samples" / "samples.npz")["x"]
    assert x.shape == (300, 2) and np.isfinite(x).all()
    assert (work / "samples" / "samples.png").exists()
    assert json.load(open(work / "samples" / "metrics.json"))["nfe"] == 20

    bad = run_sample([f"--workdir={work}", "--sampler=first_hitting"])
    assert bad.returncode != 0
    assert "sampler 'first_hitting' is not available for the 'flow' family" in bad.stderr
    bad = run_sample([f"--workdir={work}", "--categorical_float32"])
    assert bad.returncode != 0 and "apply only to the samplers" in bad.stderr

    run = load_run(str(work), step=50)
    assert run.step == 50 and run.config.name == "flow_checkerboard"
    samples, info = run.sample("heun", steps=5, num=64)
    assert samples.shape == (64, 2) and int(info["nfe"]) == 10
    u = run.denoiser(samples, np.full(64, 0.5, np.float32), None)
    assert u.shape == (64, 2)


def test_sample_without_checkpoint_is_clear(tmp_path):
    s = run_sample([f"--workdir={tmp_path}"])
    assert s.returncode != 0 and "no checkpoint in" in s.stderr

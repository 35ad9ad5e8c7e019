"""Configs: every shipped config loads and builds; overrides are typed and checked."""

import glob
import json
import os
import subprocess
import sys
from unittest import mock

import pytest
from absl import flags
from ml_collections import config_flags

from difflab.training import config_checks
from tests.helpers import ROOT, run_script, tiny_config

CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if os.path.basename(p) not in ("__init__.py", "common.py")
)


def parse(config_path, *overrides):
    """Load a config file through config_flags with command-line style overrides."""
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", config_path, "", flag_values=fv, lock_config=True)
    argv = ["prog", f"--config={config_path}", *overrides]
    with mock.patch.object(sys, "argv", argv):  # config_flags reads overrides from sys.argv
        fv(argv)
        return fv.config


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_shipped_configs_load_and_pass_checks(path):
    c = parse(path)
    assert c.name == os.path.basename(path)[:-3]
    config_checks.check(c, device_count=1)


def test_override_sets_typed_value():
    c = parse(
        os.path.join(ROOT, "configs/flow_checkerboard.py"),
        "--config.optim.lr=3e-4",
        "--config.train.steps=10",
        "--config.train.log_every=10",
        "--config.train.steps_per_call=1",
    )
    assert c.optim.lr == 3e-4 and c.train.steps == 10


def test_unknown_key_is_an_error():
    with pytest.raises(Exception, match="optim.learning_rate|learning_rate"):
        parse(os.path.join(ROOT, "configs/flow_checkerboard.py"), "--config.optim.learning_rate=1")


def test_wrong_type_is_an_error():
    with pytest.raises(Exception, match="steps"):
        parse(os.path.join(ROOT, "configs/flow_checkerboard.py"), "--config.train.steps=lots")


def test_batch_not_divisible_by_devices():
    c = tiny_config(batch_size=60)
    with pytest.raises(
        ValueError,
        match=r"batch_size=60 must be a positive multiple of the 8 "
        r"devices; use e.g. --config.train.batch_size=56",
    ):
        config_checks.check(c, device_count=8)


def test_intervals_must_be_multiples_of_steps_per_call():
    c = tiny_config(steps=40, steps_per_call=5)
    c.train.eval_every = 12
    with pytest.raises(
        ValueError,
        match=r"eval_every=12 must be a positive multiple of "
        r"config.train.steps_per_call=5 \(or 0: no evaluation\)",
    ):
        config_checks.check(c, device_count=1)
    c.train.eval_every = 0  # no evaluation at all; the other intervals may not be 0
    config_checks.check(c, device_count=1)
    c.train.save_every = 0
    with pytest.raises(ValueError, match=r"save_every=0 must be a positive multiple of \S+$"):
        config_checks.check(c, device_count=1)


def test_sampler_the_family_lacks():
    c = tiny_config()
    c.eval.sampler = "first_hitting"
    with pytest.raises(
        ValueError, match="sampler 'first_hitting' is not available for the 'flow' family"
    ):
        config_checks.check(c, device_count=1)


def test_train_cli_reports_unknown_key():
    r = subprocess.run(
        [sys.executable, "train.py", "--config.optim.learnig_rate=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert "learnig_rate" in r.stderr


def shrunk(path):
    """The shipped config with a small network, one jitted call of training and a short sampling
    grid, but its own data, batch rows and sampler; finite data sets (the digits) keep their
    number of evaluation samples, which must fit the data, generated ones draw 64."""
    c = parse(path)
    if "digits" not in c.data.name:
        c.eval.num_samples = 64
    c.model.width, c.model.depth, c.model.blocks, c.model.heads = 32, 1, 1, 4
    c.model.mults = (1,)
    tc = c.train
    tc.steps = tc.log_every = tc.eval_every = tc.save_every = tc.steps_per_call = 1
    tc.batch_size = min(tc.batch_size, 64)
    c.optim.warmup_steps = 1
    if c.eval.sampler != "few_step":
        c.eval.steps = 2
    return c


HALVES = {"first_half": CONFIGS[0::2], "second_half": CONFIGS[1::2]}


@pytest.mark.slow
@pytest.mark.parametrize("half", sorted(HALVES))
def test_every_config_trains_and_evaluates(half):
    """Each shipped config trains a step and runs its final evaluation to the end (counts_digits
    once crashed there: its 1617 training rows could not give 2 x 1000 reference rows). Half of
    the configs per process, compiled by XLA's unoptimised CPU backend (one step is all
    compilation: a third faster)."""
    r = run_script("tests/scripts/train_configs.py", HALVES[half], timeout=1200)
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [x["config"] for x in results] == [os.path.basename(p) for p in HALVES[half]], r.stderr[
        -3000:
    ]
    failed = {x["config"]: x.get("error", x.get("last")) for x in results if not x["ok"]}
    assert not failed, failed

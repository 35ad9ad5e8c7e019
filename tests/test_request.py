"""A sampling job as one frozen, validated value: its fields are sample.py's flags, bad values
fail on construction with the field's name, and the folder name holds every setting."""

import dataclasses

import pytest
from absl import flags

from difflab.sampling.request import Request, define_flags, from_flags


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"steps": 0}, "steps=0 must be a positive integer"),
        ({"num_samples": -3}, "num_samples=-3 must be a positive integer"),
        ({"batch_size": 2.5}, "batch_size=2.5 must be a positive integer"),
        ({"eta": -0.1}, "eta=-0.1 must be >= 0"),
        ({"steer": "tilt"}, "steer='tilt' must be one of"),
        ({"potential": "sum"}, "potential='sum' must be one of"),
        ({"resampling": "best"}, "resampling='best' must be one of"),
        ({"cfg_interval": (0.2,)}, "cfg_interval must be two numbers"),
        ({"guidance_interval": "a,b"}, "guidance_interval must be two numbers"),
        ({"expert_weights": ("one",)}, "expert_weights must be numbers"),
        ({"prompt": "ab", "observed": "x.npz"}, "give prompt or observed, not both"),
        ({"steer": "anneal", "svdd": 4}, "apply to plain sampling; steer sets its own"),
    ],
)
def test_bad_fields_fail_on_construction_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Request(**fields)


def test_a_request_is_frozen_and_its_pairs_are_numbers():
    r = Request(cfg_interval="0.1,0.9", guidance_interval=["0", "0.5"], expert_weights=("2",))
    assert r.cfg_interval == (0.1, 0.9) and r.guidance_interval == (0.0, 0.5)
    assert r.expert_weights == (2.0,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.steps = 3


def test_every_field_is_a_flag_and_default_flags_give_the_default_request():
    values = flags.FlagValues()
    holders = define_flags(flag_values=values)
    assert set(holders) == {f.name for f in dataclasses.fields(Request)}
    values(["sample.py"])
    assert from_flags(holders) == Request()
    values(["sample.py", "--steer=anneal", "--beta=3", "--experts=a,b", "--steps=7"])
    assert from_flags(holders) == Request(steer="anneal", beta=3.0, experts=("a", "b"), steps=7)


def test_the_folder_name_holds_every_setting_that_changes_the_samples():
    base = Request(sampler="em", steps=10, num_samples=8)
    names = {
        Request(sampler="em", steps=10, num_samples=8, seed=s, eta=e).name(100)
        for s in (0, 1)
        for e in (None, 0.5)
    }
    assert len(names) == 4
    assert base.name(100) == "em_10steps_eta1_seed0_ckpt100"
    steered = dataclasses.replace(base, steer="reward", reward="target", reward_arg="1,-1")
    assert steered.name(7) == "em_10steps_eta1_reward_target1--1_x1_diff_seed0_ckpt7"
    guided = dataclasses.replace(base, svdd=2, reward="target", observed="/a/obs.npz")
    assert guided.name(7).endswith("_svdd2a0target_observed-obs")

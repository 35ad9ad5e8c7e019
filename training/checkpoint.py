"""Orbax checkpoints of the train state plus the run's config (JSON; nothing is pickled).

Saves are asynchronous and atomic (orbax writes to a temporary directory and renames it once
complete), the last `keep` are kept, and a run restarted in the same workdir resumes from the
latest one.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from difflab.training import mesh as mesh_lib


def checkpoint_dir(workdir: str) -> str:
    return os.path.abspath(os.path.join(workdir, "checkpoints"))


def manager(
    workdir: str, keep: int, asynchronous: bool = True, create: bool = True
) -> ocp.CheckpointManager:
    """The run's checkpoint manager; create=False for reading (the directory must exist)."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=asynchronous,
        create=create,
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir), options=options, item_names=("state", "config")
    )


def save(mgr: ocp.CheckpointManager, step: int, state, config) -> None:
    """Start an (async) save of the state and config at `step`."""
    mgr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            config=ocp.args.JsonSave(json.loads(config.to_json())),
        ),
    )


def abstract_like(state, mesh):
    """Shapes and dtypes of `state`, replicated over `mesh` (any device count)."""
    sharding = mesh_lib.replicated(mesh)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def restore_state(mgr: ocp.CheckpointManager, step: int, target):
    """The train state saved at `step`, placed like `target` (abstract arrays with shardings)."""
    out = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    return out["state"]


def restore_saved_structure(mgr: ocp.CheckpointManager, step: int) -> dict:
    """The train state at `step` as nested dicts of numpy arrays, in the structure it was saved
    with (no template: sampling needs only `ema_params`, which is already a plain dict). Every
    array is read onto this process's first device, whatever devices saved it (with several
    processes the saved device may belong to another one)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    saved = ocp.StandardCheckpointHandler().metadata(mgr.directory / str(step) / "state")
    saved = getattr(saved, "tree", saved)  # a tree-metadata object in newer orbax versions
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
    out = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    return jax.tree.map(np.asarray, out["state"])


def restore_config(mgr: ocp.CheckpointManager, step: int) -> ml_collections.ConfigDict:
    out = mgr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return config_from_dict(out["config"])


# Fields that may change between a run and its resumption: they do not change what is computed.
# train.steps may grow (or shrink) to extend a finished run; the learning-rate schedule is then
# the new length's.
RESUMABLE_CHANGES = (
    "workdir",
    "train.steps",
    "train.log_every",
    "train.eval_every",
    "train.save_every",
    "train.keep_checkpoints",
    "train.nonfinite",
    "eval.*",
)


def resumable(key: str) -> bool:
    """Whether the flattened config field `key` may differ on resume ('x.*' covers a group)."""
    return any(key == k or (k.endswith(".*") and key.startswith(k[:-1])) for k in RESUMABLE_CHANGES)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def check_same_run(saved: dict, config, workdir: str) -> None:
    """Refuse to resume a checkpoint written by a different config (other than logging/eval)."""
    old, new = _flatten(saved), _flatten(json.loads(config.to_json()))
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and not resumable(k)]
    if diff:
        shown = ", ".join(f"{k}: checkpoint {old.get(k)!r} vs now {new.get(k)!r}" for k in diff)
        raise ValueError(
            f"workdir {workdir!r} holds a checkpoint of a different config ({shown}); only "
            f"steps, intervals, checkpoint keeping, nonfinite handling and eval settings may "
            f"change on resume: use another --workdir or the original values"
        )


def config_from_dict(d: dict) -> ml_collections.ConfigDict:
    """A ConfigDict from its JSON form (lists stay lists: JSON has no tuples)."""
    return ml_collections.ConfigDict(d)

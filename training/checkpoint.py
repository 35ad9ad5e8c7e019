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
import orbax.checkpoint as ocp

from training import mesh as mesh_lib


def checkpoint_dir(workdir: str) -> str:
    return os.path.abspath(os.path.join(workdir, "checkpoints"))


def manager(workdir: str, keep: int, asynchronous: bool = True) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=asynchronous,
        create=True,
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


def restore_config(mgr: ocp.CheckpointManager, step: int) -> ml_collections.ConfigDict:
    out = mgr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return config_from_dict(out["config"])


def config_from_dict(d: dict) -> ml_collections.ConfigDict:
    """A ConfigDict from its JSON form (lists stay lists: JSON has no tuples)."""
    return ml_collections.ConfigDict(d)

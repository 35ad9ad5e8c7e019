"""The data-parallel device mesh: the batch is split over the `data` axis of every device of every
process, parameters are replicated, and XLA all-reduces the gradients."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default jax.devices(): all processes), ordered so each
    process's devices are contiguous: process p's local batch is rows [p * local, (p + 1) *
    local) of the global one."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.array(sorted(devices, key=lambda d: (d.process_index, d.id))), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
    """Shard the batch axis, after `leading_axes` unsharded axes (e.g. steps per call)."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading_axes), DATA))


def global_batch(local: dict, mesh: Mesh, leading_axes: int = 0) -> dict:
    """Assemble each process's local numpy batch into one global array sharded over `data`."""
    sharding = batch_sharding(mesh, leading_axes)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()
    }


def replicate(tree, mesh: Mesh):
    """Place a host pytree on every device of the mesh."""
    return place(tree, replicated(mesh))


def to_host(tree):
    """A host (numpy) copy of a replicated pytree, valid on every process."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def place(tree, sharding):
    """Host arrays, the same on every process, as global arrays with `sharding`."""

    def one(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(one, tree)


def gather(tree):
    """Global arrays back on the host, whole, on every process."""

    def one(a):
        if a.is_fully_addressable:
            return np.asarray(a)
        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree.map(one, tree)

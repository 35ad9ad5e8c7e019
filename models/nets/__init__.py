"""Flax NNX networks. `build(config, data_shape, num_classes)` makes the configured one.

Networks hold only `nnx.Param` state, so `nnx.split` gives a graph definition plus a plain
pytree of float32 parameters; the compute dtype comes from `config.model.dtype`.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from models.nets.dit import DiT
from models.nets.mlp import MLP
from models.nets.unet import UNet

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str):
    if name not in DTYPES:
        raise ValueError(f"config.model.dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def _mlp(mc, shape, num_classes, dtype, rngs):
    if len(shape) != 1:
        raise ValueError(f"the mlp network takes vectors [D], got data shape {shape}")
    return MLP(shape[0], mc.width, mc.depth, num_classes, dtype=dtype, rngs=rngs)


def _unet(mc, shape, num_classes, dtype, rngs):
    if len(shape) != 3:
        raise ValueError(f"the unet network takes images [H, W, C], got data shape {shape}")
    return UNet(shape[2], mc.width, tuple(mc.mults), mc.blocks, num_classes, dtype=dtype, rngs=rngs)


def _dit(mc, shape, num_classes, dtype, rngs):
    if len(shape) != 3 or shape[0] != shape[1]:
        raise ValueError(f"the dit network takes square images [H, H, C], got data shape {shape}")
    return DiT(
        shape[0],
        shape[2],
        mc.patch,
        mc.width,
        mc.depth,
        mc.heads,
        mc.mlp_ratio,
        num_classes,
        dtype=dtype,
        rngs=rngs,
    )


NETWORKS = {"mlp": _mlp, "unet": _unet, "dit": _dit}


def build(model_config, data_shape, num_classes: int, seed: int) -> nnx.Module:
    """The network named by model_config.net, initialised from `seed`."""
    if model_config.net not in NETWORKS:
        raise ValueError(
            f"config.model.net must be one of {sorted(NETWORKS)}, got {model_config.net!r}"
        )
    dtype = compute_dtype(model_config.dtype)
    return NETWORKS[model_config.net](
        model_config, tuple(data_shape), num_classes, dtype, nnx.Rngs(seed)
    )

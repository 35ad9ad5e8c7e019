"""Flax NNX networks. `build(config, data_shape, num_classes)` makes the configured one:
mlp, unet, dit (continuous data), transformer (tokens), count_mlp (counts), classifier_mlp
(class logits of noisy data, for classifier guidance), value_mlp (one value of noisy data of any
kind, for SVDD-MC).

Networks hold only `nnx.Param` state, so `nnx.split` gives a graph definition plus a plain
pytree of float32 parameters; the compute dtype comes from `config.model.dtype`.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
from flax import nnx

from difflab.models.nets.classifier import ClassifierMLP
from difflab.models.nets.counts import CountNet
from difflab.models.nets.dit import DiT
from difflab.models.nets.mlp import MLP
from difflab.models.nets.transformer import SequenceTransformer
from difflab.models.nets.unet import UNet

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# XLA options for a program that runs once: unoptimised CPU code compiles ~2.7x faster (the digits
# U-Net's initialisation: 9.9 s -> 3.7 s) and gives the same values.
RUN_ONCE_CPU = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def compute_dtype(name: str):
    if name not in DTYPES:
        raise ValueError(f"config.model.dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def _step(mc) -> tuple[bool, float]:
    """(a step-size input h for average-velocity models, the time embedding's frequency scale)."""
    return bool(mc.get("step_conditioning", False)), float(mc.get("time_scale", 1000.0))


def _mlp(mc, shape, num_classes, dtype, rngs):
    if len(shape) != 1:
        raise ValueError(f"the mlp network takes vectors [D], got data shape {shape}")
    return MLP(shape[0], mc.width, mc.depth, num_classes, *_step(mc), dtype=dtype, rngs=rngs)


def _unet(mc, shape, num_classes, dtype, rngs):
    if len(shape) != 3:
        raise ValueError(f"the unet network takes images [H, W, C], got data shape {shape}")
    return UNet(
        shape[2],
        mc.width,
        tuple(mc.mults),
        mc.blocks,
        num_classes,
        *_step(mc),
        dtype=dtype,
        rngs=rngs,
    )


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
        *_step(mc),
        dtype=dtype,
        rngs=rngs,
    )


def _transformer(mc, shape, num_classes, dtype, rngs, vocab_size):
    if len(shape) != 1 or vocab_size < 1:
        raise ValueError(
            f"the transformer network takes token sequences [L] with a vocabulary, got data "
            f"shape {shape} and vocab_size {vocab_size}"
        )
    return SequenceTransformer(
        vocab_size,
        shape[0],
        mc.width,
        mc.depth,
        mc.heads,
        mc.mlp_ratio,
        num_classes,
        mc.get("time_conditioning", True),
        dtype=dtype,
        rngs=rngs,
    )


def _count_mlp(mc, shape, num_classes, dtype, rngs):
    if len(shape) != 1:
        raise ValueError(f"the count_mlp network takes count vectors [D], got data shape {shape}")
    return CountNet(shape[0], mc.width, mc.depth, num_classes, dtype=dtype, rngs=rngs)


def _classifier_mlp(mc, shape, num_classes, dtype, rngs, vocab_size=0):
    """Class logits; token inputs are one-hot encoded (mask included)."""
    if num_classes < 2:
        raise ValueError(f"a classifier needs labelled data with >= 2 classes, got {num_classes}")
    dim = int(math.prod(shape)) * (vocab_size + 1 if vocab_size else 1)
    return ClassifierMLP(dim, mc.width, mc.depth, num_classes, vocab_size, dtype=dtype, rngs=rngs)


def _value_mlp(mc, shape, num_classes, dtype, rngs, vocab_size=0):
    """One output per example; token inputs are one-hot encoded (mask included)."""
    dim = int(math.prod(shape)) * (vocab_size + 1 if vocab_size else 1)
    return ClassifierMLP(dim, mc.width, mc.depth, 1, vocab_size, dtype=dtype, rngs=rngs)


NETWORKS = {
    "mlp": _mlp,
    "unet": _unet,
    "dit": _dit,
    "transformer": _transformer,
    "count_mlp": _count_mlp,
    "classifier_mlp": _classifier_mlp,
    "value_mlp": _value_mlp,
}
TOKEN_NETWORKS = ("transformer", "value_mlp", "classifier_mlp")  # take the vocabulary size
# what a network outputs, the `nets` of the families it fits (models.families): log-rates
# [B, D, 2] (counts), class logits [B, C] (classifier), one value [B, 1] (value); the rest a
# prediction shaped like the data (the generative families)
OUTPUTS = {"count_mlp": "counts", "classifier_mlp": "classifier", "value_mlp": "value"}


def output(net: str) -> str:
    """What network `net` outputs (see OUTPUTS)."""
    return OUTPUTS.get(net, "generative")


def build(model_config, data_shape, num_classes: int, seed: int, vocab_size: int = 0) -> nnx.Module:
    """The network named by model_config.net, initialised from `seed`; token networks take the
    vocabulary size (without the mask), continuous-data networks refuse token data."""
    return initialise(*initialiser(model_config, data_shape, num_classes, seed, vocab_size))


def structure(model_config, data_shape, num_classes: int, seed: int, vocab_size: int = 0):
    """The graph definition of build(...)'s network, from its shapes alone (nothing is compiled
    or run: enough to apply parameters restored from a checkpoint)."""
    return graph(initialiser(model_config, data_shape, num_classes, seed, vocab_size)[0])


def graph(init):
    """The graph definition of init()'s network, from nnx.eval_shape (shapes only)."""
    return nnx.split(nnx.eval_shape(init))[0]


def initialiser(model_config, data_shape, num_classes: int, seed: int, vocab_size: int = 0):
    """(init, spec): the checked network's constructor and its complete description."""
    if model_config.net not in NETWORKS:
        raise ValueError(
            f"config.model.net must be one of {sorted(NETWORKS)}, got {model_config.net!r}"
        )
    dtype = compute_dtype(model_config.dtype)
    make = NETWORKS[model_config.net]
    if model_config.net not in TOKEN_NETWORKS and vocab_size:
        raise ValueError(
            f"config.model.net={model_config.net!r} is for continuous data; token data "
            f"(vocab_size {vocab_size}) needs one of {TOKEN_NETWORKS}"
        )
    extra = (vocab_size,) if model_config.net in TOKEN_NETWORKS else ()

    def init():
        return make(model_config, tuple(data_shape), num_classes, dtype, nnx.Rngs(seed), *extra)

    spec = (model_config.to_dict(), tuple(data_shape), num_classes, seed, vocab_size)
    return init, json.dumps(spec, sort_keys=True, default=str)


# (network spec, default device, backend) -> (graph definition, compiled initialiser): building
# the same network again in a process (loading the run it just trained, a notebook cell run
# twice) reruns its initialiser without compiling it again (the tiny MLP's: 0.5 s; the digits
# U-Net's: 3.7 s). One small executable per distinct network; the parameter values are not kept.
INITIALISERS: dict = {}


def initialise(init, spec: str) -> nnx.Module:
    """init() as one compiled program (compiled_initialiser), kept in INITIALISERS under `spec`
    (the network's complete description), the default device and the backend."""
    key = (spec, str(jax.config.jax_default_device), jax.default_backend())
    if key not in INITIALISERS:
        INITIALISERS[key] = compiled_initialiser(init)
    graphdef, compiled = INITIALISERS[key]
    return nnx.merge(graphdef, compiled())


def compiled_initialiser(init):
    """(graph definition, init() compiled as one program for few runs: RUN_ONCE_CPU on CPU). The
    same values as eager initialisation, which would compile every initialiser for every
    parameter shape separately."""
    options = RUN_ONCE_CPU if jax.default_backend() == "cpu" else None
    program = jax.jit(lambda: nnx.split(init())[1], compiler_options=options)
    return graph(init), program.lower().compile()

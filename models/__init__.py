"""What is learned: networks (models.nets) and one process module per model family.

`denoiser(graphdef, params)` turns a network definition and its parameters into the pure
function `denoiser(xt, t, cond, h=None) -> pred` that losses and samplers take (h: the step size
of average-velocity networks).
"""

from __future__ import annotations

import jax
from flax import nnx

from difflab.models import families


def split(net: nnx.Module):
    """(graphdef, params): the network's structure and its parameters as a plain dict pytree."""
    graphdef, state = nnx.split(net)
    other = [k for k, v in nnx.to_flat_state(state) if not isinstance(v, nnx.Param)]
    if other:
        raise ValueError(f"networks must hold only nnx.Param state, found non-parameters {other}")
    return graphdef, nnx.to_pure_dict(state)


def denoiser(graphdef, params):
    """The pure function (xt, t, cond) -> network prediction, with `params` bound.

    Args:
        graphdef, params: `models.split(net)` of a Flax NNX network.

    Returns:
        apply(xt [B, ...], t [B] or scalar, cond [B] int or None, h [B] or None) -> prediction
        [B, ...] in the family's parameterisation (h: the step of average-velocity networks).
    """

    def apply(xt, t, cond=None, h=None):
        batch = lambda v: jax.numpy.broadcast_to(
            jax.numpy.asarray(v, jax.numpy.float32), xt.shape[:1]
        )
        net = nnx.merge(graphdef, params)
        # h: the step of average-velocity networks (shortcut, MeanFlow); None = instantaneous
        return net(xt, batch(t), cond) if h is None else net(xt, batch(t), cond, batch(h))

    return apply


def build_process(config, vocab_size: int = 0, source=None):
    """The process (forward corruption, loss, posterior) of config.process.family
    (`models.families`); masked diffusion takes the data's vocabulary size, counts the data's
    source population draw (if any)."""
    return families.get(config.process.family).build_process(config, vocab_size, source)

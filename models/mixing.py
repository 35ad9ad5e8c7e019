"""Classifier-free mixing of a conditional and an unconditional prediction in one network call
(Ho & Salimans 2022; docs/math.md §6.1).

pred_w = pred(x | null) + w (pred(x | c) - pred(x | null)), evaluated as one batched call on
[x; x] with labels [c; null]. Velocity / eps / x0 / v and average velocities are affine in the
score, masked logits are log-probabilities up to a per-position constant that log-softmax removes,
and count log-rates mix geometrically, so the same linear mix is the meaningful one for every
family's natural prediction (docs/math.md §3.4, §4.6). The process of shortcut models (guided
bootstrap targets) and the sampler package both use it.
"""

from __future__ import annotations

import jax.numpy as jnp

NULL_LABEL = -1


def conditional_and_null(denoiser, x, t, cond, h=None):
    """(pred(x | c), pred(x | null)) from one network call on [x; x] with labels [c; null]."""
    if cond is None:
        raise ValueError("classifier-free guidance needs labels (cond), got None")
    batch = x.shape[0]
    twice = lambda v: jnp.concatenate([v, v]) if jnp.ndim(v) else v
    t2 = twice(jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,)))
    labels = jnp.concatenate([cond, jnp.full_like(cond, NULL_LABEL)])
    step = {} if h is None else {"h": twice(jnp.broadcast_to(h, (batch,)))}
    both = denoiser(jnp.concatenate([x, x]), t2, labels, **step)
    return both[:batch], both[batch:]


def classifier_free(denoiser, scale: float, interval=None):
    """The guided denoiser pred(null) + w (pred(c) - pred(null)): w = 1 is the conditional model,
    w = 0 the unconditional one, w > 1 sharpens toward the class. interval = (t_lo, t_hi): w on
    t_lo <= t <= t_hi and 1 (plain conditional) elsewhere (docs/math.md §6.1). Each call is one
    network pass on a doubled batch (`network_passes` = 2 per call).

    Args:
        denoiser: (x [B, ...], t [B], cond [B] int, h) -> prediction [B, ...], trained with label
            dropout (the null label -1 gives the unconditional prediction).
        scale: w. interval: (t_lo, t_hi) or None.

    Returns:
        The guided denoiser, same signature; mixing is in the family's natural space (velocity /
        eps / x0 / v, masked log-probabilities, count log-rates).
    """

    def guided(x, t, cond=None, h=None):
        pred_c, pred_null = conditional_and_null(denoiser, x, t, cond, h)
        w = interval_scale(scale, interval, t, pred_c)
        return pred_null + w * (pred_c - pred_null)

    guided.network_passes = 2 * network_passes(denoiser)
    return guided


def interval_scale(scale: float, interval, t, like, outside: float = 1.0):
    """w where t lies in interval = (t_lo, t_hi) (everywhere if None), else `outside` (CFG: 1,
    the conditional model), shaped to broadcast against `like` [B, ...]."""
    if interval is None:
        return scale
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), like.shape[:1])
    inside = (t >= interval[0]) & (t <= interval[1])
    return jnp.where(inside, scale, outside).reshape(t.shape + (1,) * (like.ndim - 1))


def network_passes(denoiser) -> int:
    """Network passes (in units of the sampler's batch) that one call of `denoiser` costs."""
    return getattr(denoiser, "network_passes", 1)

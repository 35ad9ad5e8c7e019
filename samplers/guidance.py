"""Guidance: functions from denoisers to denoisers, so every sampler takes every guidance.

Classifier-free guidance mixes the conditional and unconditional predictions linearly. That is
the meaningful mixing space for every family's natural prediction: velocity / eps / x0 / v and
average velocities are affine in the score; masked logits are log-probabilities up to a
per-position constant that log-softmax removes; count log-rates mix geometrically (MATH.md §6.1,
§3.4, §4.6).
"""

from __future__ import annotations

import jax.numpy as jnp


def classifier_free(denoiser, scale: float):
    """pred_w = pred(null) + w (pred(c) - pred(null)) (Ho & Salimans 2022): w = 1 is the
    conditional model, w = 0 the unconditional one, w > 1 sharpens toward the class."""

    def guided(x, t, cond=None, h=None):
        if cond is None:
            raise ValueError("classifier-free guidance needs labels (cond), got None")
        step = {} if h is None else {"h": h}
        null = denoiser(x, t, -jnp.ones_like(cond), **step)
        return null + scale * (denoiser(x, t, cond, **step) - null)

    return guided

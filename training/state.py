"""The train state pytree (step, params, EMA params, optimizer state) and its optimizer."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax


def learning_rate(oc, total_steps: int):
    """Linear warmup to oc.lr over oc.warmup_steps, then cosine to oc.lr * oc.min_lr_ratio."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=oc.lr,
        warmup_steps=oc.warmup_steps,
        decay_steps=max(total_steps, oc.warmup_steps + 1),
        end_value=oc.lr * oc.min_lr_ratio,
    )


def make_optimizer(oc, total_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW on the warmup + cosine schedule (Loshchilov & Hutter)."""
    return optax.chain(
        optax.clip_by_global_norm(oc.grad_clip),
        optax.adamw(
            learning_rate(oc, total_steps), b1=oc.b1, b2=oc.b2, weight_decay=oc.weight_decay
        ),
    )


def init_state(params, optimizer) -> dict:
    """{'step': 0, 'params', 'ema_params' (a copy), 'opt_state', non-finite bookkeeping};
    parameters and optimizer moments in float32. One compiled call (op by op, every parameter
    shape would compile its own copy, cast and zeros)."""
    return jax.jit(functools.partial(_fresh_state, optimizer=optimizer))(params)


def _fresh_state(params, optimizer) -> dict:
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "ema_params": jax.tree.map(jnp.copy, params),
        "opt_state": optimizer.init(params),
        # bookkeeping of skipped non-finite updates (training/step.py)
        "nonfinite_steps": jnp.zeros((), jnp.int32),
        "first_nonfinite_step": -jnp.ones((), jnp.int32),
        "first_nonfinite_loss": jnp.zeros((), jnp.bool_),
    }


def ema_update(ema, params, decay: float):
    """ema <- decay * ema + (1 - decay) * params."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)

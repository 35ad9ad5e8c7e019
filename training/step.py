"""The jitted training step: loss and gradients, AdamW update, EMA; optionally k steps per call."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import models
from training import mesh as mesh_lib
from training.state import ema_update


def train_step(process, graphdef, optimizer, ema_decay: float, base_key):
    """One update. The randomness of step n is fold_in(base_key, n), so resuming draws the same."""

    def step(state, batch):
        key = jax.random.fold_in(base_key, state["step"])

        def loss_fn(params):
            return process.loss(models.denoiser(graphdef, params), key, batch)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {
            "step": state["step"] + 1,
            "params": params,
            "ema_params": ema_update(state["ema_params"], params, ema_decay),
            "opt_state": opt_state,
        }
        return new, {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}

    return step


def scan_steps(step):
    """k consecutive steps over batches stacked on a leading axis [k, B, ...]; metrics averaged."""

    def multi(state, batches):
        state, metrics = jax.lax.scan(step, state, batches)
        return state, jax.tree.map(jnp.mean, metrics)

    return multi


def compile_step(step, mesh, steps_per_call: int):
    """jax.jit with the state replicated (and donated) and the batch sharded over `data`."""
    fn = scan_steps(step) if steps_per_call > 1 else step
    rep = mesh_lib.replicated(mesh)
    data = mesh_lib.batch_sharding(mesh, 1 if steps_per_call > 1 else 0)
    return jax.jit(fn, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=0)

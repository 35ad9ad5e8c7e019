"""The jitted training step: loss and gradients, AdamW update, EMA; optionally k steps per call."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from difflab import models
from difflab.training import mesh as mesh_lib
from difflab.training.state import ema_update


def train_step(process, graphdef, optimizer, ema_decay: float, base_key):
    """One update. The randomness of step n is fold_in(base_key, n), so resuming draws the same."""

    def step(state, batch):
        key = jax.random.fold_in(base_key, state["step"])

        def loss_fn(params):
            denoiser = models.denoiser(graphdef, params)
            source = getattr(process, "target_params", None)  # shortcut bootstrap targets
            if source is None:
                return process.loss(denoiser, key, batch)
            frozen = jax.lax.stop_gradient(state["ema_params"] if source == "ema" else params)
            return process.loss(denoiser, key, batch, target=models.denoiser(graphdef, frozen))

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        grad_norm = optax.global_norm(grads)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        updated = {
            "params": params,
            "ema_params": ema_update(state["ema_params"], params, ema_decay),
            "opt_state": opt_state,
        }
        # A non-finite loss or gradient never reaches the state: the update is skipped and the
        # event is counted; the loop stops or goes on according to config.train.nonfinite.
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        kept = {k: state[k] for k in updated}
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), updated, kept)
        first = (state["first_nonfinite_step"] < 0) & ~finite
        new |= {
            "step": state["step"] + 1,
            "nonfinite_steps": state["nonfinite_steps"] + (~finite).astype(jnp.int32),
            "first_nonfinite_step": jnp.where(first, state["step"], state["first_nonfinite_step"]),
            "first_nonfinite_loss": jnp.where(
                first, ~jnp.isfinite(loss), state["first_nonfinite_loss"]
            ),
        }
        return new, {
            **metrics,
            "loss": loss,
            "grad_norm": grad_norm,
            "skipped": (~finite).astype(jnp.float32),
        }

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

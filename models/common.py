"""Small helpers every process uses: broadcasting t, time derivatives, time sampling, labels."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp


def expand(t: jax.Array, x: jax.Array) -> jax.Array:
    """Broadcast per-example t of shape [B] (or a scalar) against x of shape [B, ...]."""
    t = jnp.asarray(t, jnp.float32)
    return jnp.reshape(t, t.shape + (1,) * (x.ndim - t.ndim))


def time_derivative(fn, t: jax.Array) -> jax.Array:
    """d fn / dt, elementwise, by forward-mode autodiff."""
    t = jnp.asarray(t, jnp.float32)
    return jax.jvp(fn, (t,), (jnp.ones_like(t),))[1]


def antithetic_times(key: jax.Array, batch: int) -> jax.Array:
    """t_b = (u + b / B) mod 1 with one u ~ U(0, 1): stratified uniform times (VDM)."""
    u = jax.random.uniform(key, ())
    return jnp.mod(u + jnp.arange(batch, dtype=jnp.float32) / batch, 1.0)


def logit_normal_times(key: jax.Array, batch: int, mean: float, std: float) -> jax.Array:
    """t = sigmoid(mean + std n), n ~ N(0, 1) (SD3; MeanFlow uses mean=-0.4)."""
    return jax.nn.sigmoid(mean + std * jax.random.normal(key, (batch,)))


def drop_labels(key: jax.Array, label: jax.Array, rate: float) -> jax.Array:
    """Replace each label by the null label -1 with probability `rate` (for CFG)."""
    if rate == 0.0:
        return label
    return jnp.where(jax.random.bernoulli(key, rate, label.shape), -1, label)


def conditioning(key, batch: dict, rate: float):
    """The batch's labels after label dropout, or None for unlabelled batches."""
    label = batch.get("label")
    return None if label is None else drop_labels(key, label, rate)


def invert_decreasing(fn: Callable, target, lo: float = 0.0, hi: float = 1.0, iters: int = 64):
    """The t in [lo, hi] with fn(t) = target for a decreasing fn (e.g. a log-SNR), by bisection."""
    target = jnp.asarray(target, jnp.float32)
    a, b = jnp.full_like(target, lo), jnp.full_like(target, hi)

    def body(_, ab):
        a, b = ab
        mid = 0.5 * (a + b)
        later = fn(mid) > target  # fn still too large: the answer lies later
        return jnp.where(later, mid, a), jnp.where(later, b, mid)

    a, b = jax.lax.fori_loop(0, iters, body, (a, b))
    return 0.5 * (a + b)


class TokenNelbo:
    """The training loss and the averaged NELBO of a token process from its one-draw estimate
    `nelbo_draw(denoiser, key, x0, cond, steps) -> [B]` nats and its `label_dropout` (masked and
    uniform-state diffusion; docs/math.md §3.2, §3.9)."""

    def loss(self, denoiser, key, batch):
        """The NELBO in bits per token, averaged over the batch.

        Args:
            denoiser: (z_t [B, L], t [B], cond [B] or None) -> logits [B, L, V'].
            key: a typed PRNG key (times, noise and label dropout are drawn from it).
            batch: {"x": int tokens [B, L], "label": [B] int (optional)}.

        Returns:
            (loss, metrics): the scalar loss to minimise and a dict of scalars to log.
        """
        x0 = batch["x"].astype(jnp.int32)
        k_elbo, k_drop = jax.random.split(key)
        cond = conditioning(k_drop, batch, self.label_dropout)
        nelbo = self.nelbo_draw(denoiser, k_elbo, x0, cond)
        loss = jnp.mean(nelbo) / (x0.shape[-1] * math.log(2))
        return loss, {"loss": loss}

    def nelbo(self, denoiser, key, x0, cond=None, num_t: int = 1, steps: int | None = None):
        """Per-sequence NELBO in nats, averaged over num_t independent draws of (t, z_t)."""
        draws = jax.lax.map(
            lambda k: self.nelbo_draw(denoiser, k, x0, cond, steps), jax.random.split(key, num_t)
        )
        return jnp.mean(draws, axis=0)

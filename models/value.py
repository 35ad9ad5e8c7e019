"""Noise-conditional value networks f_psi(x_t, t) ~ E[r(x_0) | x_t] for SVDD-MC (docs/math.md §6.4;
Li et al. 2024).

The "value" family trains with the same trainer, checkpoints and resume as the generative
families, on rollouts of a trained model (its samples, written by `sample.py`): x_t is drawn
from the forward process of the model's family (`noise`), t uniform on [t_min, 1] (antithetic),
and the loss is the squared error to the reward of the clean sample, (f_psi(x_t, t) - r(x_0))^2,
whose minimiser is the alpha -> infinity soft value E[r(x_0) | x_t]. The network outputs one
number per example ([B, 1]).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from difflab.models.common import antithetic_times


@dataclasses.dataclass(frozen=True)
class NoisyValue:
    """f_psi(x_t, t) under the forward process `noise`, regressed on reward(x_0)."""

    noise: object
    reward: Callable | None = None  # [B, ...] -> [B]; set by training.components.build
    label_dropout: float = 0.0

    @property
    def t_min(self) -> float:
        return self.noise.t_min

    def values(self, denoiser, x, t):
        """f_psi(x, t) [B]."""
        return denoiser(x, jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1]))[:, 0]

    def squared_errors(self, denoiser, key, x0, t):
        """(f_psi(x_t, t) - r(x_0))^2 per example, x_t ~ q(x_t | x_0)."""
        xt = self.noise.corrupt(key, x0, t)
        return jnp.square(self.values(denoiser, xt, t) - self.reward(x0))

    def loss(self, denoiser, key, batch):
        """Mean squared error at t ~ U[t_min, 1]."""
        if self.reward is None:
            raise ValueError("a value network needs its reward (config.process.reward)")
        x0 = batch["x"]
        k_t, k_x = jax.random.split(key)
        t = self.t_min + (1.0 - self.t_min) * antithetic_times(k_t, x0.shape[0])
        loss = jnp.mean(self.squared_errors(denoiser, k_x, x0, t))
        return loss, {"loss": loss}


def build_process(config, noise_processes, vocab_size: int, source) -> NoisyValue:
    """The value network's process: the noise of config.process.noise_family, built from the same
    fields (the reward is attached by `training.components.build`, which knows the data)."""
    family = config.process.noise_family
    if family not in noise_processes or family in ("classifier", "value"):
        raise ValueError(
            f"config.process.noise_family must be a model family (the model whose rollouts the "
            f"value is trained on), got {family!r}"
        )
    return NoisyValue(noise_processes[family](config, vocab_size, source))

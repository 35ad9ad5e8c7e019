"""Noise-conditional classifiers p_phi(c | x_t, t) for classifier guidance (docs/math.md §6.2;
Dhariwal & Nichol 2021).

The "classifier" family trains with the same trainer, checkpoints and resume as the generative
families: x_t is drawn from the forward process of the model it will guide (`noise`: a flow,
diffusion or masked process; tokens enter the network one-hot, mask included), t uniform on
[t_min, 1] (antithetic), and the loss is the cross-entropy -log p_phi(c | x_t, t). The network
outputs class logits [B, C].
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from difflab.models.common import antithetic_times


@dataclasses.dataclass(frozen=True)
class NoisyClassifier:
    """p_phi(c | x_t, t) under the forward process `noise`."""

    noise: object
    label_dropout: float = 0.0  # classifiers always see their labels

    @property
    def t_min(self) -> float:
        return self.noise.t_min

    def log_probs(self, logits):
        return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)

    def corrupted(self, key, x0, t):
        return self.noise.corrupt(key, x0, t)

    def nll_and_hits(self, denoiser, key, x0, labels, t):
        """(-log p_phi(c | x_t, t), argmax == c) per example, x_t ~ q(x_t | x0)."""
        lp = self.log_probs(denoiser(self.corrupted(key, x0, t), t, None))
        nll = -jnp.take_along_axis(lp, labels[:, None], axis=1)[:, 0]
        return nll, jnp.argmax(lp, axis=-1) == labels

    def loss(self, denoiser, key, batch):
        """Cross-entropy at t ~ U[t_min, 1]; also reports the batch accuracy."""
        x0, labels = batch["x"], batch["label"].astype(jnp.int32)
        k_t, k_x = jax.random.split(key)
        t = self.t_min + (1.0 - self.t_min) * antithetic_times(k_t, x0.shape[0])
        nll, hits = self.nll_and_hits(denoiser, k_x, x0, labels, t)
        loss = jnp.mean(nll)
        return loss, {"loss": loss, "accuracy": jnp.mean(hits.astype(jnp.float32))}


def build_process(config, noise_processes, vocab_size: int = 0) -> NoisyClassifier:
    """The classifier of config.process: its noise is the process of config.process.noise_family
    built from the same fields; noise_processes: {family: builder} of the families a classifier
    can guide (through the score, or the tilted masked denoiser)."""
    family = config.process.noise_family
    if family not in noise_processes:
        raise ValueError(
            f"config.process.noise_family must be one of {sorted(noise_processes)} (the family "
            f"the classifier guides), got {family!r}"
        )
    return NoisyClassifier(noise_processes[family](config, vocab_size, None))

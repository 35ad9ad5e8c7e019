"""Diffusion Transformer (Peebles & Xie, DiT): patchify, adaLN-zero blocks, label null class."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from difflab.models.nets.embeddings import Conditioning


def sincos_2d(grid: int, dim: int) -> np.ndarray:
    """Fixed 2-D sin-cos position embedding [grid*grid, dim] (MAE / DiT)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    parts = []
    for pos in (ys.reshape(-1), xs.reshape(-1)):
        out = pos[:, None] * omega[None]
        parts += [np.sin(out), np.cos(out)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def modulate(x, shift, scale):
    """x (1 + scale) + shift, broadcast over tokens (adaLN)."""
    return x * (1 + scale[:, None]) + shift[:, None]


def modulated_output(norm, ada, out, h, c):
    """out(LN(h) (1 + scale) + shift), (shift, scale) = ada(silu(c)): DiT's final adaLN layer."""
    shift, scale = jnp.split(ada(nnx.silu(c)), 2, axis=-1)
    return out(modulate(norm(h), shift, scale))


class DiTBlock(nnx.Module):
    """x + g1 * Attn(adaLN(x)); x + g2 * MLP(adaLN(x)); modulation initialised to zero."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, *, dtype, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(
            hidden, use_scale=False, use_bias=False, epsilon=1e-6, dtype=dtype, rngs=rngs
        )
        self.attn = nnx.MultiHeadAttention(heads, hidden, decode=False, dtype=dtype, rngs=rngs)
        self.norm2 = nnx.LayerNorm(
            hidden, use_scale=False, use_bias=False, epsilon=1e-6, dtype=dtype, rngs=rngs
        )
        inner = int(hidden * mlp_ratio)
        self.fc1 = nnx.Linear(hidden, inner, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(inner, hidden, dtype=dtype, rngs=rngs)
        self.ada = nnx.Linear(
            hidden, 6 * hidden, dtype=dtype, rngs=rngs, kernel_init=nnx.initializers.zeros
        )

    def __call__(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = jnp.split(self.ada(nnx.silu(c)), 6, axis=-1)
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), sh1, sc1))
        y = self.fc2(nnx.gelu(self.fc1(modulate(self.norm2(x), sh2, sc2)), approximate=True))
        return x + g2[:, None] * y


class DiT(nnx.Module):
    """x [B, H, W, C] -> prediction of the same shape; H = W divisible by `patch`."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        patch: int = 2,
        hidden: int = 256,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        step_conditioning: bool = False,
        time_scale: float = 1000.0,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if image_size % patch:
            raise ValueError(f"image_size={image_size} must be divisible by patch={patch}")
        self.dtype, self.patch, self.channels = dtype, patch, channels
        self.grid = image_size // patch
        self.embed_patches = nnx.Conv(
            channels,
            hidden,
            (patch, patch),
            strides=(patch, patch),
            padding="VALID",
            dtype=dtype,
            rngs=rngs,
        )
        self.hidden = hidden
        self.cond = Conditioning(
            hidden,
            num_classes,
            use_step=step_conditioning,
            time_scale=time_scale,
            dtype=dtype,
            rngs=rngs,
        )
        self.blocks = nnx.List(
            [DiTBlock(hidden, heads, mlp_ratio, dtype=dtype, rngs=rngs) for _ in range(depth)]
        )
        self.norm = nnx.LayerNorm(
            hidden, use_scale=False, use_bias=False, epsilon=1e-6, dtype=dtype, rngs=rngs
        )
        self.ada = nnx.Linear(
            hidden, 2 * hidden, dtype=dtype, rngs=rngs, kernel_init=nnx.initializers.zeros
        )
        self.out = nnx.Linear(
            hidden,
            patch * patch * channels,
            dtype=dtype,
            rngs=rngs,
            kernel_init=nnx.initializers.zeros,
        )

    def __call__(self, x, t, cond=None, h=None):
        b = x.shape[0]
        c = self.cond(t, cond, h)  # h: the step size (average-velocity models)
        h = self.embed_patches(x.astype(self.dtype)).reshape(b, self.grid**2, -1)
        h = h + jnp.asarray(sincos_2d(self.grid, self.hidden), self.dtype)[None]
        for block in self.blocks:
            h = block(h, c)
        h = modulated_output(self.norm, self.ada, self.out, h, c)
        p, g = self.patch, self.grid
        h = h.reshape(b, g, g, p, p, self.channels).transpose(0, 1, 3, 2, 4, 5)
        return h.reshape(b, g * p, g * p, self.channels).astype(jnp.float32)

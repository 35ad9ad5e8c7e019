"""A small U-Net for NHWC images (DDPM-style residual blocks, time/label conditioning)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from difflab.models.nets.embeddings import Conditioning


def _groups(channels: int) -> int:
    return min(8, channels)


class ResBlock(nnx.Module):
    """h + conv(silu(GN(conv(silu(GN(h))) + emb))): DDPM residual block."""

    def __init__(self, cin: int, cout: int, emb_dim: int, *, dtype, rngs: nnx.Rngs):
        self.norm1 = nnx.GroupNorm(cin, num_groups=_groups(cin), dtype=dtype, rngs=rngs)
        self.conv1 = nnx.Conv(cin, cout, (3, 3), dtype=dtype, rngs=rngs)
        self.emb = nnx.Linear(emb_dim, cout, dtype=dtype, rngs=rngs)
        self.norm2 = nnx.GroupNorm(cout, num_groups=_groups(cout), dtype=dtype, rngs=rngs)
        self.conv2 = nnx.Conv(
            cout, cout, (3, 3), dtype=dtype, rngs=rngs, kernel_init=nnx.initializers.zeros
        )
        self.skip = nnx.Conv(cin, cout, (1, 1), dtype=dtype, rngs=rngs) if cin != cout else None

    def __call__(self, h, emb):
        y = self.conv1(nnx.silu(self.norm1(h)))
        y = y + self.emb(emb)[:, None, None, :]
        y = self.conv2(nnx.silu(self.norm2(y)))
        return (h if self.skip is None else self.skip(h)) + y


class UNet(nnx.Module):
    """x [B, H, W, C] -> prediction of the same shape; H and W divisible by 2^(levels-1)."""

    def __init__(
        self,
        channels: int,
        base: int = 64,
        mults=(1, 2),
        blocks: int = 2,
        num_classes: int = 0,
        step_conditioning: bool = False,
        time_scale: float = 1000.0,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.dtype = dtype
        emb_dim = 4 * base
        self.embed = Conditioning(
            emb_dim,
            num_classes,
            use_step=step_conditioning,
            time_scale=time_scale,
            dtype=dtype,
            rngs=rngs,
        )
        self.inp = nnx.Conv(channels, base, (3, 3), dtype=dtype, rngs=rngs)
        widths = [base * m for m in mults]
        down, skips, c = [], [base], base
        for level, w in enumerate(widths):
            for _ in range(blocks):
                down.append(ResBlock(c, w, emb_dim, dtype=dtype, rngs=rngs))
                c = w
                skips.append(c)
            if level < len(widths) - 1:
                down.append(nnx.Conv(c, c, (3, 3), strides=(2, 2), dtype=dtype, rngs=rngs))
                skips.append(c)
        self.down = nnx.List(down)
        self.mid = nnx.List([ResBlock(c, c, emb_dim, dtype=dtype, rngs=rngs) for _ in range(2)])
        up = []
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(blocks + 1):
                up.append(ResBlock(c + skips.pop(), w, emb_dim, dtype=dtype, rngs=rngs))
                c = w
            if level > 0:
                up.append(nnx.Conv(c, c, (3, 3), dtype=dtype, rngs=rngs))
        self.up = nnx.List(up)
        self.norm = nnx.GroupNorm(c, num_groups=_groups(c), dtype=dtype, rngs=rngs)
        self.out = nnx.Conv(
            c, channels, (3, 3), dtype=dtype, rngs=rngs, kernel_init=nnx.initializers.zeros
        )

    def __call__(self, x, t, cond=None, h=None):
        emb = nnx.silu(self.embed(t, cond, h))
        h = self.inp(x.astype(self.dtype))
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(jnp.concatenate([h, hs.pop()], axis=-1), emb)
            else:  # nearest-neighbour upsampling, then a 3x3 conv
                b, hh, ww, c = h.shape
                h = layer(jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest"))
        return self.out(nnx.silu(self.norm(h))).astype(jnp.float32)

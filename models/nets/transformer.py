"""Bidirectional sequence transformer for token data (masked diffusion; MDLM/MD4's DiT backbone).

Tokens (the mask id included) are embedded, learned positions added, and the DiT's adaLN-zero
blocks (models.nets.dit) run without a causal mask. Time conditioning is optional: the optimal
masked-diffusion denoiser does not depend on t (docs/math.md §3.2), and without it the adaLN input
is the label embedding alone (a learned constant when unconditional).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from difflab.models.nets.dit import DiTBlock, modulated_output
from difflab.models.nets.embeddings import Conditioning


class SequenceTransformer(nnx.Module):
    """z [B, L] int tokens in {0..V} (V = mask) -> logits [B, L, V] over the real tokens."""

    def __init__(
        self,
        vocab_size: int,
        length: int,
        hidden: int = 256,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        time_conditioning: bool = True,
        *,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.dtype, self.vocab_size, self.length = dtype, vocab_size, length
        self.embed = nnx.Embed(vocab_size + 1, hidden, dtype=dtype, rngs=rngs)
        self.positions = nnx.Param(0.02 * jax.random.normal(rngs.params(), (length, hidden)))
        self.cond = Conditioning(
            hidden, num_classes, use_time=time_conditioning, dtype=dtype, rngs=rngs
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
            hidden, vocab_size, dtype=dtype, rngs=rngs, kernel_init=nnx.initializers.zeros
        )

    def __call__(self, z, t, cond=None):
        if z.shape[1:] != (self.length,):
            raise ValueError(f"expected token sequences [B, {self.length}], got shape {z.shape}")
        h = self.embed(jnp.asarray(z, jnp.int32)) + self.positions[...].astype(self.dtype)[None]
        c = self.cond(t, cond)
        for block in self.blocks:
            h = block(h, c)
        return modulated_output(self.norm, self.ada, self.out, h, c).astype(jnp.float32)

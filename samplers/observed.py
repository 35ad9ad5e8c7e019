"""Conditioning on observed parts of a sample: prompts and infilling for masked models,
inpainting for Gaussian models (docs/math.md §3.3, §3.4, §6.3).

`Observed(process, values, known)` is the process conditioned on `values` at the `known`
positions ([B, ...] each, one row per sample); every sampler runs on it unchanged:

- masked diffusion: the prior has the observed tokens in place (prompt positions are never
  masked, docs/math.md §3.3), and samplers never change unmasked tokens, so they are clamped and
  never resampled; only the free positions cost draws (first-hitting makes one call per free
  position). prompt_scale = w adds SMDM's unsupervised guidance (§3.4): logits l_u + (1 + w)(l_c -
  l_u), l_c with the prompt and l_u with the prompt masked, one network call on the doubled batch;
- Gaussian families: the prior's known coordinates are alpha_t y + sigma_t eps, and the
  denoised estimate is replaced there by y (`replace`, the x0 form of replacement inpainting: the
  known coordinates follow q(z_s | z_t, y) and end at y); measurement_scale = rho adds the DPS
  score rho grad log N(y; A x_hat, s^2) for A = restriction to the known coordinates (§6.3), on
  measurement_interval = (t_lo, t_hi) if given.

The process is a pytree whose leaves are (values, known), so `samplers.independent` draws each
sample with its own row.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from difflab.models.mixing import network_passes
from difflab.models.protocols import FlowMapProcess, GaussianProcess, MaskedProcess
from difflab.samplers import guidance

STATIC = dict(static=True)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Observed:
    """`process` with `values` observed at the `known` positions (see the module doc)."""

    values: jax.Array
    known: jax.Array
    process: object = dataclasses.field(metadata=STATIC)
    prompt_scale: float | None = dataclasses.field(default=None, metadata=STATIC)
    replace: bool = dataclasses.field(default=True, metadata=STATIC)
    measurement_scale: float = dataclasses.field(default=0.0, metadata=STATIC)
    noise_std: float = dataclasses.field(default=0.1, metadata=STATIC)
    measurement_interval: tuple | None = dataclasses.field(default=None, metadata=STATIC)

    batched = True  # samplers.independent gives each sample its own row of the leaves

    def __getattr__(self, name):
        if name == "process":  # not yet set (copying, unpickling)
            raise AttributeError(name)
        return getattr(self.process, name)

    @property
    def tokens(self) -> bool:
        return isinstance(self.process, MaskedProcess)

    def prior(self, key, shape, t=1.0):
        """The base prior with the observation in place: tokens at known positions (masked), or
        alpha_t y + sigma_t eps there (Gaussian; the base prior is sigma_t eps)."""
        base = self.process.prior(key, shape, t)
        if self.tokens:
            return jnp.where(self.known, self.values, base)
        t = jnp.asarray(t, jnp.float32)
        return jnp.where(self.known, self.process.alpha(t) * self.values + base, base)

    def predict(self, denoiser, x, t, cond):
        """The network's prediction under the observation (called by `solvers.Bound.pred`)."""
        if self.tokens:
            return self.prompt_guided(denoiser, x, t, cond)
        den = denoiser
        if self.measurement_scale:
            potential = guidance.measurement_potential(
                self.process, self.values, self.known, self.noise_std
            )
            den = guidance.gradient(
                denoiser,
                self.process,
                potential,
                self.measurement_scale,
                self.measurement_interval,
            )
        pred = den(x, t, cond)
        if not self.replace:
            return pred
        return self.replaced(pred, x, t).astype(pred.dtype)

    def replaced(self, pred, x, t):
        """The prediction with x_hat = y and eps_hat = (x_t - alpha_t y) / sigma_t at the known
        coordinates; where sigma_t = 0 (a flow at t = 0) eps_hat stays the network's, so the
        velocity stays finite (`finish` puts y in place at the end)."""
        process, t = self.process, jnp.broadcast_to(t, x.shape[:1])
        x0, eps = process.x0_eps(pred, x, t)
        tt = jnp.reshape(t, (-1,) + (1,) * (x.ndim - 1))
        sigma = process.sigma(tt)
        noisy = self.known & (sigma > 0)
        eps = jnp.where(
            noisy, (x - process.alpha(tt) * self.values) / jnp.where(noisy, sigma, 1.0), eps
        )
        return process.pred_from_x0_eps(jnp.where(self.known, self.values, x0), eps, x, t)

    def finish(self, x):
        """The final samples, with the observation in place under Gaussian replacement (the
        last step lands on y up to its discretisation error). Masked samplers keep prompts
        exactly by construction, and are left alone so that a sampler which changed them
        would show it."""
        return jnp.where(self.known, self.values, x) if self.replace and not self.tokens else x

    def prompt_guided(self, denoiser, z, t, cond):
        """l_u + (1 + w)(l_c - l_u) (SMDM), l_u from z with the prompt masked; plain l_c if w is
        None."""
        if self.prompt_scale is None:
            return denoiser(z, t, cond)
        batch = z.shape[0]
        unprompted = jnp.where(self.known, self.process.mask_id, z)
        twice = lambda v: None if v is None else jnp.concatenate([v, v])
        both = denoiser(jnp.concatenate([z, unprompted]), twice(t), twice(cond))
        l_c, l_u = both[:batch], both[batch:]
        return l_u + (1.0 + self.prompt_scale) * (l_c - l_u)

    @property
    def copies(self) -> int:
        """Copies of the batch the denoiser sees per prediction: two under prompt guidance."""
        return 2 if self.tokens and self.prompt_scale is not None else 1

    def passes(self, denoiser) -> int:
        """Network passes per prediction: the denoiser's on each copy of the batch."""
        return network_passes(denoiser) * self.copies


def observe(process, values, known, **settings) -> Observed:
    """`process` conditioned on `values` at `known`.

    Args:
        process: a masked, flow or diffusion process.
        values: [B, ...] tokens (masked) or data values (Gaussian families), one row per sample.
        known: [B, ...] bool, where the values are observed.
        settings: prompt_scale (masked: SMDM guidance w), replace (Gaussian: x_hat = y at the
            known coordinates), measurement_scale, noise_std, measurement_interval (DPS).

    Returns:
        An `Observed` process that every sampler takes in place of `process`.

    Raises:
        ValueError for mismatched shapes, tokens outside the vocabulary, or a family (counts,
        average-velocity) for which clamped values have no meaning.
    """
    values, known = np.asarray(values), np.asarray(known, bool)  # checked on the host
    if values.shape != known.shape:
        raise ValueError(
            f"observed values {values.shape} and their known-positions mask {known.shape} must "
            f"have the same shape"
        )
    if isinstance(process, MaskedProcess):
        values = values.astype(np.int32)
        bad = known & ((values < 0) | (values >= process.mask_id))
        if bad.any():
            raise ValueError(
                f"observed tokens must lie in [0, {process.mask_id}) at known positions, got "
                f"{int(values[bad][0])}"
            )
    elif not isinstance(process, GaussianProcess) or isinstance(process, FlowMapProcess):
        raise ValueError(
            f"observations condition masked and Gaussian (flow, diffusion) models; "
            f"average-velocity and count models are not supported: "
            f"{type(process).__name__} has no meaning for clamped values"
        )
    else:
        values = values.astype(np.float32)
    return Observed(jnp.asarray(values), jnp.asarray(known), process, **settings)

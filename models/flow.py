"""Flow matching with affine interpolants (docs/math.md §2).

x_t = alpha_t x0 + sigma_t x1 + gamma_t z, with x0 ~ data at t = 0 and x1 ~ N(0, I) at t = 1.
The network predicts the velocity u = dx_t/dt; samplers integrate it from t = 1 down to t = 0.
Sources: Lipman et al. (Flow Matching); Liu et al. (Rectified Flow); Albergo & Vanden-Eijnden
(Stochastic Interpolants).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from difflab.models.common import (
    antithetic_times,
    conditioning,
    expand,
    logit_normal_times,
    time_derivative,
)
from difflab.models.gaussian import GaussianPath

Schedule = Callable[[jax.Array], jax.Array]

# Clamp where a score is formed from a velocity: the conversion is singular at t = 0 and t = 1
# (docs/math.md §2.3).
SCORE_T_CLAMP = 1e-4


@dataclasses.dataclass(frozen=True)
class Path:
    """Coefficients of x_t = alpha_t x0 + sigma_t x1 + gamma_t z (docs/math.md §2.1).

    With gamma, `x1_share(t)` = sigma_t / (sigma_t^2 + gamma_t^2), written so that it stays finite
    at t = 0: E[x1 | x_t, x0] = x1_share(t) (x_t - alpha_t x0) for Gaussian x1 and z.
    """

    name: str
    alpha: Schedule
    sigma: Schedule
    gamma: Schedule | None = None
    x1_share: Schedule | None = None


def linear_path(sigma_min: float = 0.0) -> Path:
    """Rectified flow / conditional OT: alpha = 1 - (1 - sigma_min) t, sigma = t (Lipman et al.)."""
    return Path("linear", alpha=lambda t: 1.0 - (1.0 - sigma_min) * t, sigma=lambda t: t)


def cosine_path() -> Path:
    """Trigonometric (VP-as-flow) path: alpha = cos(pi t / 2), sigma = sin(pi t / 2).

    alpha is written sin(pi (1 - t) / 2) so that alpha_1 = 0 exactly: in float32 cos(pi / 2) is
    -4.4e-8, which makes alpha_1 < 0 and log-SNR(1) NaN."""
    return Path(
        "cosine",
        alpha=lambda t: jnp.sin(0.5 * jnp.pi * (1.0 - t)),
        sigma=lambda t: jnp.sin(0.5 * jnp.pi * t),
    )


def stochastic_interpolant(a: float = 1.0) -> Path:
    """Linear path plus gamma_t = sqrt(a t (1 - t)) latent noise (Albergo & Vanden-Eijnden);
    sigma_t / (sigma_t^2 + gamma_t^2) = 1 / (t + a (1 - t))."""
    if a <= 0:
        raise ValueError(f"stochastic interpolant noise scale must be > 0, got a={a}")
    return Path(
        "stochastic",
        alpha=lambda t: 1.0 - t,
        sigma=lambda t: t,
        gamma=lambda t: jnp.sqrt(a * jnp.clip(t * (1.0 - t), 1e-12, None)),
        x1_share=lambda t: 1.0 / (t + a * (1.0 - t)),
    )


PATHS = {"linear": linear_path, "cosine": cosine_path, "stochastic": stochastic_interpolant}


@dataclasses.dataclass(frozen=True)
class FlowMatching(GaussianPath):
    """Flow-matching process: the network's natural prediction is the velocity dx_t/dt."""

    path: Path = dataclasses.field(default_factory=linear_path)
    time_sampling: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    label_dropout: float = 0.0
    t_min: float = 0.0

    # -- forward process -------------------------------------------------------------------
    def alpha(self, t):
        return self.path.alpha(jnp.asarray(t, jnp.float32))

    def sigma(self, t):
        """The marginal noise scale sqrt(sigma_t^2 + gamma_t^2): with x1, z ~ N(0, I) independent
        of x0, x_t = alpha_t x0 + sigma_t x1 + gamma_t z is the Gaussian path (alpha_t, this)."""
        t = jnp.asarray(t, jnp.float32)
        if self.path.gamma is None:
            return self.path.sigma(t)
        return jnp.sqrt(self.path.sigma(t) ** 2 + self.path.gamma(t) ** 2)

    def interpolate(self, x0, x1, t, z=None):
        """x_t = alpha_t x0 + sigma_t x1 + gamma_t z (docs/math.md §2.1)."""
        tt = expand(t, x0)
        xt = self.path.alpha(tt) * x0 + self.path.sigma(tt) * x1
        if self.path.gamma is not None:
            xt = xt + self.path.gamma(tt) * z
        return xt

    def target_velocity(self, x0, x1, t, z=None):
        """u* = alpha'_t x0 + sigma'_t x1 + gamma'_t z; linear path: u* = x1 - x0
        (docs/math.md §2.1)."""
        u = self.drift_target(x0, x1, t)
        if self.path.gamma is not None:
            u = u + time_derivative(self.path.gamma, expand(t, x0)) * z
        return u

    def drift_target(self, x0, x1, t):
        """b* = alpha'_t x0 + sigma'_t x1: the regression target of every path.

        Without gamma this is u*. With gamma, u* adds gamma'_t z, whose variance
        a (1 - 2t)^2 / (4 t (1 - t)) has an infinite integral over t: the network learns
        b = E[b* | x_t] instead, and `velocity` adds E[gamma'_t z | x_t] in closed form (the source
        is Gaussian), so the marginal velocity is the same and the target's variance is bounded.
        """
        tt = expand(t, x0)
        return time_derivative(self.path.alpha, tt) * x0 + time_derivative(self.path.sigma, tt) * x1

    def corrupt(self, key, x0, t):
        """A sample of q(x_t | x0) under the independent coupling."""
        k1, kz = jax.random.split(key)
        x1 = jax.random.normal(k1, x0.shape)
        z = jax.random.normal(kz, x0.shape) if self.path.gamma is not None else None
        return self.interpolate(x0, x1, t, z)

    def sample_times(self, key, batch: int) -> jax.Array:
        if self.time_sampling == "uniform":
            return antithetic_times(key, batch)
        if self.time_sampling == "logit_normal":
            return logit_normal_times(key, batch, self.logit_mean, self.logit_std)
        raise ValueError(
            f"time_sampling must be 'uniform' or 'logit_normal', got {self.time_sampling!r}"
        )

    def loss(self, denoiser, key, batch):
        """L_FM = E ||pred(x_t, t) - b*||^2 / d, mean over coordinates (docs/math.md §2.2); b* = u*
        unless the path has gamma (see `drift_target`).

        Args:
            denoiser: (x_t [B, ...], t [B], cond [B] or None) -> the network's prediction.
            key: a typed PRNG key (times, noise and label dropout are drawn from it).
            batch: {"x": [B, ...] float data, "label": [B] int (optional)}.

        Returns:
            (loss, metrics): the scalar loss to minimise and a dict of scalars to log.
        """
        x0 = batch["x"].astype(jnp.float32)
        k_t, k_x1, k_z, k_drop = jax.random.split(key, 4)
        t = self.sample_times(k_t, x0.shape[0])
        x1 = jax.random.normal(k_x1, x0.shape)
        z = jax.random.normal(k_z, x0.shape) if self.path.gamma is not None else None
        xt = self.interpolate(x0, x1, t, z)
        u = denoiser(xt, t, conditioning(k_drop, batch, self.label_dropout)).astype(jnp.float32)
        err = jnp.mean(jnp.square(u - self.drift_target(x0, x1, t)).reshape(len(x0), -1), 1)
        return jnp.mean(err), {"loss": jnp.mean(err)}

    # -- the drift of a path with gamma (Gaussian source) ----------------------------------
    def x0_from_drift(self, b, xt, t):
        """x_hat from b = alpha' x_hat + sigma' k (x_t - alpha x_hat), k = x1_share(t)."""
        tt = expand(t, xt)
        k = self.path.x1_share(tt)
        da, ds = time_derivative(self.path.alpha, tt), time_derivative(self.path.sigma, tt)
        return (b - ds * k * xt) / (da - ds * k * self.alpha(tt))

    def drift_from_x0(self, x0_hat, xt, t):
        """b = alpha' x_hat + sigma' E[x1 | x_t] with E[x1 | x_t] = k (x_t - alpha x_hat)."""
        tt = expand(t, xt)
        da, ds = time_derivative(self.path.alpha, tt), time_derivative(self.path.sigma, tt)
        return da * x0_hat + ds * self.path.x1_share(tt) * (xt - self.alpha(tt) * x0_hat)

    # -- conversions (Gaussian source; docs/math.md §1.3, §2.3) ---------------------------------
    def velocity(self, pred, xt, t):
        """The marginal flow velocity of the prediction: pred itself without gamma; with gamma
        u = b + gamma' gamma / (sigma^2 + gamma^2) (x_t - alpha x_hat), t >= 1e-4.

        Args:
            pred: the network's prediction [B, ...] (the data's shape). xt: z_t [B, ...].
            t: [B] or scalar times in [0, 1].

        Returns:
            u [B, ...], the probability-flow velocity dz/dt.
        """
        if self.path.gamma is None:
            return pred
        tt = expand(jnp.maximum(t, SCORE_T_CLAMP), xt)
        x0 = self.x0_from_drift(pred, xt, tt)
        half_dg2 = 0.5 * time_derivative(lambda r: self.path.gamma(r) ** 2, tt)
        return pred + half_dg2 / self.sigma(tt) ** 2 * (xt - self.alpha(tt) * x0)

    def _coefficients(self, xt, t):
        tt = expand(t, xt)
        return self.alpha(tt), self.sigma(tt), self.d_alpha(tt), self.d_sigma(tt)

    def x0_from_velocity(self, u, xt, t):
        """x_hat = (sigma' z - sigma u) / (alpha sigma' - sigma alpha') (docs/math.md §1.3)."""
        a, s, da, ds = self._coefficients(xt, t)
        return (ds * xt - s * u) / (a * ds - s * da)

    def eps_from_velocity(self, u, xt, t):
        """eps_hat = (alpha u - alpha' z) / (alpha sigma' - sigma alpha') (docs/math.md §1.3)."""
        a, s, da, ds = self._coefficients(xt, t)
        return (a * u - da * xt) / (a * ds - s * da)

    def x0_eps(self, pred, xt, t):
        """(x_hat, eps_hat) of the velocity (or, with gamma, the drift) prediction (docs/math.md
        §1.3: x_hat = (sigma' z - sigma u) / (alpha sigma' - sigma alpha')).

        Args:
            pred: the network's prediction [B, ...] (the data's shape). xt: z_t [B, ...].
            t: [B] or scalar times in [0, 1].

        Returns:
            (x_hat [B, ...], eps_hat [B, ...]).
        """
        if self.path.gamma is None:
            return self.x0_from_velocity(pred, xt, t), self.eps_from_velocity(pred, xt, t)
        tt = jnp.maximum(t, SCORE_T_CLAMP)
        x0 = self.x0_from_drift(pred, xt, tt)
        return x0, (xt - self.alpha(expand(tt, xt)) * x0) / self.sigma(expand(tt, xt))

    def score(self, pred, xt, t):
        """s_hat = -eps_hat / sigma with t clamped to [1e-4, 1 - 1e-4] (docs/math.md §2.3)."""
        return super().score(pred, xt, jnp.clip(t, SCORE_T_CLAMP, 1.0 - SCORE_T_CLAMP))

    def score_from_velocity(self, u, xt, t):
        """s_hat from the marginal velocity u (docs/math.md §2.3)."""
        tt = jnp.clip(t, SCORE_T_CLAMP, 1.0 - SCORE_T_CLAMP)
        return -self.eps_from_velocity(u, xt, tt) / self.sigma(expand(tt, xt))

    def velocity_from_score(self, score, xt, t):
        """u = f_t x - (g_t^2 / 2) s (docs/math.md §1.3)."""
        f, half_g2 = self.drift_and_diffusion(xt, t)
        return f * xt - half_g2 * score

    def velocity_from_x0(self, x0_hat, xt, t):
        """u = alpha' x_hat + sigma' eps_hat with eps_hat = (x - alpha x_hat) / sigma."""
        a, s, da, ds = self._coefficients(xt, t)
        return da * x0_hat + ds * (xt - a * x0_hat) / s

    def pred_from_x0_eps(self, x0_hat, eps_hat, xt, t):
        """The network output of the pair (x_hat, eps_hat): u = alpha' x_hat + sigma' eps_hat
        without gamma (finite at t = 0, where eps_hat = (x_t - alpha x_hat) / sigma is 0/0);
        with gamma the drift b of x_hat (`drift_from_x0`, finite everywhere)."""
        if self.path.gamma is not None:
            return self.drift_from_x0(x0_hat, xt, t)
        tt = expand(t, xt)
        return self.d_alpha(tt) * x0_hat + self.d_sigma(tt) * eps_hat

    def pred_from_x0(self, x0_hat, xt, t):
        """The network output whose posterior mean is x_hat: the velocity without gamma, the
        drift b with it (for exact denoisers and targets)."""
        if self.path.gamma is None:
            return self.velocity_from_x0(x0_hat, xt, t)
        return self.drift_from_x0(x0_hat, xt, t)


def build_process(config) -> FlowMatching:
    """The flow-matching process described by config.process."""
    pc = config.process
    if pc.path not in PATHS:
        raise ValueError(f"config.process.path must be one of {sorted(PATHS)}, got {pc.path!r}")
    path = PATHS[pc.path]() if pc.path != "linear" else linear_path(pc.get("sigma_min", 0.0))
    return FlowMatching(
        path=path,
        time_sampling=pc.time_sampling,
        logit_mean=pc.get("logit_mean", 0.0),
        logit_std=pc.get("logit_std", 1.0),
        label_dropout=pc.get("label_dropout", 0.0),
    )

"""Flow matching with affine interpolants (MATH.md §2).

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

from models.common import (
    antithetic_times,
    conditioning,
    expand,
    logit_normal_times,
    time_derivative,
)
from models.gaussian import GaussianPath

Schedule = Callable[[jax.Array], jax.Array]

# Clamp where a score is formed from a velocity: the conversion is singular at t = 0 and t = 1
# (MATH.md §2.3).
SCORE_T_CLAMP = 1e-4


@dataclasses.dataclass(frozen=True)
class Path:
    """Coefficients of x_t = alpha_t x0 + sigma_t x1 + gamma_t z (MATH.md §2.1)."""

    name: str
    alpha: Schedule
    sigma: Schedule
    gamma: Schedule | None = None


def linear_path(sigma_min: float = 0.0) -> Path:
    """Rectified flow / conditional OT: alpha = 1 - (1 - sigma_min) t, sigma = t (Lipman et al.)."""
    return Path("linear", alpha=lambda t: 1.0 - (1.0 - sigma_min) * t, sigma=lambda t: t)


def cosine_path() -> Path:
    """Trigonometric (VP-as-flow) path: alpha = cos(pi t / 2), sigma = sin(pi t / 2)."""
    return Path(
        "cosine",
        alpha=lambda t: jnp.cos(0.5 * jnp.pi * t),
        sigma=lambda t: jnp.sin(0.5 * jnp.pi * t),
    )


def stochastic_interpolant(a: float = 1.0) -> Path:
    """Linear path plus gamma_t = sqrt(a t (1 - t)) latent noise (Albergo & Vanden-Eijnden)."""
    if a <= 0:
        raise ValueError(f"stochastic interpolant noise scale must be > 0, got a={a}")
    return Path(
        "stochastic",
        alpha=lambda t: 1.0 - t,
        sigma=lambda t: t,
        gamma=lambda t: jnp.sqrt(a * jnp.clip(t * (1.0 - t), 1e-12, None)),
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
    # SDE samplers start here: f_t and g_t^2 of the linear path diverge at t = 1 (MATH.md §2.4)
    sde_t_max: float = 1.0 - 1e-3

    t_min: float = 0.0

    # -- forward process -------------------------------------------------------------------
    def alpha(self, t):
        return self.path.alpha(jnp.asarray(t, jnp.float32))

    def sigma(self, t):
        return self.path.sigma(jnp.asarray(t, jnp.float32))

    def interpolate(self, x0, x1, t, z=None):
        """x_t = alpha_t x0 + sigma_t x1 + gamma_t z (MATH.md §2.1)."""
        tt = expand(t, x0)
        xt = self.path.alpha(tt) * x0 + self.path.sigma(tt) * x1
        if self.path.gamma is not None:
            xt = xt + self.path.gamma(tt) * z
        return xt

    def target_velocity(self, x0, x1, t, z=None):
        """u* = alpha'_t x0 + sigma'_t x1 + gamma'_t z; linear path: u* = x1 - x0 (MATH.md §2.1)."""
        tt = expand(t, x0)
        u = time_derivative(self.path.alpha, tt) * x0 + time_derivative(self.path.sigma, tt) * x1
        if self.path.gamma is not None:
            u = u + time_derivative(self.path.gamma, tt) * z
        return u

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
        """L_FM = E ||u_theta(x_t, t) - u*||^2 / d, mean over coordinates (MATH.md §2.2)."""
        x0 = batch["x"].astype(jnp.float32)
        k_t, k_x1, k_z, k_drop = jax.random.split(key, 4)
        t = self.sample_times(k_t, x0.shape[0])
        x1 = jax.random.normal(k_x1, x0.shape)
        z = jax.random.normal(k_z, x0.shape) if self.path.gamma is not None else None
        xt = self.interpolate(x0, x1, t, z)
        u = denoiser(xt, t, conditioning(k_drop, batch, self.label_dropout)).astype(jnp.float32)
        err = jnp.mean(jnp.square(u - self.target_velocity(x0, x1, t, z)).reshape(len(x0), -1), 1)
        return jnp.mean(err), {"loss": jnp.mean(err)}

    # -- conversions (Gaussian source, gamma = 0; MATH.md §1.3, §2.3) ----------------------
    def velocity(self, pred, xt, t):
        """The flow velocity of the prediction (identity for flow models)."""
        del xt, t
        return pred

    def _coefficients(self, xt, t):
        if self.path.gamma is not None:
            raise ValueError(
                f"velocity<->score conversion needs a Gaussian-source path with gamma = 0, "
                f"got path {self.path.name!r} (MATH.md §2.3)"
            )
        tt = expand(t, xt)
        return self.alpha(tt), self.sigma(tt), self.d_alpha(tt), self.d_sigma(tt)

    def x0_from_velocity(self, u, xt, t):
        """x_hat = (sigma' z - sigma u) / (alpha sigma' - sigma alpha') (MATH.md §1.3)."""
        a, s, da, ds = self._coefficients(xt, t)
        return (ds * xt - s * u) / (a * ds - s * da)

    def eps_from_velocity(self, u, xt, t):
        """eps_hat = (alpha u - alpha' z) / (alpha sigma' - sigma alpha') (MATH.md §1.3)."""
        a, s, da, ds = self._coefficients(xt, t)
        return (a * u - da * xt) / (a * ds - s * da)

    def x0_eps(self, pred, xt, t):
        return self.x0_from_velocity(pred, xt, t), self.eps_from_velocity(pred, xt, t)

    def score(self, pred, xt, t):
        """s_hat = -eps_hat / sigma with t clamped to [1e-4, 1 - 1e-4] (MATH.md §2.3)."""
        self._coefficients(xt, t)
        return super().score(pred, xt, jnp.clip(t, SCORE_T_CLAMP, 1.0 - SCORE_T_CLAMP))

    def score_from_velocity(self, u, xt, t):
        return self.score(u, xt, t)

    def velocity_from_score(self, score, xt, t):
        """u = f_t x - (g_t^2 / 2) s (MATH.md §1.3)."""
        self._coefficients(xt, t)
        f, half_g2 = self.drift_and_diffusion(xt, t)
        return f * xt - half_g2 * score

    def velocity_from_x0(self, x0_hat, xt, t):
        """u = alpha' x_hat + sigma' eps_hat with eps_hat = (x - alpha x_hat) / sigma."""
        a, s, da, ds = self._coefficients(xt, t)
        return da * x0_hat + ds * (xt - a * x0_hat) / s


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

"""Continuous-time Gaussian (variance-preserving) diffusion (docs/math.md §1).

z_t = alpha_t x + sigma_t eps with alpha_t^2 = sigmoid(lambda_t), sigma_t^2 = sigmoid(-lambda_t);
every schedule is a log-SNR function lambda(t), decreasing from lambda(t_min) to lambda(1).
Sources: Ho et al. (DDPM); Song et al. (score SDE); Kingma et al. (VDM); Salimans & Ho (v).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from difflab.models.common import (
    antithetic_times,
    conditioning,
    expand,
    invert_decreasing,
    time_derivative,
)
from difflab.models.gaussian import GaussianPath

# -- schedules --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A VP schedule given by its log-SNR lambda(t) = log(alpha_t^2 / sigma_t^2)."""

    name: str
    log_snr: Callable[[jax.Array], jax.Array]
    t_min: float = 0.0


def linear_beta(beta_0: float = 0.1, beta_1: float = 20.0, t_min: float = 1e-5) -> Schedule:
    """VP-linear: B(t) = t^2 (b1 - b0) / 2 + t b0, lambda = -log expm1(B) (Song et al.)."""

    def log_snr(t):
        b = 0.5 * t**2 * (beta_1 - beta_0) + t * beta_0
        return -jnp.log(jnp.expm1(b))

    return Schedule("linear", log_snr, t_min)


def cosine(lambda_min: float = -15.0, lambda_max: float = 15.0) -> Schedule:
    """VP-cosine: lambda = -2 log tan(a t + b), b = atan(e^(-lmax/2)), a = atan(e^(-lmin/2)) - b."""
    b = math.atan(math.exp(-lambda_max / 2))
    a = math.atan(math.exp(-lambda_min / 2)) - b
    return Schedule("cosine", lambda t: -2.0 * jnp.log(jnp.tan(a * t + b)), 0.0)


def log_snr_schedule(fn: Callable, t_min: float = 0.0, name: str = "custom") -> Schedule:
    """Any decreasing log-SNR function of t in [t_min, 1]."""
    return Schedule(name, fn, t_min)


SCHEDULES = {"linear": linear_beta, "cosine": cosine}


def alpha_sigma(log_snr: jax.Array):
    """alpha = sqrt(sigmoid(lambda)), sigma = sqrt(sigmoid(-lambda)) (docs/math.md §1.8)."""
    return jnp.sqrt(jax.nn.sigmoid(log_snr)), jnp.sqrt(jax.nn.sigmoid(-log_snr))


# -- the process ------------------------------------------------------------------------------

PARAMETERIZATIONS = ("eps", "x0", "v")
LOSSES = ("simple", "v", "elbo")


@dataclasses.dataclass(frozen=True)
class GaussianDiffusion(GaussianPath):
    """VP diffusion; the network predicts eps, x0 or v (config.process.parameterization)."""

    schedule: Schedule = dataclasses.field(default_factory=cosine)
    parameterization: str = "eps"
    loss_type: str = "simple"
    label_dropout: float = 0.0

    def __post_init__(self):
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"parameterization must be one of {PARAMETERIZATIONS}, "
                f"got {self.parameterization!r}"
            )
        if self.loss_type not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss_type!r}")

    # -- path quantities ----------------------------------------------------------------------
    @property
    def t_min(self) -> float:
        return self.schedule.t_min

    def log_snr(self, t):
        return self.schedule.log_snr(jnp.asarray(t, jnp.float32))

    def alpha(self, t):
        return alpha_sigma(self.log_snr(t))[0]

    def sigma(self, t):
        return alpha_sigma(self.log_snr(t))[1]

    def d_log_snr(self, t):
        return time_derivative(self.schedule.log_snr, t)

    def corrupt(self, key, x0, t, eps=None):
        """A sample of q(z_t | x) = N(alpha_t x, sigma_t^2 I)."""
        eps = jax.random.normal(key, x0.shape) if eps is None else eps
        a, s = alpha_sigma(self.log_snr(expand(t, x0)))
        return a * x0 + s * eps

    # -- parameterizations (docs/math.md §1.3) -----------------------------------------------------
    def x0_eps(self, pred, xt, t):
        """(x_hat, eps_hat) from the network output, for each parameterization (eps: x_hat =
        (z - sigma eps_hat) / alpha; x0; v: x_hat = alpha z - sigma v, docs/math.md §1.3).

        Args:
            pred: the network's prediction [B, ...] (the data's shape). xt: z_t [B, ...].
            t: [B] or scalar times in [0, 1].

        Returns:
            (x_hat [B, ...], eps_hat [B, ...]) float32.
        """
        a, s = alpha_sigma(self.log_snr(expand(t, xt)))
        if self.parameterization == "eps":
            return (xt - s * pred) / a, pred
        if self.parameterization == "x0":
            return pred, (xt - a * pred) / s
        return a * xt - s * pred, s * xt + a * pred  # v

    def velocity(self, pred, xt, t):
        """u = alpha' x_hat + sigma' eps_hat = f z - g^2/2 s (docs/math.md §1.3).

        Args:
            pred: the network's prediction [B, ...] (the data's shape). xt: z_t [B, ...].
            t: [B] or scalar times in [0, 1].

        Returns:
            u [B, ...], the probability-flow velocity dz/dt.
        """
        x0, eps = self.x0_eps(pred, xt, t)
        tt = expand(t, xt)
        a, s = alpha_sigma(self.log_snr(tt))
        dl = self.d_log_snr(tt)
        # d alpha / dt = alpha sigma^2 lambda' / 2, d sigma / dt = -sigma alpha^2 lambda' / 2
        return 0.5 * dl * (a * s**2 * x0 - s * a**2 * eps)

    def pred_from_x0_eps(self, x0, eps, xt, t):
        """The network output that corresponds to (x0, eps), for tests and targets."""
        a, s = alpha_sigma(self.log_snr(expand(t, xt)))
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0}[self.parameterization]

    def pred_from_x0(self, x0_hat, xt, t):
        """The network output whose posterior mean is x_hat: eps_hat = (z - alpha x_hat) / sigma."""
        a, s = alpha_sigma(self.log_snr(expand(t, xt)))
        return self.pred_from_x0_eps(x0_hat, (xt - a * x0_hat) / s, xt, t)

    # -- training -----------------------------------------------------------------------------
    def sample_times(self, key, batch):
        """Antithetic uniform t on [t_min, 1] (VDM)."""
        return self.t_min + (1.0 - self.t_min) * antithetic_times(key, batch)

    def loss(self, denoiser, key, batch):
        """simple: E|eps - eps_hat|^2 / d; v: E|v - v_hat|^2 / d; elbo: the VDM NELBO in bits/dim
        (docs/math.md §1.4), estimated with log-SNR drawn uniformly (`nelbo_draw`). Arguments and
        returns as `models.flow.FlowMatching.loss`: (loss, metrics) of a float batch {"x": [B, ...],
        "label": [B] (optional)}."""
        x0 = batch["x"].astype(jnp.float32)
        k_t, k_eps, k_drop = jax.random.split(key, 3)
        cond = conditioning(k_drop, batch, self.label_dropout)
        if self.loss_type == "elbo":
            d = x0[0].size
            loss = jnp.mean(self.nelbo_draw(denoiser, k_t, x0, cond)) / (d * math.log(2))
            return loss, {"loss": loss}
        t = self.sample_times(k_t, x0.shape[0])
        eps = jax.random.normal(k_eps, x0.shape)
        zt = self.corrupt(None, x0, t, eps)
        pred = denoiser(zt, t, cond).astype(jnp.float32)
        _, eps_hat = self.x0_eps(pred, zt, t)
        sq = jnp.sum(jnp.square(eps - eps_hat).reshape(len(x0), -1), axis=1)
        d = x0[0].size
        if self.loss_type == "simple":
            per_example = sq / d
        else:  # v
            per_example = (1.0 + jnp.exp(-self.log_snr(t))) * sq / d
        loss = jnp.mean(per_example)
        return loss, {"loss": loss}

    # -- likelihood bound ---------------------------------------------------------------------
    def prior_kl(self, x0):
        """KL(N(alpha_1 x, sigma_1^2) || N(0, I)) summed over coordinates."""
        a1, s1 = alpha_sigma(self.log_snr(1.0))
        x = x0.reshape(len(x0), -1)
        return 0.5 * jnp.sum(a1**2 * x**2 + s1**2 - 1.0 - jnp.log(s1**2), axis=1)

    def reconstruction(self, d: int):
        """E -log N(x; z_0 / alpha_0, (sigma_0 / alpha_0)^2) = d/2 log(2 pi e e^(-lambda_0))."""
        return 0.5 * d * (jnp.log(2 * jnp.pi * jnp.e) - self.log_snr(self.t_min))

    def diffusion_draw(self, denoiser, key, x0, cond=None):
        """A one-sample estimate of L_inf = 1/2 int |eps - eps_hat|^2 d lambda per example, with
        lambda antithetic-uniform on [lambda(1), lambda(t_min)]: far lower variance than t
        uniform with weight -lambda'(t) when -lambda' is peaked (the cosine schedule's ends; on a
        2-D mixture with B = 2048 the batch mean's std drops from ~1.25 to ~0.17 nats/dim)."""
        k_t, k_eps = jax.random.split(key)
        lam_lo, lam_hi = self.log_snr(1.0), self.log_snr(self.t_min)
        lam = lam_lo + (lam_hi - lam_lo) * antithetic_times(k_t, x0.shape[0])
        t = invert_decreasing(self.schedule.log_snr, lam, self.t_min, 1.0)
        eps = jax.random.normal(k_eps, x0.shape)
        zt = self.corrupt(None, x0, t, eps)
        _, eps_hat = self.x0_eps(denoiser(zt, t, cond).astype(jnp.float32), zt, t)
        sq = jnp.sum(jnp.square(eps - eps_hat).reshape(len(x0), -1), axis=1)
        return 0.5 * (lam_hi - lam_lo) * sq

    def nelbo_draw(self, denoiser, key, x0, cond=None):
        """A one-sample per-example NELBO in nats: prior + reconstruction + `diffusion_draw`."""
        d = x0[0].size
        diffusion = self.diffusion_draw(denoiser, key, x0, cond)
        return self.prior_kl(x0) + self.reconstruction(d) + diffusion

    def nelbo(self, denoiser, key, x0, cond=None, num_t: int = 1):
        """Per-example continuous-time NELBO in nats (VDM: prior + reconstruction + L_inf),
        averaged over num_t draws of `nelbo_draw`."""
        draws = jax.lax.map(
            lambda k: self.nelbo_draw(denoiser, k, x0, cond), jax.random.split(key, num_t)
        )
        return jnp.mean(draws, axis=0)


def build_process(config) -> GaussianDiffusion:
    pc = config.process
    if pc.schedule == "linear":
        schedule = linear_beta(pc.beta_0, pc.beta_1, pc.t_min)
    elif pc.schedule == "cosine":
        schedule = cosine(pc.lambda_min, pc.lambda_max)
    else:
        raise ValueError(
            f"config.process.schedule must be 'linear' or 'cosine', got {pc.schedule!r}"
        )
    return GaussianDiffusion(schedule, pc.parameterization, pc.loss, pc.label_dropout)

"""Count flow matching: a birth-death process between source and data counts (docs/math.md §4).

Counts x in N^D, data at t = 0 and source counts at t = 1. Per coordinate, the conditional path
moves |x_0 - x_1| unit jumps towards x_0, each at an independent uniform time (the signed-binomial
bridge); the network regresses the conditional birth and death rates with the Poisson (Bregman)
loss, whose minimiser is the marginal rate. Source: Wei & Pearson, "Flow Matching for Count Data"
(count-FM; their time runs the other way, tau = 1 - t).

The denoiser returns pred [..., D, 2]: the log birth rate and the log *per-capita* death rate, so
that the death rate mu = x exp(l_d) is exactly 0 at x = 0 (docs/math.md §4.3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

from difflab.models.common import antithetic_times, conditioning, expand

NEG = -1e9  # log of a zero rate: finite, so that bfloat16 and differences stay defined


# -- the conditional path (signed-binomial bridge) -------------------------------------------


def bridge(key, x0, x1, t):
    """x_t = x_1 + sign(x_0 - x_1) B, B ~ Binomial(|x_0 - x_1|, 1 - t) (docs/math.md §4.2)."""
    diff = x0.astype(jnp.int32) - x1.astype(jnp.int32)
    p = jnp.broadcast_to(1.0 - expand(t, x0), x0.shape)
    moved = jax.random.binomial(key, jnp.abs(diff).astype(jnp.float32), p)
    return x1.astype(jnp.int32) + jnp.sign(diff) * moved.astype(jnp.int32)


def conditional_rates(x0, xt, t):
    """lambda* = (x_0 - x_t)^+ / t (births), mu* = (x_t - x_0)^+ / t (deaths), per unit of -dt."""
    t = expand(t, xt)
    gap = (x0.astype(jnp.int32) - xt.astype(jnp.int32)).astype(jnp.float32)
    return jnp.maximum(gap, 0.0) / t, jnp.maximum(-gap, 0.0) / t


def poisson_kl(target, log_rate):
    """D_KL(a || b) = a log a - a + b - a log b for Poisson rates a = target, b = exp(log_rate)."""
    return xlogy(target, target) - target + jnp.exp(log_rate) - target * log_rate


def soft_cap(log_rate, cap: float):
    """cap - softplus(cap - l): the identity well below `cap`, never above it (keeps exp finite
    and Poisson draws of rate x step inside int32)."""
    return cap - jax.nn.softplus(cap - log_rate)


# -- the process ------------------------------------------------------------------------------

SOURCES = ("poisson", "negbin", "zeros", "data")


@dataclasses.dataclass(frozen=True, eq=False)
class CountFlow:
    """Birth-death flow matching from a source count law (t = 1) to data counts (t = 0).

    source: 'poisson' (mean source_rate), 'negbin' (mean source_rate, shape source_shape),
    'zeros' (delta_0: the path is binomial thinning), or 'data' (rows from `source_draw(key, n)`,
    an empirical source population for transport). Training pairs come from the batch's
    'source' entry when the data pipeline provides one (minibatch-OT or population pairs),
    otherwise x_1 is drawn independently from the source.
    """

    source: str = "poisson"
    source_rate: float = 1.0
    source_shape: float = 1.0
    source_draw: Callable | None = None
    label_dropout: float = 0.0
    t_eps: float = 1e-4  # training and sampling times stay in [t_eps, 1] (rates ~ 1/t)
    log_cap: float = 20.0  # rates <= e^20 ~ 4.9e8 (docs/math.md §4.8)
    # sampling grid t_k = (1 - k/K)^grid_power: < 1 packs steps near t = 1, where the source is
    # far from the data and tau-leaping's jumps are largest (on counts_cells, 0.5 with K = 100
    # matched the uniform grid with K = 200)
    grid_power: float = 0.5

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"config.process.source must be one of {SOURCES}, got {self.source!r}")
        if self.source == "data" and self.source_draw is None:
            raise ValueError(
                "config.process.source='data' needs a data set with a source population "
                "(e.g. config.data.name='cells_transport')"
            )
        if self.source in ("poisson", "negbin") and not self.source_rate > 0:
            raise ValueError(f"config.process.source_rate must be > 0, got {self.source_rate}")
        if self.source == "negbin" and not self.source_shape > 0:
            raise ValueError(f"config.process.source_shape must be > 0, got {self.source_shape}")
        if not 0.0 < self.t_eps < 1.0:
            raise ValueError(f"count flow t_eps must lie in (0, 1), got {self.t_eps}")

    @property
    def t_min(self) -> float:
        return self.t_eps

    # -- source and forward path ----------------------------------------------------------------
    def prior(self, key, shape, t=1.0):
        """x_1 ~ p_src, int32 of `shape` [B, D]."""
        del t
        if self.source == "zeros":
            return jnp.zeros(shape, jnp.int32)
        if self.source == "data":
            x = self.source_draw(key, shape[0])
            if x.shape != tuple(shape):
                raise ValueError(f"source population rows have shape {x.shape}, expected {shape}")
            return x.astype(jnp.int32)
        rate = jnp.full(shape, self.source_rate, jnp.float32)
        if self.source == "negbin":  # Gamma-Poisson with mean source_rate
            k_gamma, key = jax.random.split(key)
            rate = jax.random.gamma(k_gamma, self.source_shape, shape) * (
                self.source_rate / self.source_shape
            )
        return jax.random.poisson(key, rate, shape).astype(jnp.int32)

    def corrupt(self, key, x0, t, x1=None):
        """x_t on the bridge from x_1 (drawn from the source if not given) to x_0."""
        if x1 is None:
            k_src, key = jax.random.split(key)
            x1 = self.prior(k_src, x0.shape)
        return bridge(key, x0, x1, t)

    # -- the model's rates ----------------------------------------------------------------------
    def log_rates(self, pred, x):
        """(log lambda_theta, log beta_theta): log birth rate and log per-capita death rate."""
        pred = soft_cap(pred.astype(jnp.float32), self.log_cap)
        return pred[..., 0], pred[..., 1]

    @staticmethod
    def log_death(log_per_capita, x, empty):
        """log mu = log x + l_d where x > 0, `empty` where x = 0 (no death is possible)."""
        alive = x > 0
        return jnp.where(
            alive, jnp.log(jnp.maximum(x, 1).astype(jnp.float32)) + log_per_capita, empty
        )

    def rates(self, pred, x):
        """(lambda_theta, mu_theta) with mu_theta = x exp(l_d): zero death at x = 0 (docs/math.md
        §4.3).

        Args:
            pred: log-rates [B, D, 2] (birth, per-capita death). x: counts [B, D] int32.

        Returns:
            (birth rates [B, D], death rates [B, D]) float32; log-rates soft-capped at log_cap.
        """
        lb, ld = self.log_rates(pred, x)
        return jnp.exp(lb), x.astype(jnp.float32) * jnp.exp(ld)

    # -- training -------------------------------------------------------------------------------
    def rate_kl(self, pred, x0, xt, t):
        """sum_d KL(lambda* || lambda_theta) + KL(mu* || mu_theta), per example; the death term
        is dropped where x_t = 0 (there mu* = mu_theta = 0)."""
        lb, ld = self.log_rates(pred, xt)
        birth, death = conditional_rates(x0, xt, t)
        log_mu = self.log_death(ld, xt, 0.0)
        kl = poisson_kl(birth, lb) + jnp.where(xt > 0, poisson_kl(death, log_mu), 0.0)
        return jnp.sum(kl, axis=-1)

    def nelbo_draw(self, denoiser, key, x0, x1=None, cond=None):
        """A one-sample estimate of int_{t_eps}^1 E sum_d KL dt (nats per example; docs/math.md
        §4.4), with antithetic t ~ U(t_eps, 1). It bounds -log p(x_0) for independent couplings."""
        k_t, k_path = jax.random.split(key)
        t = self.t_eps + (1.0 - self.t_eps) * antithetic_times(k_t, x0.shape[0])
        xt = self.corrupt(k_path, x0, t, x1)
        return (1.0 - self.t_eps) * self.rate_kl(denoiser(xt, t, cond), x0, xt, t)

    def loss(self, denoiser, key, batch):
        """The rate-matching NELBO in nats per coordinate, averaged over the batch.

        Args:
            denoiser: (x_t [B, ...], t [B], cond [B] or None) -> log-rates [B, D, 2].
            key: a typed PRNG key (times, noise and label dropout are drawn from it).
            batch: {"x": [B, ...] int counts [B, D], "label": [B] int (optional)}.

        Returns:
            (loss, metrics): the scalar loss to minimise and a dict of scalars to log.
        """
        x0 = batch["x"].astype(jnp.int32)
        k_elbo, k_drop = jax.random.split(key)
        cond = conditioning(k_drop, batch, self.label_dropout)
        nelbo = self.nelbo_draw(denoiser, k_elbo, x0, batch.get("source"), cond)
        loss = jnp.mean(nelbo) / x0.shape[-1]
        return loss, {"loss": loss, "nelbo_per_example": jnp.mean(nelbo)}

    def nelbo(self, denoiser, key, x0, cond=None, num_t: int = 1):
        """Per-example NELBO in nats, averaged over num_t independent draws of (t, x_1, x_t)."""
        draws = jax.lax.map(
            lambda k: self.nelbo_draw(denoiser, k, x0, None, cond), jax.random.split(key, num_t)
        )
        return jnp.mean(draws, axis=0)

    # -- reverse process ------------------------------------------------------------------------
    def posterior(self, key, xt, t, s, pred):
        """One tau-leaping move t -> s (docs/math.md §4.5): births ~ Poisson(lambda h), deaths ~
        Binomial(x, min(1, beta h)) with the per-capita rate beta, so x_s >= 0 exactly.

        On the bridge every remaining jump happens at a uniform time in [0, t], so the hazard of a
        unit that must die grows like 1/t and its death probability over [s, t] is
        (beta t) h / t = beta h, not 1 - exp(-beta h) (which leaves e^-1 of them alive on a last
        step with h ~ t). beta h is that law with beta t (the expected share that must die)
        frozen at t; on the final step to t_eps it is the bridge's endpoint law."""
        lb, ld = self.log_rates(pred, xt)
        h = t - s
        k_birth, k_death = jax.random.split(key)
        births = jax.random.poisson(k_birth, jnp.exp(lb) * h, xt.shape).astype(jnp.int32)
        deaths = jax.random.binomial(k_death, xt.astype(jnp.float32), death_probability(ld, h))
        return xt + births - deaths.astype(jnp.int32)

    def unit_jump(self, key, xt, t, s, pred):
        """At most one jump per coordinate (count-FM's Euler step) with the bridge's linear
        hazards (see `posterior`): P(+1) = lambda h, P(-1) = mu h, both scaled down together when
        (lambda + mu) h > 1. The final step to t_eps is the tau-leaping move: there every
        remaining jump must happen, which one jump per coordinate cannot do."""
        birth, death = self.rates(pred, xt)
        h = t - s
        total = (birth + death) * h
        scale = 1.0 / jnp.maximum(total, 1.0)
        p_birth, p_death = birth * h * scale, death * h * scale
        u = jax.random.uniform(key, xt.shape)
        step = (u < p_birth).astype(jnp.int32) - ((u >= p_birth) & (u < p_birth + p_death))
        return jax.lax.cond(
            s <= self.t_eps, lambda: self.posterior(key, xt, t, s, pred), lambda: xt + step
        )


def death_probability(log_per_capita, h):
    """min(1, beta h): the bridge's death probability of each unit over a step h (see
    CountFlow.posterior)."""
    return jnp.minimum(jnp.exp(log_per_capita) * h, 1.0)


COUPLINGS = ("independent", "ot")


def build_process(config, source_draw=None) -> CountFlow:
    """The count flow of config.process; source='data' draws from the data set's population."""
    pc = config.process
    if pc.coupling not in COUPLINGS:
        raise ValueError(f"config.process.coupling must be one of {COUPLINGS}, got {pc.coupling!r}")
    return CountFlow(
        pc.source,
        pc.source_rate,
        pc.source_shape,
        source_draw if pc.source == "data" else None,
        pc.label_dropout,
        pc.t_eps,
        grid_power=pc.grid_power,
    )

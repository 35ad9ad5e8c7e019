"""One- and few-step flow maps: shortcut models and MeanFlow (docs/math.md §5).

Both learn the average velocity of the linear path x_t = (1 - t) x_0 + t eps,
u(x_t, t, h) = (1/h) int_{t-h}^t u(x_s, s) ds, so that x_{t-h} = x_t - h u(x_t, t, h). The network
is called as net(x, t, cond, h) with the step h = t - r; h = 0 is the instantaneous velocity, so
every ODE sampler of the flow family still runs on these models. The same value h conditions the
network in training and in sampling (the reference shortcut code embeds a log2 index in one
place and a value in another; here there is one quantity).

Sources: Frans et al., "One Step Diffusion via Shortcut Models" (ICLR 2025); Geng et al.,
"Mean Flows for One-step Generative Modeling" (2025).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from difflab.models.common import conditioning, expand
from difflab.models.flow import FlowMatching
from difflab.models.mixing import classifier_free  # the bootstrap targets may be guided


def per_example_sq(err):
    """||err||^2 summed over all coordinates of each example."""
    return jnp.sum(jnp.square(err).reshape(err.shape[0], -1), axis=1)


@dataclasses.dataclass(frozen=True)
class AverageVelocityFlow(FlowMatching):
    """The linear flow path with an average-velocity network u(x, t, h)."""

    label_dropout: float = 0.1

    def flow_map(self, u, xt, t, h):
        """x_{t-h} = x_t - h u (docs/math.md §5)."""
        del t
        return xt - expand(h, xt) * u

    @property
    def velocity_step(self) -> float:
        """The step h at which the network's flow rows learn the instantaneous velocity."""
        return 0.0

    def sampling_denoiser(self, denoiser):
        """The denoiser with h = velocity_step wherever a sampler passes no step (the ODE / SDE
        samplers and the likelihood), so that samplers query only trained step sizes."""

        def with_step(x, t, cond=None, h=None):
            h = jnp.full(x.shape[:1], self.velocity_step, jnp.float32) if h is None else h
            return denoiser(x, t, cond, h)

        return with_step


# -- shortcut models ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shortcut(AverageVelocityFlow):
    """Shortcut objective (docs/math.md §5.1). Steps d live on the grid {2^-k : k = 0..levels}; the
    flow-matching rows (all but 1/bootstrap_every of the batch) train the finest step 1/M,
    M = 2^levels, on the conditional velocity eps - x_0; the bootstrap rows train step 2d on
    the average of two consecutive d-steps of the target network (no gradient), equally many
    rows per level 2d in {1, 1/2, ..., 2/M}."""

    levels: int = 7  # M = 128 base steps
    bootstrap_every: int = 8
    target_params: str = "ema"  # the network giving bootstrap targets: "ema" or "online"
    bootstrap_cfg: bool = False  # guided targets at the finest bootstrap level (reference code)
    cfg_scale: float = 1.5
    clip: float = 4.0  # targets and the intermediate point are clipped to +-clip (data ~ [-1, 1])

    def __post_init__(self):
        if self.levels < 1:
            raise ValueError(f"shortcut levels must be >= 1, got {self.levels}")
        if self.bootstrap_every < 2:
            raise ValueError(f"bootstrap_every must be >= 2, got {self.bootstrap_every}")
        if self.target_params not in ("ema", "online"):
            raise ValueError(
                f"config.process.target_params must be 'ema' or 'online', got "
                f"{self.target_params!r}"
            )

    @property
    def base_steps(self) -> int:
        return 2**self.levels

    def step_sizes(self):
        """Every step size the network is trained on: 1/M (flow part) and 2d in 1..2/M."""
        return tuple(2.0**-k for k in range(self.levels + 1))

    @property
    def velocity_step(self) -> float:
        """The flow rows train h = 1/M on the conditional velocity (never h = 0)."""
        return 1.0 / self.base_steps

    def check_batch(self, batch_size: int) -> None:
        """Every level must get bootstrap rows: B divisible by bootstrap_every and B /
        bootstrap_every >= levels (the reference code silently trains only d = 1 otherwise)."""
        rows = batch_size // self.bootstrap_every
        if batch_size % self.bootstrap_every or rows < self.levels:
            need = self.bootstrap_every * self.levels
            raise ValueError(
                f"config.train.batch_size={batch_size} gives {rows} bootstrap rows for "
                f"{self.levels} step levels; it must be a multiple of "
                f"bootstrap_every={self.bootstrap_every} and at least {need}"
            )

    def bootstrap_target(self, target, xt, t, d, cond, cfg_rows=None):
        """sg(clip((s_1 + s_2) / 2)), s_1 = u(x_t, t, d), s_2 = u(clip(x_t - d s_1), t - d, d)
        (docs/math.md §5.1); cfg_rows selects rows whose s_1, s_2 are CFG-guided."""

        def velocity(x, tt):
            u = target(x, tt, cond, d)
            if cfg_rows is not None and cond is not None:
                u_cfg = classifier_free(target, self.cfg_scale)(x, tt, cond, d)
                u = jnp.where(expand(cfg_rows, u), u_cfg, u)
            return u

        s1 = velocity(xt, t)
        x_mid = jnp.clip(xt - expand(d, xt) * s1, -self.clip, self.clip)
        s2 = velocity(x_mid, t - d)
        return jax.lax.stop_gradient(jnp.clip(0.5 * (s1 + s2), -self.clip, self.clip))

    def loss(self, denoiser, key, batch, target=None):
        """MSE of u(x_t, t, h) against eps - x_0 (h = 1/M) and the bootstrap targets (h = 2d)."""
        x0 = batch["x"].astype(jnp.float32)
        size = x0.shape[0]
        self.check_batch(size)
        rows = size // self.bootstrap_every
        k_tf, k_tb, k_eps, k_drop = jax.random.split(key, 4)
        cond = conditioning(k_drop, batch, self.label_dropout)
        target = denoiser if target is None else target
        m = self.base_steps
        # bootstrap rows: level i = row mod levels, big step 2d = 2^-i, t on {2d, 4d, .., 1}
        level = jnp.arange(rows) % self.levels
        big = 2.0 ** -level.astype(jnp.float32)
        n_big = jnp.round(1.0 / big)
        t_b = big * jnp.floor(jax.random.uniform(k_tb, (rows,)) * n_big + 1.0)
        # flow rows: t = j / M, j uniform on 1..M
        t_f = jnp.floor(jax.random.uniform(k_tf, (size - rows,)) * m + 1.0) / m
        t = jnp.concatenate([t_b, jnp.minimum(t_f, 1.0)])
        eps = jax.random.normal(k_eps, x0.shape)
        xt = self.interpolate(x0, eps, t)
        h = jnp.concatenate([big, jnp.full((size - rows,), 1.0 / m)])
        cfg_rows = (level == self.levels - 1) if self.bootstrap_cfg else None
        cond_b = None if cond is None else cond[:rows]
        u_b = self.bootstrap_target(target, xt[:rows], t_b, 0.5 * big, cond_b, cfg_rows)
        u_star = jnp.concatenate([u_b, (eps - x0)[rows:]])
        err = per_example_sq(denoiser(xt, t, cond, h).astype(jnp.float32) - u_star)
        per_dim = err / (x0.size // size)
        loss = jnp.mean(per_dim)
        return loss, {
            "loss": loss,
            "flow_loss": jnp.mean(per_dim[rows:]),
            "bootstrap_loss": jnp.mean(per_dim[:rows]),
        }


# -- MeanFlow --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MeanFlow(AverageVelocityFlow):
    """MeanFlow objective (docs/math.md §5.2): u_tgt = sg(v - (t - r) du/dt) with
    (u, du/dt) = jvp(u_theta, (z, r, t), (v, 0, 1)), adaptive weight 1 / sg((Delta + c)^p);
    (t, r) from two logit-normal draws ordered, r = t on a fraction flow_fraction of rows.
    Guidance folded into the target: v~ = omega v + (1 - omega - kappa) u(z, t, t | null) +
    kappa u(z, t, t | c) on labelled rows (omega = 1, kappa = 0: no guidance)."""

    logit_mean: float = -0.4
    logit_std: float = 1.0
    flow_fraction: float = 0.75
    norm_p: float = 1.0
    norm_eps: float = 0.01
    cfg_omega: float = 1.0
    cfg_kappa: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.flow_fraction <= 1.0:
            raise ValueError(f"meanflow flow_fraction must lie in [0, 1], got {self.flow_fraction}")

    time_sampling: str = "logit_normal"  # or "uniform"

    def times(self, key, size: int):
        """(r, t): ordered pairs of independent logit-normal (or uniform) times; r = t on the
        first flow_fraction of the rows."""
        k1, k2 = jax.random.split(key)
        if self.time_sampling == "uniform":
            a, b = jax.random.uniform(k1, (size,)), jax.random.uniform(k2, (size,))
        elif self.time_sampling == "logit_normal":
            a = jax.nn.sigmoid(self.logit_mean + self.logit_std * jax.random.normal(k1, (size,)))
            b = jax.nn.sigmoid(self.logit_mean + self.logit_std * jax.random.normal(k2, (size,)))
        else:
            raise ValueError(
                f"meanflow time_sampling must be 'logit_normal' or 'uniform', got "
                f"{self.time_sampling!r}"
            )
        t, r = jnp.maximum(a, b), jnp.minimum(a, b)
        flow_rows = jnp.arange(size) < round(self.flow_fraction * size)
        return jnp.where(flow_rows, t, r), t

    def target(self, denoiser, z, r, t, v, cond):
        """(u_theta(z, t, t - r), sg(v - clip(t - r, 0, 1) du/dt)), du/dt = v d_z u + d_t u by
        one jax.jvp; the step h = t - r has tangent 1 (from t) - 0 (from r)."""

        def u_of(z, r, t):
            return denoiser(z, t, cond, t - r)

        u, dudt = jax.jvp(u_of, (z, r, t), (v, jnp.zeros_like(r), jnp.ones_like(t)))
        u_tgt = v - expand(jnp.clip(t - r, 0.0, 1.0), z) * dudt
        return u, jax.lax.stop_gradient(u_tgt)

    def guided_velocity(self, denoiser, z, t, v, cond):
        """v~ with the network's instantaneous velocities (no gradient); v on null-label rows."""
        if cond is None or (self.cfg_omega == 1.0 and self.cfg_kappa == 0.0):
            return v
        zero = jnp.zeros_like(t)
        u_null = denoiser(z, t, -jnp.ones_like(cond), zero)
        u_cond = denoiser(z, t, cond, zero)
        mix = (
            self.cfg_omega * v
            + (1.0 - self.cfg_omega - self.cfg_kappa) * u_null
            + self.cfg_kappa * u_cond
        )
        return jnp.where(expand(cond >= 0, v), jax.lax.stop_gradient(mix), v)

    def loss(self, denoiser, key, batch, target=None):
        """E[Delta / sg((Delta + c)^p)], Delta = ||u_theta - u_tgt||^2 per example."""
        del target
        x0 = batch["x"].astype(jnp.float32)
        size = x0.shape[0]
        k_t, k_eps, k_drop = jax.random.split(key, 3)
        cond = conditioning(k_drop, batch, self.label_dropout)
        r, t = self.times(k_t, size)
        eps = jax.random.normal(k_eps, x0.shape)
        z = self.interpolate(x0, eps, t)
        v = self.guided_velocity(denoiser, z, t, eps - x0, cond)
        u, u_tgt = self.target(denoiser, z, r, t, v, cond)
        delta = per_example_sq(u.astype(jnp.float32) - u_tgt)
        weight = jax.lax.stop_gradient(1.0 / (delta + self.norm_eps) ** self.norm_p)
        loss = jnp.mean(weight * delta)
        return loss, {"loss": loss, "mse": jnp.mean(delta) / (x0.size // size)}


def from_config(cls, config):
    """cls built from the config.process fields that name its dataclass fields."""
    pc = config.process
    names = {f.name for f in dataclasses.fields(cls)} & set(pc.keys())
    return cls(**{name: pc[name] for name in names})

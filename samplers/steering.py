"""FK steering: sample p(x0) exp(lambda r(x0)) / Z with SMC and reward potentials (docs/math.md
§7.2; Singhal et al. 2025).

Intermediate rewards are taken at the denoised estimate of each particle, from the same
network evaluation the sampler step uses:

- Gaussian families: Tweedie's x_hat = E[x0 | x_t];
- masked diffusion: `draws` samples of the denoiser with the unmasked positions kept, combined by
  (1/lambda) log mean exp(lambda r) (the plain mean when lambda = 0);
- count flows: the rate-implied posterior mean x_hat = x_t + t (lambda - mu) (the bridge's
  conditional rates are (x0 - x_t)^+ / t and (x_t - x0)^+ / t), real-valued.

Potentials log G_k from the rewards r_k (memory m, one value per particle):
  diff  lambda (r_k - m), m <- r_k, m starts at reward_min (a constant, so the product telescopes)
  max   lambda m, m <- max(m, r_k)
  add   lambda m, m <- m + r_k
  rt    lambda r_k
The final increment lambda r(x0) - sum_k log G_k makes the product of all increments exactly
exp(lambda r(x0)) for each lineage, so the target is exact as N -> infinity for every potential
(they differ only in variance) and log Z estimates log E_p[exp(lambda r(x0))].

Rewards map samples [N, ...] to [N]: JAX functions, or NumPy/Python functions through
`host_reward` (jax.pure_callback; they need not be differentiable).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from difflab.models import families
from difflab.models.categorical import categorical
from difflab.samplers.smc import Potential

POTENTIALS = ("diff", "max", "add", "rt")


def host_reward(fn):
    """A reward computed on the host: fn(numpy samples [N, ...]) -> [N] floats, called through
    jax.pure_callback (not differentiated; one call per evaluation)."""

    def call(x):
        r = np.asarray(fn(np.asarray(x)), np.float32)
        if r.shape != x.shape[:1]:
            raise ValueError(
                f"a reward must return one value per sample {x.shape[:1]}, got {r.shape}"
            )
        return r

    def reward(x):
        out = jax.ShapeDtypeStruct(x.shape[:1], jnp.float32)
        return jax.pure_callback(call, out, x, vmap_method="sequential")

    return reward


# -- denoised estimates: [M, N, ...] draws (M = 1 where the estimate is a mean) ----------------


def gaussian_estimate(key, model, pred, x, t):
    """Tweedie's x_hat(x_t, t) from the step's prediction."""
    del key
    return model.process.x0_eps(pred, x, t)[0][None]


def count_estimate(key, model, pred, x, t):
    """x_hat = x_t + t (lambda_theta - mu_theta): the posterior mean the marginal rates imply."""
    del key
    birth, death = model.process.rates(pred, x)
    return (x + t * (birth - death))[None]


def masked_estimate(draws: int = 4, float64: bool = True):
    """`draws` samples x0 ~ p_theta(. | z_t) with the unmasked positions of z_t kept."""

    def estimate(key, model, pred, z, t):
        del t
        lp = model.process.log_probs(pred, z)
        keys = jax.random.split(key, draws)
        ys = jax.vmap(lambda k: categorical(k, lp, float64))(keys)
        return jnp.where(z == model.process.mask_id, ys, z)

    return estimate


def uniform_estimate(draws: int = 4, float64: bool = True):
    """`draws` samples x0 ~ p_theta(. | z_t) at every position (uniform noise keeps none)."""

    def estimate(key, model, pred, z, t):
        del t
        lp = model.process.log_probs(pred, z)
        return jax.vmap(lambda k: categorical(k, lp, float64))(jax.random.split(key, draws))

    return estimate


# by the `estimate` of each family's record (models.families)
ESTIMATES = {
    "tweedie": gaussian_estimate,
    "masked": masked_estimate(),
    "uniform": uniform_estimate(),
    "counts": count_estimate,
}


def estimate_for(family: str, estimates=None):
    """The denoised estimate of a model family (its record's `estimate`), from `estimates`
    (default: these draws); a clear error for a family that defines none."""
    kind = families.get(family).estimate
    if kind is None:
        having = families.having(lambda f: f.estimate is not None)
        raise ValueError(
            f"the {family!r} family defines no denoised estimate for the reward to value (FK "
            f"steering, SVDD-PM); families with one: {having}"
        )
    return (estimates or ESTIMATES)[kind]


def soft_reward(reward, lam, xs):
    """(1/lambda) log mean_m exp(lambda r(x_m)) over the draws [M, N, ...] (mean at lambda 0)."""
    r = jax.vmap(reward)(xs)
    if lam == 0:
        return jnp.mean(r, axis=0)
    return (jax.nn.logsumexp(lam * r, axis=0) - jnp.log(r.shape[0])) / lam


def update(kind: str, lam: float, memory, r):
    """(log G_k, new memory) of potential `kind` from the reward r_k (see the module doc)."""
    if kind == "diff":
        return lam * (r - memory), r
    if kind == "max":
        m = jnp.maximum(memory, r)
        return lam * m, m
    if kind == "add":
        m = memory + r
        return lam * m, m
    return lam * r, memory


def initial_memory(kind: str, reward_min: float) -> float:
    return {"diff": reward_min, "max": -jnp.inf, "add": 0.0, "rt": 0.0}[kind]


def reward_potential(
    reward,
    lam: float,
    kind: str = "diff",
    estimate=gaussian_estimate,
    reward_min: float = 0.0,
    every: int = 1,
) -> Potential:
    """FK steering's potential for the target p(x0) exp(lam r(x0)) / Z, applied on every
    `every`-th step (steps k with (k + 1) % every == 0; the rewards are computed only there).
    max, add and rt multiply a whole reward factor in at each application, so their weights
    degenerate when applied on every one of hundreds of steps: apply them every ~20 steps, as
    FK steering does (diff telescopes and may run on every step).

    Args:
        reward: x0 [N, ...] -> r [N] (JAX, or a host function through `host_reward`).
        lam: lambda. kind: "diff", "max", "add" or "rt".
        estimate: the denoised estimate the reward is taken at (Gaussian Tweedie by default;
            `count_estimate`, `samplers.svdd.masked_estimate` for the other families).
        reward_min: diff's starting reward m_0 (a constant). every: apply on every k-th step.

    Returns:
        A `samplers.smc.Potential` for `samplers.smc.smc`; with its final correction the
        product of all increments is exp(lam r(x0)) on every lineage, so log Z estimates
        log E_p[exp(lam r)].
    """
    if kind not in POTENTIALS:
        raise ValueError(f"potential must be one of {POTENTIALS}, got {kind!r}")
    if int(every) != every or every < 1:
        raise ValueError(f"a potential applies every k >= 1 steps, got every={every}")
    lam = float(lam)

    def start(x):
        n = jax.tree.leaves(x)[0].shape[0]
        m = jnp.full((n,), initial_memory(kind, reward_min))
        return m, jnp.zeros((n,)), jnp.zeros((n,), jnp.int32)

    def step(key, model, pred, x, t, s, memory):
        del s
        m, total, count = memory

        def apply(m):
            r = soft_reward(reward, lam, estimate(key, model, pred, x, t))
            return update(kind, lam, m, r)

        due = (count[0] + 1) % every == 0
        log_g, m = jax.lax.cond(due, apply, lambda m: (jnp.zeros_like(total), m), m)
        return log_g, (m, total + log_g, count + 1)

    def final(key, model, x, memory):
        del key, model
        return lam * reward(x) - memory[1]

    return Potential(start, step, final)

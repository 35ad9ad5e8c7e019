"""Generated 2-D distributions; one example per key so batches never depend on the device layout."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def checkerboard(key):
    """Uniform on the 8 dark unit cells of a 4x4 board on [-2, 2]^2 (FFJORD's checkerboard)."""
    k_cell, k_pos = jax.random.split(key)
    cell = jax.random.randint(k_cell, (), 0, 8)
    row = cell // 2
    col = 2 * (cell % 2) + row % 2
    return jnp.stack([col, row]).astype(jnp.float32) - 2.0 + jax.random.uniform(k_pos, (2,))


def two_moons(key, noise: float = 0.05):
    """Two interleaved half circles (scikit-learn's make_moons), centred and scaled by 2."""
    k_side, k_angle, k_noise = jax.random.split(key, 3)
    side = jax.random.bernoulli(k_side)
    a = jnp.pi * jax.random.uniform(k_angle)
    upper = jnp.stack([jnp.cos(a), jnp.sin(a)])
    lower = jnp.stack([1.0 - jnp.cos(a), 0.5 - jnp.sin(a)])
    x = jnp.where(side, upper, lower) - jnp.array([0.5, 0.25])
    return 2.0 * x + noise * 2.0 * jax.random.normal(k_noise, (2,))


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """p(x) = sum_k w_k N(mu_k, diag(std_k^2)); the parameters are exposed for oracle tests."""

    weights: np.ndarray  # [K]
    means: np.ndarray  # [K, D]
    stds: np.ndarray  # [K, D]

    def sample_one(self, key):
        k_comp, k_noise = jax.random.split(key)
        k = jax.random.categorical(k_comp, jnp.log(jnp.asarray(self.weights, jnp.float32)))
        eps = jax.random.normal(k_noise, (self.means.shape[1],))
        means, stds = jnp.asarray(self.means, jnp.float32), jnp.asarray(self.stds, jnp.float32)
        return means[k] + stds[k] * eps

    def sample(self, key, n: int):
        return jax.vmap(self.sample_one)(jax.random.split(key, n))


def ring_mixture(components: int = 8, radius: float = 4.0, std: float = 0.3) -> GaussianMixture:
    """Equal-weight isotropic components on a circle (docs/math.md §8.2 standard 2-D GMM)."""
    angles = 2 * np.pi * np.arange(components) / components
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture(
        np.full(components, 1.0 / components), means, np.full((components, 2), std)
    )


def standard_mixture_1d() -> GaussianMixture:
    """docs/math.md §8.2 standard 1-D GMM: mean 0.15, variance 3.8435."""
    return GaussianMixture(
        np.array([0.2, 0.5, 0.3]), np.array([[-3.0], [0.0], [2.5]]), np.array([[0.3], [0.5], [0.4]])
    )


EIGHT_GAUSSIANS = ring_mixture(8, radius=2.0, std=0.15)
GMM = ring_mixture(8, radius=4.0, std=0.3)

GENERATORS = {
    "checkerboard": checkerboard,
    "moons": two_moons,
    "eight_gaussians": EIGHT_GAUSSIANS.sample_one,
    "gmm": GMM.sample_one,
}

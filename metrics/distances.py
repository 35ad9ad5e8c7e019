"""Sample-based distances between point clouds: sliced Wasserstein and energy distance."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _flat(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x.reshape(x.shape[0], -1)


def sliced_wasserstein(x, y, num_projections: int = 256, seed: int = 0) -> float:
    """SW_2 = sqrt(E_theta W_2^2(theta.x, theta.y)), theta uniform on the sphere (Bonneel et al.).

    1-D W_2 between the empirical quantile functions on a common grid of n = min(|x|, |y|) points.
    """
    return float(_sliced_wasserstein(_flat(x), _flat(y), num_projections, seed))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _sliced_wasserstein(x, y, num_projections: int, seed: int) -> jax.Array:
    theta = jax.random.normal(jax.random.key(seed), (x.shape[1], num_projections))
    theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
    n = min(x.shape[0], y.shape[0])
    q = (jnp.arange(n) + 0.5) / n
    qx = jnp.quantile(x @ theta, q, axis=0)
    qy = jnp.quantile(y @ theta, q, axis=0)
    return jnp.sqrt(jnp.mean(jnp.square(qx - qy)))


def _mean_pairwise_distance(a, b, chunk: int = 1024) -> jax.Array:
    total = 0.0
    for i in range(0, a.shape[0], chunk):
        d = jnp.linalg.norm(a[i : i + chunk, None, :] - b[None], axis=-1)
        total = total + jnp.sum(d)
    return total / (a.shape[0] * b.shape[0])


def energy_distance(x, y) -> float:
    """D_E = 2 E|X - Y| - E|X - X'| - E|Y - Y'| (Szekely & Rizzo), V-statistic."""
    return float(_energy_distance(_flat(x), _flat(y)))


@jax.jit
def _energy_distance(x, y) -> jax.Array:
    return (
        2 * _mean_pairwise_distance(x, y)
        - _mean_pairwise_distance(x, x)
        - _mean_pairwise_distance(y, y)
    )


def point_cloud_report(samples, dataset, n: int, seed: int = 0) -> dict:
    """SW and energy distance of samples vs fresh data, next to data vs independent data."""
    ref = dataset.reference(2 * n, seed)
    a, b = ref[:n], ref[n:]
    samples = np.asarray(samples)[:n]
    return {
        "sliced_wasserstein": sliced_wasserstein(samples, a),
        "sliced_wasserstein_data": sliced_wasserstein(b, a),
        "energy_distance": energy_distance(samples, a),
        "energy_distance_data": energy_distance(b, a),
    }

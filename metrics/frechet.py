"""Frechet distance of digit samples in the feature space of a small, deterministic classifier.

The classifier (an MLP on the 64 pixels; features = its last hidden layer) is trained on the
embedded digits with a fixed seed and full-batch Adam, then cached under `.cache/` so every run
measures with the same features. This is the digits analogue of FID (Heusel et al.).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

CACHE = os.environ.get("DIFFLAB_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache"))
WIDTHS = (64, 256, 128, 10)
TRAIN_STEPS = 1500


def _init(key):
    keys = jax.random.split(key, len(WIDTHS) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) * np.sqrt(2.0 / a), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, WIDTHS[:-1], WIDTHS[1:], strict=True)
    ]


@jax.jit
def features(params, x) -> jax.Array:
    """Last hidden layer (128 ReLU units) of the classifier; x in [-1, 1], shape [N, 8, 8, 1]."""
    h = jnp.asarray(x, jnp.float32).reshape(len(x), -1)
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    return h


@jax.jit
def logits(params, x) -> jax.Array:
    return features(params, x) @ params[-1]["w"] + params[-1]["b"]


def train_classifier(seed: int = 0):
    """Full-batch AdamW on the 90% digits train split; returns (params, held-out accuracy)."""
    from difflab import data

    train, test = data.digits(0, "train"), data.digits(0, "test")
    params = _init(jax.random.key(seed))
    opt = optax.adamw(1e-3, weight_decay=1e-4)
    state = opt.init(params)

    def loss_fn(p):
        ce = optax.softmax_cross_entropy_with_integer_labels(logits(p, train.x), train.label)
        return ce.mean()

    @jax.jit
    def step(p, s):
        g = jax.grad(loss_fn)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s

    for _ in range(TRAIN_STEPS):
        params, state = step(params, state)
    acc = float(jnp.mean(jnp.argmax(logits(params, test.x), -1) == test.label))
    return params, acc


def classifier():
    """The cached classifier parameters (trained on first use) and its held-out accuracy."""
    path = os.path.join(CACHE, "digit_classifier.npz")
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as f:
            params = [{"w": f[f"w{i}"], "b": f[f"b{i}"]} for i in range(len(WIDTHS) - 1)]
            return params, float(f["accuracy"])
    params, acc = train_classifier()
    os.makedirs(CACHE, exist_ok=True)
    flat = {f"{k}{i}": np.asarray(layer[k]) for i, layer in enumerate(params) for k in "wb"}
    tmp = f"{path}.{os.getpid()}.tmp.npz"  # one per process: concurrent first uses never collide
    np.savez(tmp, accuracy=acc, **flat)
    os.replace(tmp, path)
    return params, acc


def frechet_distance_from_stats(mu1, cov1, mu2, cov2) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), symmetric square roots by eigh."""

    def sqrtm_psd(c):
        w, v = np.linalg.eigh(c)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r1 = sqrtm_psd(cov1)
    cross = sqrtm_psd(r1 @ cov2 @ r1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(cross))


def frechet_distance(x, y) -> float:
    """Frechet distance between Gaussians fitted to classifier features of images x and y."""
    params, _ = classifier()
    fx = np.asarray(features(params, x), np.float64)
    fy = np.asarray(features(params, y), np.float64)
    return frechet_distance_from_stats(
        fx.mean(0), np.cov(fx, rowvar=False), fy.mean(0), np.cov(fy, rowvar=False)
    )


def digits_report(samples, dataset, n: int, seed: int = 0, decode=np.asarray) -> dict:
    """FD of n samples vs n data digits, next to FD between two disjoint halves of the data;
    `decode` maps the data's representation (e.g. pixel tokens) to images."""
    ref = decode(dataset.reference(2 * n, seed))
    samples = decode(samples)
    n = min(n, len(ref) // 2)
    a, b = ref[:n], ref[n : 2 * n]
    return {
        "frechet_distance": frechet_distance(np.asarray(samples)[:n], a),
        "frechet_distance_data": frechet_distance(b, a),
    }

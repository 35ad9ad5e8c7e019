"""Count data: simulated scRNA-seq-like cells and neural spike counts with known generative laws,
a source population paired with a target (for transport), and views of counts as continuous
points or capped tokens (for baselines of other families).

Counts are int32 [N, D], non-negative. Simulated laws are fixed by a law seed (0) and examples are
drawn per key, so batches are pure functions of (seed, step, index) like every data set here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from difflab.data.coupling import OT_COSTS, ot_permutation

# -- scRNA-seq-like cells: a negative-binomial mixture of cell types with gene programs ----------


@dataclasses.dataclass(frozen=True, eq=False)
class CellLaw:
    """x_g | cell ~ NB(mean = library * softmax(base + a @ programs)_g, dispersion theta_g),
    a = activity[type] + noise * N(0, I), library ~ LogNormal(log_library, library_std)."""

    base: np.ndarray  # [G] baseline log expression
    programs: np.ndarray  # [P, G] gene-program loadings (each program lifts a gene subset)
    activity: np.ndarray  # [K, P] program activity of each cell type
    dispersion: np.ndarray  # [G] NB shape theta (variance = mean + mean^2 / theta)
    type_weights: np.ndarray  # [K]
    log_library: float = float(np.log(2000.0))
    library_std: float = 0.4
    activity_noise: float = 0.3

    @property
    def genes(self) -> int:
        return self.base.shape[0]

    @property
    def types(self) -> int:
        return self.activity.shape[0]

    def sample(self, key):
        """One cell: {'x': int32 [G] counts, 'label': its type}."""
        k_type, k_act, k_lib, k_gamma, k_pois = jax.random.split(key, 5)
        kind = jax.random.categorical(k_type, jnp.log(jnp.asarray(self.type_weights)))
        act = jnp.asarray(self.activity)[kind]
        act = act + self.activity_noise * jax.random.normal(k_act, act.shape)
        share = jax.nn.softmax(jnp.asarray(self.base) + act @ jnp.asarray(self.programs))
        library = jnp.exp(self.log_library + self.library_std * jax.random.normal(k_lib))
        theta = jnp.asarray(self.dispersion)
        mean = library * share
        lam = jax.random.gamma(k_gamma, theta) * mean / theta
        x = jax.random.poisson(k_pois, lam).astype(jnp.int32)
        return {"x": x, "label": kind.astype(jnp.int32)}


def cell_law(genes: int = 100, types: int = 5, programs: int = 8, condition: str = "base"):
    """A fixed simulated tissue (law seed 0). condition='aged' shifts two programs' activity and
    lowers library sizes: the target population of the transport demo."""
    if condition not in ("base", "aged"):
        raise ValueError(f"cell condition must be 'base' or 'aged', got {condition!r}")
    if genes < 4 or types < 1 or programs < 1:
        raise ValueError(f"cells need >= 4 genes, >= 1 type, >= 1 program; got {genes}, {types}")
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 1.2, genes)
    loadings = np.zeros((programs, genes))
    for p in range(programs):
        members = rng.choice(genes, size=max(2, genes // 7), replace=False)
        loadings[p, members] = rng.uniform(1.0, 2.5, members.size)
    activity = np.zeros((types, programs))
    for k in range(types):
        activity[k, rng.choice(programs, size=min(2, programs), replace=False)] = 1.0
    dispersion = np.exp(rng.uniform(np.log(2.0), np.log(20.0), genes))
    weights = rng.dirichlet(np.full(types, 5.0))
    law = CellLaw(base, loadings, activity, dispersion, weights)
    if condition == "aged":
        shift = np.zeros(programs)
        shift[: min(2, programs)] = (1.5, -1.0)[: min(2, programs)]
        law = dataclasses.replace(law, activity=activity + shift, log_library=float(np.log(1200.0)))
    return law


# -- neural spike counts: Poisson observations of low-dimensional latent dynamics ---------------


@dataclasses.dataclass(frozen=True, eq=False)
class SpikeLaw:
    """A trial of `bins` time bins x `neurons`: latent z_b = amp R(omega b + phase) [1, 0] + drift
    (a noisy 2-D rotation), counts ~ Poisson(exp(bias + C z_b)), flattened bin-major to [B*N]."""

    readout: np.ndarray  # [N, 2]
    bias: np.ndarray  # [N] log baseline rate per bin
    bins: int
    omega: float

    @property
    def neurons(self) -> int:
        return self.bias.shape[0]

    def sample(self, key):
        k_phase, k_amp, k_drift, k_pois = jax.random.split(key, 4)
        phase = jax.random.uniform(k_phase, (), maxval=2 * np.pi)
        amp = jax.random.uniform(k_amp, (), minval=0.5, maxval=1.5)
        b = jnp.arange(self.bins, dtype=jnp.float32)
        z = amp * jnp.stack([jnp.cos(self.omega * b + phase), jnp.sin(self.omega * b + phase)], 1)
        z = z + jnp.cumsum(0.15 * jax.random.normal(k_drift, (self.bins, 2)), axis=0)
        log_rate = jnp.asarray(self.bias) + z @ jnp.asarray(self.readout).T
        return jax.random.poisson(k_pois, jnp.exp(log_rate)).astype(jnp.int32).reshape(-1)


def spike_law(neurons: int = 24, bins: int = 16) -> SpikeLaw:
    """A fixed population (law seed 0): ~1.5 spikes per bin at baseline, readout ~ N(0, 0.7)."""
    if neurons < 1 or bins < 2:
        raise ValueError(f"spikes need >= 1 neuron and >= 2 bins, got {neurons} and {bins}")
    rng = np.random.default_rng(0)
    readout = rng.normal(0.0, 0.7, (neurons, 2))
    bias = np.log(1.5) + rng.normal(0.0, 0.5, neurons)
    return SpikeLaw(readout, bias, bins, 2 * np.pi * 1.5 / bins)


# -- a source population paired with the target (transport, minibatch-OT couplings) -----------


@dataclasses.dataclass(frozen=True, eq=False)
class PairedSource:
    """Target batches with a paired source batch under key 'source'. The pairing is independent
    or minibatch OT (exact assignment on the whole global batch, so every process sees the same
    global pairs). `draw(key, n)` gives n source rows and is traceable (used by the sampler's
    prior too)."""

    target: object
    draw: Callable
    coupling: str = "independent"
    cost: str = "l1"
    seed: int = 0

    def __getattr__(self, name):  # name, shape, kind, num_classes, reference... of the target
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.target, name)

    @functools.cached_property
    def _draw(self):
        def draw(root, fold, n):  # key_n = fold_in(key(root), fold), in the same call
            return self.draw(jax.random.fold_in(jax.random.key(root), fold), n)

        return jax.jit(draw, static_argnums=2)

    def __post_init__(self):
        if self.coupling not in ("independent", "ot"):
            raise ValueError(
                f"config.process.coupling must be 'independent' or 'ot', got {self.coupling!r}"
            )
        if self.coupling == "ot" and self.cost not in OT_COSTS:
            raise ValueError(f"config.process.ot_cost must be one of {OT_COSTS}, got {self.cost!r}")

    def batch(self, step: int, start: int, size: int, global_batch: int | None = None) -> dict:
        g = global_batch or size
        out = self.target.batch(step, 0, g, g)
        source = np.asarray(self._draw(np.uint32(self.seed + 3_000_017), np.uint32(step), g))
        if self.coupling == "ot":
            source = source[ot_permutation(out["x"], source, self.cost)]
        out["source"] = source
        return {k: v[start : start + size] for k, v in out.items()}


def generated_draw(generator: Callable) -> Callable:
    """draw(key, n): n rows of a per-key generator (its 'x' if it returns a dict)."""

    def draw(key, n):
        rows = jax.vmap(lambda i: generator(jax.random.fold_in(key, i)))(jnp.arange(n))
        return rows["x"] if isinstance(rows, dict) else rows

    return draw


def array_draw(x: np.ndarray) -> Callable:
    """draw(key, n): n rows of a stored population, uniformly with replacement."""
    table = jnp.asarray(x, jnp.int32)

    def draw(key, n):
        return table[jax.random.randint(key, (n,), 0, table.shape[0])]

    return draw


@functools.partial(jax.jit, static_argnums=(3, 4))
def _row_uniforms(root, fold, start, size: int, shape: tuple):
    key = jax.random.fold_in(jax.random.key(root), fold)
    rows = jnp.asarray(start, jnp.uint32) + jnp.arange(size, dtype=jnp.uint32)
    return jax.vmap(lambda r: jax.random.uniform(jax.random.fold_in(key, r), shape))(rows)


def row_uniforms(root: int, fold: int, start: int, size: int, shape: tuple) -> np.ndarray:
    """U[0, 1) noise of `shape` for global rows [start, start + size), row r from
    fold_in(key_n, r), key_n = fold_in(key(root), fold): the same values whatever the slicing of
    a batch over processes (dequantisation noise). One compiled call, keys included."""
    return np.asarray(
        _row_uniforms(np.uint32(root), np.uint32(fold), np.uint32(start), size, shape)
    )


# -- counts seen as another family's data (baselines) -------------------------------------------

VIEWS = ("counts", "log1p", "tokens")


@dataclasses.dataclass(frozen=True, eq=False)
class CountView:
    """Counts as continuous points y = log1p(x + u), u ~ U[0, 1) (dequantised; decoded by
    floor(expm1(y)), negatives to 0), or as tokens min(x, cap) with vocabulary cap + 1."""

    base: object
    view: str
    cap: int = 0

    def __post_init__(self):
        if self.view not in ("log1p", "tokens"):
            raise ValueError(f"config.data.count_view must be one of {VIEWS}, got {self.view!r}")
        if self.view == "tokens" and self.cap < 1:
            raise ValueError(f"config.data.count_cap must be >= 1 for tokens, got {self.cap}")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    @property
    def name(self):
        return f"{self.base.name}_{self.view}"

    @property
    def kind(self):
        return "points" if self.view == "log1p" else "tokens"

    @property
    def vocab_size(self):
        return self.cap + 1 if self.view == "tokens" else 0

    def encode(self, x, step: int = 0, start: int = 0):
        x = np.asarray(x)
        if self.view == "tokens":
            return np.minimum(x, self.cap).astype(np.int32)
        u = row_uniforms(self.base.seed + 4_000_037, step, start, len(x), tuple(self.base.shape))
        return np.log1p(x + u).astype(np.float32)

    def to_counts(self, samples) -> np.ndarray:
        """Samples of this view decoded back to counts."""
        y = np.asarray(samples)
        if self.view == "tokens":
            return y.astype(np.int32)
        return np.maximum(np.floor(np.expm1(y.astype(np.float64))), 0).astype(np.int32)

    def batch(self, step: int, start: int, size: int, global_batch: int | None = None) -> dict:
        out = dict(self.base.batch(step, start, size, global_batch))
        out["x"] = self.encode(out["x"], step, start)
        return out

    def capped_fraction(self, n: int = 4000, seed: int = 0) -> float:
        """The fraction of data counts above the token cap (lost to the tokens view)."""
        return float(np.mean(self.base.reference(n, seed) > self.cap))

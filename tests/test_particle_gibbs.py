"""Particle Gibbs (docs/math.md §7.5) on the enumerable masked toy, driven by its exact denoiser:
the target path measure is the ancestral chain's path law times exp(lam r(x_K)) (FK steering's
increments telescope), so exact target paths are base paths kept by rejection, and a sweep must
leave them where they are."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflab import samplers
from difflab.models import masked
from difflab.samplers import particle_gibbs, solvers, steering
from tests.test_masked import DENOISER, SEQS, L, V, ancestral_law, law

PROCESS = masked.MaskedDiffusion(V, masked.linear(), time_agnostic=True)
STEP = samplers.smc_step("masked", "ancestral")
GRID = solvers.uniform_grid(16)
LAM = 1.0


def count(x):
    return jnp.sum(x == 2, axis=-1).astype(jnp.float32)


POTENTIAL = steering.reward_potential(count, LAM, estimate=steering.masked_estimate())


def tilted():
    q = ancestral_law(16)
    tilt = q * np.exp(LAM * np.sum(SEQS == 2, axis=1))
    return tilt / tilt.sum()


def tv(x):
    return 0.5 * np.abs(law(np.asarray(x)) / len(x) - tilted()).sum()


@functools.cache
def target_paths(n: int):
    """n paths of the target path measure: ancestral paths kept with probability
    exp(lam (r(x_K) - 4)) (r <= L = 4; 11% are kept)."""
    draws = 12 * n
    prior = PROCESS.prior(None, (draws, L))
    paths = jax.jit(lambda k: solvers.trajectory(STEP, k, DENOISER, PROCESS, prior, None, GRID))(
        jax.random.key(1)
    )  # [K + 1, draws, L]
    keep = jax.random.uniform(jax.random.key(2), (draws,)) < jnp.exp(LAM * (count(paths[-1]) - L))
    kept = np.asarray(jnp.swapaxes(paths, 0, 1))[np.asarray(keep)]
    assert len(kept) >= n
    return jnp.asarray(kept[:n])


@pytest.mark.parametrize("held", [True, False], ids=["conditional", "plain"])
def test_a_sweep_leaves_the_target_path_measure_invariant(held):
    """Started from exact target paths, two conditional sweeps of N = 2 keep the references at
    the tilted law (TV within the Monte-Carlo floor of 6000 draws, ~0.035, at every sweep); plain
    SMC sweeps of N = 2 (no reference held) fall to their biased law (TV > 0.15). Every returned
    reference is one particle's lineage, traced back through its ancestors."""
    run = particle_gibbs.chains(STEP, POTENTIAL, 2, 2)
    paths, ends, _ = jax.jit(lambda k, r: run(k, DENOISER, PROCESS, None, GRID, r, held))(
        jax.random.key(3), target_paths(6000)
    )
    assert paths.shape == (6000, 17, L)
    assert tv(target_paths(6000)[:, -1]) < 0.05
    # the references are trajectories: a token once unmasked stays (a traced lineage)
    paths = np.asarray(paths)
    fixed = paths[:, :-1] != PROCESS.mask_id
    assert (paths[:, 1:][fixed] == paths[:, :-1][fixed]).all()
    distances = [tv(e) for e in np.asarray(ends)]
    if held:
        assert max(distances) < 0.05, distances
    else:
        assert min(distances) > 0.15, distances


def test_sweeps_from_plain_smc_approach_the_tilted_law():
    """From a plain first sweep (N = 4, biased: TV ~0.15), the references' law moves toward the
    tilt over six sweeps (the last TV below 0.75 of the first); NFE counts every particle."""
    sampler = particle_gibbs.particle_gibbs(STEP, POTENTIAL, 4, 6)
    x, info = jax.jit(lambda k: sampler(k, DENOISER, PROCESS, (4000, L), None, GRID))(
        jax.random.key(0)
    )
    distances = [tv(e) for e in np.asarray(info["references"])]
    assert distances[-1] < 0.75 * distances[0] and distances[0] > 0.1, distances
    assert int(info["nfe"]) == 4 * 16 * 6 and x.shape == (4000, L)


def test_particle_gibbs_settings_are_checked():
    with pytest.raises(ValueError, match=">= 2 particles"):
        particle_gibbs.particle_gibbs(STEP, POTENTIAL, 1, 3)
    with pytest.raises(ValueError, match=">= 1 sweeps"):
        particle_gibbs.particle_gibbs(STEP, POTENTIAL, 4, 0)

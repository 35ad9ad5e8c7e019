"""Float64 categorical sampling (docs/math.md §3.5, oracle M5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from difflab.models import categorical as cat


def test_m5a_uniforms_have_float64_resolution():
    n = 1_000_000
    u = jax.jit(lambda k: cat.uniform52(k, (n,)))(jax.random.key(0))
    assert u.dtype == jnp.float64
    u = np.asarray(u)
    assert 0.0 < u.min() and u.max() < 1.0
    assert n - len(np.unique(u)) <= 5
    # float32 uniforms: about n - 2^23 (1 - exp(-n / 2^23)) = 5.7e4 duplicates
    u32 = np.asarray(jax.random.uniform(jax.random.key(0), (n,)))
    assert n - len(np.unique(u32)) > 40_000


def test_m5b_injected_uniform_gives_the_finite_gumbel_tail():
    with jax.enable_x64(True):
        u = jnp.array([0.5, 1.0 - 2.0**-40], jnp.float64)
        g = np.asarray(cat.gumbel_from_uniform(u))
        assert abs(g[1] - 27.7259) < 1e-3
        # logits (0, -20): token 1 wins for the right reason, -20 + 27.73 > -log(-log 0.5)
        assert int(cat.gumbel_max(jnp.array([0.0, -20.0]), u)) == 1
    # the same uniform in float32 rounds to 1 and gives an infinite Gumbel draw
    assert np.isinf(np.asarray(cat.gumbel_from_uniform(jnp.float32(1.0 - 2.0**-40))))


def test_m5c_draws_run_in_float64_under_jit_and_return_int32():
    logits = jnp.log(jnp.array([[0.2, 0.3, 0.5]] * 4, jnp.float32))
    jaxpr = str(jax.make_jaxpr(lambda k: cat.categorical(k, logits))(jax.random.key(0)))
    assert "f64" in jaxpr
    out = jax.jit(lambda k: cat.categorical(k, logits))(jax.random.key(0))
    assert out.dtype == jnp.int32 and out.shape == (4,)


@pytest.mark.optimized
def test_low_probability_categories_drawn_at_their_true_frequency():
    """100 categories of probability 1e-5 each next to one of ~0.999: float64 draws hit the rare
    set at its true rate (1e-3) and each rare category about equally."""
    rare = 100
    logits = jnp.concatenate([jnp.zeros(1), jnp.full(rare, jnp.log(1e-5 / (1 - 1e-3)))])
    n = 400_000
    draws = jax.jit(lambda k: cat.categorical(k, jnp.broadcast_to(logits, (n, rare + 1))))(
        jax.random.key(1)
    )
    counts = np.bincount(np.asarray(draws), minlength=rare + 1)
    p = np.asarray(jax.nn.softmax(logits.astype(jnp.float32)), np.float64)
    expected_rare = n * p[1:].sum()
    assert abs(counts[1:].sum() - expected_rare) < 4 * np.sqrt(expected_rare)
    # the rare categories are equally likely: their counts are Poisson(4) each
    assert stats.chisquare(counts[1:]).pvalue > 1e-3


def test_float64_categorical_matches_probabilities():
    p = np.array([0.05, 0.15, 0.3, 0.5])
    n = 200_000
    draws = jax.jit(
        lambda k: cat.categorical(k, jnp.log(jnp.asarray(p, jnp.float32))[None].repeat(n, 0))
    )(jax.random.key(2))
    counts = np.bincount(np.asarray(draws), minlength=4)
    assert stats.chisquare(counts, n * p).pvalue > 1e-3


def test_the_all_ones_draw_stays_below_one():
    """The largest uniform is 1 - 2^-53 < 1, so every Gumbel draw is finite (max 36.74); the
    53-bit construction rounded the all-ones draw to exactly 1.0 (g = +inf)."""
    ones = jnp.array([0xFFFFFFFF], jnp.uint32)
    zeros = jnp.array([0], jnp.uint32)
    with jax.enable_x64(True):
        top = cat.uniform_from_bits(ones, ones)
        bottom = cat.uniform_from_bits(zeros, zeros)
        assert float(top[0]) == 1.0 - 2.0**-53 and float(bottom[0]) == 2.0**-53
        g = np.asarray(cat.gumbel_from_uniform(jnp.concatenate([bottom, top])))
    assert np.all(np.isfinite(g)) and abs(g[1] - 36.7368) < 1e-3

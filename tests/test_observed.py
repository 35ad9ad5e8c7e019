"""Conditioning on observed parts (samplers.observed): masked prompts and infilling reproduce the
exact conditional law of the Markov-chain toy, SMDM's prompt guidance matches its closed form
(docs/math.md M6), and Gaussian inpainting keeps the observation and finds the right mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflab import samplers
from difflab.data import markov, toy
from difflab.metrics import oracles
from difflab.models import continuous, flow, masked
from difflab.models.counts import CountFlow
from difflab.samplers import independent, solvers
from difflab.samplers.observed import observe

CHAIN = markov.toy_chain()
PROCESS = masked.MaskedDiffusion(vocab_size=3)
DEN = CHAIN.denoiser(PROCESS.mask_id)
N, L = 20_000, 4


def observation(n, fixed):
    """Rows with tokens fixed[i] at position i (None: free)."""
    values = np.zeros((n, L), np.int32)
    known = np.zeros((n, L), bool)
    for i, v in enumerate(fixed):
        if v is not None:
            values[:, i], known[:, i] = v, True
    return values, known


def conditional_law(fixed):
    seqs = CHAIN.all_sequences(L)
    p = np.exp(CHAIN.log_prob(seqs))
    for i, v in enumerate(fixed):
        if v is not None:
            p = p * (seqs[:, i] == v)
    return p / p.sum()


# every masked sampler of the registry but the biased confidence heuristic
EXACT_MASKED = [n for n in samplers.names("masked") if n != "confidence"]


@pytest.mark.optimized
@pytest.mark.parametrize("name", EXACT_MASKED)
def test_prompts_and_infilling_sample_the_conditional_law(name):
    """Prompt (x^0 = 2) and infilling (x^0 = 2, x^2 = 1): the free positions follow p(x | given)
    (TV < 0.035 at N = 20000 over 27 / 9 outcomes), given tokens never change, and first-hitting
    makes one call per free position."""
    sampler = samplers.get("masked", name)
    grid = solvers.uniform_grid(64)  # ancestral: near-exact at T = 64 >> L (docs/math.md M3)
    for fixed, free in (((2, None, None, None), 3), ((2, None, 1, None), 2)):
        values, known = observation(N, fixed)
        obs = observe(PROCESS, values, known)
        x, info = jax.jit(lambda k, o: sampler(k, DEN, o, (N, L), None, grid))(
            jax.random.key(0), obs
        )
        x = np.asarray(x)
        assert np.all(x[known] == values[known])
        hist = np.bincount(np.ravel_multi_index(x.T, (3,) * L), minlength=81) / N
        assert 0.5 * np.abs(hist - conditional_law(fixed)).sum() < 0.035
        if name == "first_hitting":
            assert int(info["nfe"]) == free


@pytest.mark.parametrize("name", samplers.names("masked"))
def test_prompt_tokens_stay_whatever_the_denoiser_says_about_them(name):
    """A denoiser with uniform logits everywhere (prompt positions included, unlike the oracle,
    which is one-hot there): the prompt tokens come out unchanged and the free ones vary."""
    values, known = observation(512, (2, None, 1, None))
    uniform = lambda z, t, cond=None: jnp.zeros((*z.shape, 3))
    sampler = samplers.get("masked", name)
    x, _ = sampler(
        jax.random.key(1),
        uniform,
        observe(PROCESS, values, known),
        (512, L),
        None,
        solvers.uniform_grid(8),
    )
    x = np.asarray(x)
    np.testing.assert_array_equal(x[known], values[known])
    assert len(np.unique(x[:, 1])) == 3 and len(np.unique(x[:, 3])) == 3


def test_prompted_draws_are_per_sample():
    """Under `independent` each sample has its own prompt and its own call count."""
    values, known = observation(6, (2, None, None, None))
    known[3:, 1:3], values[3:, 1:3] = True, 0
    obs = observe(PROCESS, values, known)
    keys = independent.sample_keys(jax.random.key(0), jnp.arange(6))
    sampler = independent.independent(samplers.get("masked", "first_hitting"))
    x, info = sampler(keys, DEN, obs, (6, L), None, solvers.uniform_grid(4))
    assert np.all(np.asarray(x)[known] == values[known])
    assert np.asarray(info["nfe"]).tolist() == [3, 3, 3, 1, 1, 1]


def test_prompt_guidance_is_smdm_closed_form():
    """docs/math.md M6: with the prompt x^0 = 2, guided logits give p(. | c)^(1 + w) p(.)^(-w)
    normalised per position (l_u from the prompt masked), from one call on the doubled batch."""
    values, known = observation(2, (2, None, None, None))
    obs = observe(PROCESS, values, known, prompt_scale=2.0)
    z = jnp.where(known, values, PROCESS.mask_id).at[1, 2].set(0)
    lp = PROCESS.log_probs(solvers.Bound(DEN, obs).pred(z, 0.7), z)
    l_c = PROCESS.log_probs(DEN(z, 0.7), z)
    l_u = PROCESS.log_probs(DEN(jnp.where(known, PROCESS.mask_id, z), 0.7), z)
    expect = jax.nn.log_softmax(3.0 * l_c - 2.0 * l_u, -1)
    free = (z == PROCESS.mask_id)[..., None]
    np.testing.assert_allclose(jnp.where(free, lp, 0), jnp.where(free, expect, 0), atol=1e-5)
    assert obs.passes(DEN) == 2 and observe(PROCESS, values, known).passes(DEN) == 1


TWO_MODES = toy.GaussianMixture(
    np.array([0.5, 0.5]), np.array([[-2.0, -2.0], [2.0, 2.0]]), np.full((2, 2), 0.5)
)


@pytest.mark.parametrize(
    "process, sampler",
    [
        (flow.FlowMatching(path=flow.linear_path()), "euler"),
        (continuous.GaussianDiffusion(continuous.cosine(), "eps"), "ddpm"),
    ],
)
def test_inpainting_keeps_the_observation_and_finds_its_mode(process, sampler):
    """Two modes at (-2, -2) and (2, 2), x^0 = 1 observed: p(x^1 | x^0 = 1) is N(2, 0.5^2) up to
    e^-16. Replacement with the DPS measurement score puts > 98% of samples in the right mode
    with x^1 mean within 0.15 of 2, and x^0 = 1 exactly; replacement alone is the weaker
    heuristic (< 90% in the right mode)."""
    n = 4000
    den = oracles.exact_denoiser(TWO_MODES, process)
    values = np.zeros((n, 2), np.float32)
    values[:, 0] = 1.0
    known = np.zeros((n, 2), bool)
    known[:, 0] = True
    grid = samplers.grid(sampler, process, 100)
    run = jax.jit(lambda k, o: samplers.get("flow", sampler)(k, den, o, (n, 2), None, grid))

    guided = observe(process, values, known, measurement_scale=1.0, noise_std=0.1)
    x = np.asarray(run(jax.random.key(0), guided)[0])
    np.testing.assert_allclose(x[:, 0], 1.0, atol=1e-2)
    assert (x[:, 1] > 0).mean() > 0.98 and abs(x[x[:, 1] > 0, 1].mean() - 2.0) < 0.15
    plain = np.asarray(run(jax.random.key(0), observe(process, values, known))[0])
    assert (plain[:, 1] > 0).mean() < 0.9


def test_observations_are_checked():
    values, known = observation(2, (2, None, None, None))
    with pytest.raises(ValueError, match=r"same shape"):
        observe(PROCESS, values, known[:, :2])
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\).*got 5"):
        observe(PROCESS, np.where(known, 5, 0), known)
    with pytest.raises(ValueError, match=r"CountFlow"):
        observe(CountFlow(), values, known)

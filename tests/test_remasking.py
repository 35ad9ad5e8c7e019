"""ReMDM remasking samplers against the enumerable Markov toy (docs/math.md §3.7): their exact
T-step law by dynamic programming over every partial state, computed here from the equations
(not from the sampler's code)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difflab import samplers
from difflab.models import masked
from difflab.samplers import discrete, guidance, independent, solvers
from tests.test_masked import (
    DENOISER,
    MASK,
    P_TRUE,
    SEQS,
    STATE_INDEX,
    STATE_LOGP,
    STATES,
    L,
    V,
    ancestral_law,
    chi_square_p,
    law,
    sample,
)

T_ON, T_OFF, ALPHA_ON = 0.55, 0.05, 0.9


def levels(kind, eta, t, s):
    """(alpha_t, alpha_s, sigma) of a step t -> s under the linear schedule alpha_t = 1 - t."""
    if kind == "loop":

        def level(tau):
            if tau > T_ON:
                return 1 - (1 - tau) * ALPHA_ON / (1 - T_ON)
            return tau * (1 - ALPHA_ON) / T_OFF if tau <= T_OFF else 1 - ALPHA_ON

        a_t, a_s = 1 - level(t), 1 - (level(s) if s > 0 else 0.0)
        top = min(1.0, (1 - a_s) / a_t) if a_t > 0 else 1.0
        return a_t, a_s, min(eta if T_OFF < t <= T_ON else 0.0, top)
    a_t, a_s = 1 - t, 1 - s
    top = min(1.0, (1 - a_s) / a_t) if a_t > 0 else 1.0
    return a_t, a_s, (min(eta, top) if kind == "cap" else eta * top)


def kernel(a_t, a_s, sigma):
    """The transition matrix over every partial state in {0..V-1, mask}^L: positions move
    independently given z_t; masked ones unmask w.p. (a_s - (1 - sigma) a_t) / (1 - a_t) to a
    token of the exact denoiser, unmasked ones are masked again w.p. sigma."""
    p = np.exp(STATE_LOGP.astype(np.float64))  # [S, L, V]
    p /= p.sum(-1, keepdims=True)  # float32 logits: exactly normalised here
    unmask = (a_s - (1 - sigma) * a_t) / (1 - a_t) if a_t < 1 else 1.0
    per = np.zeros((len(STATES), L, V + 1))
    is_masked = STATES == MASK
    per[..., :V] = np.where(is_masked[..., None], unmask * p, 0.0)
    per[..., MASK] = np.where(is_masked, 1 - unmask, sigma)
    stay = np.eye(V + 1)[STATES] * (1 - sigma)
    per = np.where(is_masked[..., None], per, stay + np.eye(V + 1)[MASK] * sigma)
    joint = per[:, 0]
    for i in range(1, L):
        joint = (joint[:, :, None] * per[:, i, None, :]).reshape(len(STATES), -1)
    return joint


@functools.cache
def exact_law(kind, eta, steps):
    """The law over the V^L sequences of `steps` remasking steps on the uniform grid."""
    prob = np.zeros(len(STATES))
    prob[STATE_INDEX[(MASK,) * L]] = 1.0
    grid = np.linspace(1.0, 0.0, steps + 1)
    for t, s in zip(grid[:-1], grid[1:], strict=True):
        prob = prob @ kernel(*levels(kind, eta, t, s))
    law = np.array([prob[STATE_INDEX[tuple(x)]] for x in SEQS])
    assert abs(law.sum() - 1) < 1e-9  # every token unmasked at t = 0
    return law


def tv(a, b):
    return 0.5 * np.abs(a - b).sum()


ETAS = {"cap": 0.3, "rescale": 0.6, "loop": 0.1}


@pytest.mark.parametrize("kind", discrete.REMASKING)
def test_eta_zero_is_the_ancestral_chain(kind):
    """sigma = 0: the ancestral chain's exact law (cap, rescale), and its samples."""
    if kind != "loop":
        np.testing.assert_allclose(exact_law(kind, 0.0, 8), ancestral_law(8), rtol=1e-5)
    x, info = sample(discrete.remdm(kind, 0.0), 8, 40_000, seed=3)
    assert chi_square_p(law(x), exact_law(kind, 0.0, 8)) > 1e-3
    assert int(info["nfe"]) == 8


@pytest.mark.optimized
@pytest.mark.parametrize("kind", discrete.REMASKING)
def test_remasking_samples_follow_their_exact_law(kind):
    """With remasking the T-step law moves away from the ancestral one (TV 0.017 / 0.020 /
    0.025 at T = 8), and the sampler's draws follow the remasking law (chi-square), not the
    ancestral one (the test has the power to tell them apart)."""
    eta = ETAS[kind]
    want = exact_law(kind, eta, 8)
    assert tv(want, exact_law(kind, 0.0, 8)) > 0.015
    x, _ = sample(samplers.get("masked", f"remdm_{kind}", eta), 8, 60_000, seed=4)
    assert not (x == MASK).any()
    assert chi_square_p(law(x), want) > 1e-3
    assert chi_square_p(law(x), exact_law(kind, 0.0, 8)) < 1e-6


@pytest.mark.parametrize("kind", ["cap", "rescale"])
def test_capped_and_rescaled_remasking_converge_to_p(kind):
    """sigma <= sigma_max = O(1/T): the chain samples p as T grows, its error falling like 1/T
    (TV 0.0097 / 0.0047 at T = 256 / 1024 for cap, eta = 0.3; the ancestral chain: 0.0014 at
    256)."""
    coarse, fine = (tv(exact_law(kind, ETAS[kind], T), P_TRUE) for T in (256, 1024))
    assert fine < 0.006 and fine < coarse / 1.8


def test_loop_remasking_errs_by_order_eta_at_any_number_of_steps():
    """The loop remasks with a fixed sigma = eta in its window, so the positions redrawn
    together on one step keep a factorisation error of order eta that more steps do not remove
    (TV to p 0.0132 at eta = 0.1 and T = 1024, 0.0026 at ReMDM's eta = 0.02)."""
    assert tv(exact_law("loop", 0.02, 1024), P_TRUE) < 0.004
    strong = [tv(exact_law("loop", 0.1, T), P_TRUE) for T in (256, 1024)]
    assert min(strong) > 3 * tv(exact_law("loop", 0.02, 1024), P_TRUE)
    assert abs(strong[0] - strong[1]) < 0.002


def test_the_loop_queries_the_model_at_the_time_of_each_masking_level():
    """A cosine-schedule model is queried by the loop at t = (2 / pi) arcsin(level), the time
    its own schedule reaches the loop's masking level."""
    process = masked.MaskedDiffusion(V, masked.cosine())
    seen = []

    def spy(z, t, cond=None):
        jax.debug.callback(lambda t: seen.append(float(np.asarray(t).ravel()[0])), t)
        return jnp.zeros((*z.shape, V + 1))

    grid = solvers.uniform_grid(10)
    sampler = discrete.remdm("loop", 0.05)
    jax.block_until_ready(sampler(jax.random.key(0), spy, process, (2, L), None, grid))
    level = [
        1 - (1 - t) * ALPHA_ON / (1 - T_ON)
        if t > T_ON
        else (t * (1 - ALPHA_ON) / T_OFF if t <= T_OFF else 1 - ALPHA_ON)
        for t in np.asarray(grid[:-1], np.float64)
    ]
    np.testing.assert_allclose(seen, 2 / np.pi * np.arcsin(level), atol=2e-4)


def test_bad_remasking_settings_are_named():
    with pytest.raises(ValueError, match="remasking kind must be one of"):
        discrete.Remasking("sometimes", 0.1)
    with pytest.raises(ValueError, match="exceeds .1 - alpha_on. / alpha_on"):
        discrete.Remasking("loop", 0.5)
    with pytest.raises(ValueError, match="eta=1.5 must lie in"):
        discrete.Remasking("rescale", 1.5)


# -- temperature and nucleus sampling of the token logits (every masked sampler) -----------------

P5 = np.array([0.4, 0.25, 0.15, 0.12, 0.08])


def shaped_law(temperature, top_p):
    """p^(1/T) / Z, then the most probable tokens whose mass reaches top_p, renormalised."""
    q = P5 ** (1 / temperature)
    q /= q.sum()
    order = np.argsort(-q)
    before = np.cumsum(q[order]) - q[order]
    keep = np.zeros(len(q), bool)
    keep[order[before < top_p]] = True
    q = np.where(keep, q, 0.0)
    return q / q.sum()


@pytest.mark.parametrize("name", samplers.names("masked"))
@pytest.mark.parametrize("temperature, top_p", [(0.5, 1.0), (1.0, 0.7), (2.0, 0.8)])
def test_every_masked_sampler_draws_the_shaped_law(name, temperature, top_p):
    """One position, constant logits: a token is drawn once, from the shaped law (temperature
    0.5 squares p; top_p 0.7 keeps 0.4, 0.25, 0.15; both together) and not from p."""
    process = masked.MaskedDiffusion(len(P5), masked.linear())
    logits = jnp.log(jnp.asarray(np.append(P5, 1e-12), jnp.float32))
    den = lambda z, t, cond=None: jnp.broadcast_to(logits, (*z.shape, len(P5) + 1))
    den = guidance.shaped(den, len(P5), temperature, top_p)
    sampler = samplers.get("masked", name)
    run = jax.jit(lambda k: sampler(k, den, process, (20_000, 1), None, solvers.uniform_grid(4)))
    x = np.asarray(run(jax.random.key(1))[0])[:, 0]
    counts = np.bincount(x, minlength=len(P5))
    want = shaped_law(temperature, top_p)
    assert counts[want == 0].sum() == 0
    assert chi_square_p(counts, want) > 1e-3
    assert chi_square_p(counts, P5) < 1e-6


def test_shaping_is_off_by_default_and_checked():
    den = lambda z, t, cond=None: z
    assert guidance.shaped(den, 3) is den
    with pytest.raises(ValueError, match="temperature=0 must be > 0"):
        guidance.shaped(den, 3, temperature=0)
    with pytest.raises(ValueError, match=r"top_p=1.5 in \(0, 1\]"):
        guidance.shaped(den, 3, top_p=1.5)


# -- entropy-bounded unmasking (EB-sampler, docs/math.md §3.8) ------------------------------------


def test_entropy_bounded_at_gamma_zero_is_exact_with_one_token_per_call():
    """gamma = 0: one token per call, in order of increasing entropy: with the exact denoiser any
    state-dependent order samples p exactly (chi-square), at L calls."""
    x, info = sample(discrete.entropy_bounded(0.0), 4, 40_000, seed=5)
    assert chi_square_p(law(x), P_TRUE) > 1e-3
    assert int(info["nfe"]) == L


def test_entropy_bounded_with_a_large_budget_draws_every_token_in_one_call():
    """gamma = infinity: one call draws every position from its marginal given the all-masked
    sequence, so the law is the product of those marginals (chi-square), far from p."""
    x, info = sample(discrete.entropy_bounded(1e9), 4, 40_000, seed=6)
    assert int(info["nfe"]) == 1
    marg = np.exp(STATE_LOGP[STATE_INDEX[(MASK,) * L]].astype(np.float64))
    marg /= marg.sum(-1, keepdims=True)
    product = np.prod([marg[i, SEQS[:, i]] for i in range(L)], axis=0)
    assert chi_square_p(law(x), product) > 1e-3
    assert chi_square_p(law(x), P_TRUE) < 1e-6


def test_entropy_bounded_trades_calls_for_error_as_gamma_grows():
    """Between the two: fewer calls as gamma grows (per-sample means 4 / 3.08 / 2.0 at gamma =
    0 / 1 / 1.5; the toy's entropies are near 1 nat), the error growing from the exact
    sampler's Monte Carlo floor (TV 0.02 / 0.15 / 0.27)."""
    calls, errors = [], []
    process = masked.MaskedDiffusion(V, masked.linear(), time_agnostic=True)
    keys = jax.random.split(jax.random.key(7), 20_000)
    grid = solvers.uniform_grid(4)
    for gamma in (0.0, 1.0, 1.5):
        sampler = independent.independent(discrete.entropy_bounded(gamma))
        run = jax.jit(lambda k, s=sampler: s(k, DENOISER, process, (20_000, L), None, grid))
        x, info = run(keys)
        calls.append(float(np.mean(info["nfe"])))
        errors.append(tv(law(np.asarray(x)) / 20_000, P_TRUE))
    assert calls[0] == L and calls[0] > calls[1] > calls[2] >= 1
    assert errors[0] < 0.03 and errors[2] > errors[0] + 0.1


def test_entropy_bounded_unmasks_the_lowest_entropy_positions_within_the_budget():
    """Positions with entropies 0.1, 1.0, 0.05, 0.5 nats and gamma = 0.2: sorted 0.05, 0.1, 0.5,
    1.0, the spent budget sum - max is 0, 0.05, 0.15, 0.65, so the first call unmasks positions
    2, 0 and 3, the second position 1; each call at the model's time of the masked fraction."""

    def logits_with_entropy(h):
        """Two-token logits [l, 0] whose entropy is h (bisection on l)."""
        lo, hi = 0.0, 30.0
        for _ in range(80):
            mid = (lo + hi) / 2
            p = 1 / (1 + np.exp(-mid))
            ent = -(p * np.log(p) + (1 - p) * np.log(1 - p))
            lo, hi = (mid, hi) if ent > h else (lo, mid)
        return [lo, 0.0, -1e9]

    table = jnp.asarray([logits_with_entropy(h) for h in (0.1, 1.0, 0.05, 0.5)], jnp.float32)
    seen = []

    def spy(z, t, cond=None):
        jax.debug.callback(lambda z, t: seen.append((np.asarray(z)[0] == 2, float(t[0]))), z, t)
        return jnp.broadcast_to(table, (*z.shape, 3))

    process = masked.MaskedDiffusion(2, masked.cosine())
    sampler = discrete.entropy_bounded(0.2)
    _, info = sampler(jax.random.key(0), spy, process, (1, 4), None, solvers.uniform_grid(4))
    assert int(info["nfe"]) == 2
    masks, times = zip(*seen[:2], strict=True)
    np.testing.assert_array_equal(masks, [[True] * 4, [False, True, False, False]])
    # the model's time at the masked fraction: cosine 1 - alpha_t = sin(pi t / 2) = 1, then 1/4
    np.testing.assert_allclose(np.sin(np.pi / 2 * np.array(times)), [1.0, 0.25], atol=1e-6)

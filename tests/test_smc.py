"""The particle system (docs/math.md §7.1; oracles A1, A2) and FK steering on the 1-D mixture
(§7.2; oracle A8, continuous), driven by the exact, time-dependent mixture denoiser."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm, poisson

from difflab import samplers
from difflab.data import toy
from difflab.metrics import oracles
from difflab.models import continuous, masked
from difflab.models.counts import NEG, CountFlow
from difflab.samplers import resampling, smc, solvers, steering
from tests.test_masked import DENOISER, SEQS, L, V, ancestral_law, law

# -- A1: resampling schemes ---------------------------------------------------------------------

W = np.array([0.02, 0.3, 0.05, 0.13, 0.2, 0.01, 0.09, 0.2])
N_KEYS = 10_000


@functools.cache
def offspring_draws(scheme):
    log_w = jnp.log(jnp.asarray(W, jnp.float32))
    draw = resampling.get(scheme)
    keys = jax.random.split(jax.random.key(0), N_KEYS)
    a = jax.jit(jax.vmap(lambda k: draw(k, log_w)))(keys)
    return np.asarray(jax.vmap(lambda a: resampling.offspring(a, len(W)))(a))


@pytest.mark.parametrize("scheme", sorted(resampling.SCHEMES))
def test_offspring_counts_are_unbiased(scheme):
    counts = offspring_draws(scheme)
    assert (counts.sum(1) == len(W)).all()
    se = counts.std(0) / np.sqrt(N_KEYS) + 1e-9
    z = (counts.mean(0) - len(W) * W) / se
    assert np.max(np.abs(z)) < 4.0, z


def test_multinomial_counts_have_the_binomial_variance():
    """Independent draws: Var[count_j] = N w_j (1 - w_j) (one shared uniform would give every
    particle the same ancestor, N^2 w_j (1 - w_j)); within 10% over 10,000 draws."""
    n = len(W)
    np.testing.assert_allclose(offspring_draws("multinomial").var(0), n * W * (1 - W), rtol=0.1)


def test_systematic_counts_are_floor_or_ceil_and_vary_less_than_multinomial():
    counts = offspring_draws("systematic")
    nw = len(W) * W
    assert np.all((counts == np.floor(nw)) | (counts == np.ceil(nw)))
    for low in ("systematic", "stratified", "residual"):
        assert offspring_draws(low).var(0).sum() < offspring_draws("multinomial").var(0).sum()


@pytest.mark.parametrize("scheme", sorted(resampling.SCHEMES))
def test_indices_stay_in_range_when_weights_sum_short_of_one(scheme):
    """Weights spanning 1e-30..1: the float32 cumulative sum can fall short of 1."""
    log_w = jnp.linspace(-69.0, 0.0, 1000)
    keys = jax.random.split(jax.random.key(1), 64)
    a = jax.vmap(lambda k: resampling.get(scheme)(k, log_w))(keys)
    assert int(a.min()) >= 0 and int(a.max()) < 1000


@pytest.mark.parametrize("scheme", sorted(resampling.SCHEMES))
def test_particles_of_zero_weight_never_have_offspring(scheme):
    """N = 2^16 log-weights ~ N(0, 1) with 1024 of them -inf at random places (a hard
    constraint): in 300 draws none is an ancestor (float32 cumulative sums, which are not
    monotone in the last bit, with the shortfall given to the last index, gave 4-7 in 500)."""
    n = 2**16
    k_w, k_zero, k_draw = jax.random.split(jax.random.key(2), 3)
    zero = jax.random.permutation(k_zero, n)[:1024]
    log_w = jax.random.normal(k_w, (n,)).at[zero].set(-jnp.inf)
    draw = resampling.get(scheme)
    count = jax.jit(jax.vmap(lambda k: jnp.sum(resampling.offspring(draw(k, log_w), n)[zero])))
    assert int(jnp.sum(count(jax.random.split(k_draw, 300)))) == 0


@pytest.mark.parametrize("scheme", sorted(resampling.SCHEMES))
def test_offspring_of_tiny_weights_are_unbiased_at_four_million_particles(scheme):
    """N = 2^22 weights, a random half 0.01 and the rest 1: the small ones have N w ~ 0.02
    expected offspring each, N S_small / S together (~41,500); within 1,000 (5 binomial
    standard deviations). Each small interval is below half an ulp of a float32 running sum
    near 1, and the float32 schemes gave them no offspring at all."""
    n = 2**22
    small = jax.random.bernoulli(jax.random.key(4), 0.5, (n,))
    log_w = jnp.where(small, jnp.log(0.01), 0.0)
    a = jax.jit(resampling.get(scheme))(jax.random.key(3), log_w)
    got = int(jnp.sum(jnp.where(small, resampling.offspring(a, n), 0)))
    s_small = 0.01 * int(jnp.sum(small))
    expected = n * s_small / (s_small + n - int(jnp.sum(small)))
    assert abs(got - expected) < 1000, (got, expected)


def test_unknown_scheme_is_named():
    with pytest.raises(ValueError, match="resampling scheme must be one of .* got 'gready'"):
        resampling.get("gready")


# -- A2: effective sample size ------------------------------------------------------------------


def test_ess_equal_one_hot_and_extreme_weights():
    assert float(resampling.ess(jnp.zeros(64))) == pytest.approx(64.0, rel=1e-5)
    assert float(resampling.ess(jnp.array([0.0] + [-1e4] * 63))) == pytest.approx(1.0)
    extreme = resampling.ess(jnp.array([1e4, -1e4, 3.0, 1e4 - 1.0]))
    assert np.isfinite(float(extreme)) and 1.0 <= float(extreme) <= 2.0


# -- A8: FK steering of the 1-D mixture toward r(x) = -(x - 2)^2 / 2 -----------------------------

GMM1 = toy.standard_mixture_1d()
VP = continuous.GaussianDiffusion(continuous.cosine(), "v")
DDPM = solvers.Step(solvers.ddpm_move, nfe=1)
A = 2.0


def reward(x):
    return -0.5 * (x[:, 0] - A) ** 2


def tilted_mixture(lam):
    """p(x) exp(lam r(x)) / Z for the 1-D GMM (docs/math.md §8.1g): (weights, means, stds), and
    log Z = log sum_k pi_k sqrt(2 pi / lam) N(a; mu_k, s_k^2 + 1 / lam)."""
    pi, mu, s = GMM1.weights, GMM1.means[:, 0], GMM1.stds[:, 0]
    var = 1.0 / (1.0 / s**2 + lam)
    mean = var * (mu / s**2 + lam * A)
    mass = pi * np.sqrt(2 * np.pi / lam) * norm.pdf(A, mu, np.sqrt(s**2 + 1.0 / lam))
    return mass / mass.sum(), mean, np.sqrt(var), float(np.log(mass.sum()))


def ks(x, weights, means, stds):
    x = np.sort(np.asarray(x)[:, 0].astype(np.float64))
    cdf = np.sum(weights * norm.cdf((x[:, None] - means) / stds), axis=1)
    n = len(x)
    return max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))


@functools.cache
def steering_draw(lam, kind="diff", n=4096, steps=200):
    """key -> (x, info): FK steering of the exact mixture denoiser, compiled once for all keys."""
    potential = steering.reward_potential(reward, lam, kind, every=1 if kind == "diff" else 50)
    sampler = smc.smc(DDPM, potential)
    grid = solvers.uniform_grid(steps, 1.0, VP.t_min)
    den = oracles.exact_denoiser(GMM1, VP)
    return jax.jit(lambda k: sampler(k, den, VP, (n, 1), None, grid))


@functools.cache
def steer(lam, kind="diff", n=4096, steps=200, seed=0):
    x, info = steering_draw(lam, kind, n, steps)(jax.random.key(seed))
    return np.asarray(x), jax.tree.map(np.asarray, info)


@pytest.mark.parametrize("kind", steering.POTENTIALS)
def test_fk_steering_reaches_the_tilted_mixture(kind):
    """diff (every step): KS < 0.03 against the closed-form tilt (docs/math.md A8: observed 0.018 at
    N = 4096). max, add and rt (every 50 steps) reach it too, with more weight variance from
    their final correction (observed KS 0.029 / 0.069 / 0.058; without the correction 0.15 /
    0.25 / 0.24). The base mixture is far from the tilt."""
    x, info = steer(1.0, kind)
    target = tilted_mixture(1.0)[:3]
    assert ks(x, *target) < (0.03 if kind == "diff" else 0.08)
    assert ks(x, GMM1.weights, GMM1.means[:, 0], GMM1.stds[:, 0]) > 0.2
    assert int(info["nfe"]) == 200 and info["ess"].shape == (200,)
    assert int(info["resamplings"]) > 0


# every one-evaluation stochastic move of the Gaussian samplers (samplers.SPECS), with a noise
# scale where it takes one (ddim needs eta > 0 to be stochastic)
GAUSSIAN_MOVES = [n for n, s in samplers.SPECS.items() if s.kind == "gaussian" and s.move]
MASKED_MOVES = [n for n, s in samplers.SPECS.items() if s.kind == "masked" and s.move]


@pytest.mark.parametrize("name", GAUSSIAN_MOVES)
def test_every_gaussian_move_steers_to_the_tilted_mixture(name):
    """FK steering (lambda = 1, diff potential) proposed by each registered move reaches the
    closed-form tilt: KS < 0.04 at N = 4096, 200 steps on the sampler's own grid."""
    eta = 1.0 if samplers.SPECS[name].eta is not None else None
    sampler = smc.smc(
        samplers.smc_step("diffusion", name, eta), steering.reward_potential(reward, 1.0)
    )
    grid = samplers.grid(name, VP, 200)
    den = oracles.exact_denoiser(GMM1, VP)
    x, info = jax.jit(lambda k: sampler(k, den, VP, (4096, 1), None, grid))(jax.random.key(5))
    assert ks(x, *tilted_mixture(1.0)[:3]) < 0.04
    assert int(info["nfe"]) == 200


def test_zero_lambda_returns_the_base_law_without_resampling():
    x, info = steer(0.0)
    assert ks(x, GMM1.weights, GMM1.means[:, 0], GMM1.stds[:, 0]) < 0.03
    assert int(info["resamplings"]) == 0 and np.all(info["log_weights"] == 0)


def test_log_normaliser_estimate_matches_the_closed_form():
    """log Z = log E_p[exp(lam r)]: the estimates of 8 independent runs average within 3 SE."""
    log_z = tilted_mixture(1.0)[3]
    draw = steering_draw(1.0, n=1024)
    runs = [float(draw(jax.random.key(s))[1]["log_z"]) for s in range(8)]
    se = np.std(runs) / np.sqrt(len(runs))
    assert abs(np.mean(runs) - log_z) < 3 * se + 0.01, (runs, log_z)


def test_host_reward_gives_the_same_samples_as_the_jax_reward():
    numpy_reward = steering.host_reward(lambda x: -0.5 * (x[:, 0] - A) ** 2)
    potential = steering.reward_potential(numpy_reward, 1.0)
    sampler = smc.smc(DDPM, potential)
    grid = solvers.uniform_grid(20, 1.0, VP.t_min)
    den = oracles.exact_denoiser(GMM1, VP)
    host, _ = jax.jit(lambda k: sampler(k, den, VP, (256, 1), None, grid))(jax.random.key(3))
    jax_sampler = smc.smc(DDPM, steering.reward_potential(reward, 1.0))
    same, _ = jax.jit(lambda k: jax_sampler(k, den, VP, (256, 1), None, grid))(jax.random.key(3))
    np.testing.assert_allclose(host, same, atol=1e-5)


def test_settings_are_checked():
    potential = steering.reward_potential(reward, 1.0)
    with pytest.raises(ValueError, match="makes 2 evaluations"):
        smc.smc(solvers.Step(solvers.heun_move, nfe=2), potential)
    with pytest.raises(ValueError, match="ess_threshold must be in"):
        smc.smc(DDPM, potential, ess_threshold=1.5)
    with pytest.raises(ValueError, match="potential must be one of"):
        steering.reward_potential(reward, 1.0, "sum")


# -- A8 (masked): FK steering of the Markov toy toward r(x) = #{i : x^i = 2} ---------------------


def masked_steer(name, lam, n=20_000, steps=16):
    process = masked.MaskedDiffusion(V, masked.linear(), time_agnostic=True)
    count = lambda x: jnp.sum(x == 2, axis=-1).astype(jnp.float32)
    potential = steering.reward_potential(count, lam, estimate=steering.masked_estimate())
    sampler = smc.smc(samplers.smc_step("masked", name), potential)
    grid = solvers.uniform_grid(steps)
    run = jax.jit(lambda k: sampler(k, DENOISER, process, (n, L), None, grid))
    return run(jax.random.key(0))


def base_law(name, steps):
    """The exact law of `steps` moves of a masked sampler (the ancestral chain, or a remasking
    chain at its default eta), by dynamic programming."""
    if name == "ancestral":
        return ancestral_law(steps)
    from tests.test_remasking import exact_law

    return exact_law(name.removeprefix("remdm_"), samplers.effective_eta(name), steps)


@pytest.mark.optimized
@pytest.mark.parametrize("name", MASKED_MOVES)
def test_fk_steering_tilts_the_masked_toy(name):
    """The base law of 16 moves is q_16 (docs/math.md M3 for the ancestral chain, §3.7 for the
    remasking ones), so the target is q_16 e^r / Z: total variation within the Monte-Carlo
    floor (observed 0.027 at N = 20000, 0.042 at 8000), far from the untilted law (0.40)."""
    q = base_law(name, 16)
    tilt = q * np.exp(np.sum(SEQS == 2, axis=1))
    tilt /= tilt.sum()
    x, info = masked_steer(name, 1.0)
    freq = law(x) / len(x)
    assert 0.5 * np.abs(freq - tilt).sum() < 0.035
    assert 0.5 * np.abs(freq - q).sum() > 0.3
    assert int(info["nfe"]) == 16


# -- counts: Poisson(6) tilted by exp(-x) is Poisson(6 / e) ---------------------------------------


@pytest.mark.parametrize(
    "name", [n for n in samplers.names("counts") if samplers.SPECS[n].move is not None]
)
def test_fk_steering_tilts_a_poisson_count_law(name):
    """Exact rates from delta_0 to Poisson(6) (birth rate 6, no deaths), tilted by r(x) = -x,
    proposed by each registered count move (tau-leaping, unit jumps): the target is
    Poisson(6 / e) and log Z = 6 (1/e - 1) (docs/math.md §8.1f, g)."""
    process = CountFlow(source="zeros")
    rates = lambda x, t, cond=None: jnp.stack(
        jnp.broadcast_arrays(jnp.log(6.0), NEG * jnp.ones(x.shape)), axis=-1
    )
    potential = steering.reward_potential(
        lambda x: -x[:, 0].astype(jnp.float32), 1.0, estimate=steering.count_estimate
    )
    sampler = smc.smc(samplers.smc_step("counts", name), potential)
    # 200 steps: a unit jump is at most one birth per step (binomial, not Poisson, counts)
    grid = samplers.grid(name, process, 200)
    run = jax.jit(lambda k: sampler(k, rates, process, (8000, 1), None, grid))
    x, info = run(jax.random.key(0))
    x = np.asarray(x)[:, 0]
    pmf = poisson.pmf(np.arange(40), 6.0 / np.e)
    tv = 0.5 * np.abs(np.bincount(x, minlength=40)[:40] / len(x) - pmf).sum()
    assert tv < 0.03, tv
    assert abs(float(info["log_z"]) - 6.0 * (1 / np.e - 1)) < 0.1, info["log_z"]


@pytest.mark.parametrize("resample", [{"resample_every": 4}, {"ess_threshold": 0.7}])
def test_smc_equals_its_kernel_stepped_by_hand(resample):
    """smc() is build_kernel's kernel scanned over the grid: the same population stepped in a
    Python loop with the same keys gives the same particles, weights, log Z and ESS, bit for bit
    (FK steering of the 1-D mixture, 40 steps)."""
    potential = steering.reward_potential(reward, 1.0)
    den = oracles.exact_denoiser(GMM1, VP)
    grid = solvers.uniform_grid(40, 1.0, VP.t_min)
    key, shape = jax.random.key(5), (256, 1)
    sampler = smc.smc(DDPM, potential, output="weighted", **resample)
    x, info = jax.jit(lambda k: sampler(k, den, VP, shape, None, grid))(key)

    kernel = smc.build_kernel(DDPM, potential, **resample)
    model = solvers.Bound(den, VP)
    one_step = jax.jit(lambda key, state, k, t, s: kernel(key, model, state, k, t, s))

    def by_hand(key):  # a notebook's loop: one compiled step, called 40 times
        k_prior, k_loop, k_final, _ = jax.random.split(key, 4)
        state = jax.jit(lambda k: kernel.init(k, model, shape, grid[0]))(k_prior)
        sizes = []
        for k in range(40):
            state, step_info = one_step(jax.random.fold_in(k_loop, k), state, k, grid[k],
                                        grid[k + 1])  # fmt: skip
            sizes.append(step_info.ess)
        return jax.jit(lambda k, st: kernel.finish(k, model, st))(k_final, state), jnp.stack(sizes)

    state, sizes = by_hand(key)
    np.testing.assert_array_equal(np.asarray(state.x), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(state.log_w), np.asarray(info["log_weights"]))
    np.testing.assert_array_equal(np.asarray(sizes), np.asarray(info["ess"]))
    assert float(state.log_z) == float(info["log_z"]) and int(info["resamplings"]) > 2


def test_a_multistep_history_moves_with_its_particle():
    """DPM-Solver++(2M) SDE carries past estimates (docs/math.md §1.5f); when the kernel resamples,
    each particle's history must come from its ancestor: after two steps with every particle
    replaced by its mirror (a fixed ancestor map), the kernel's second move equals the move of
    the mirrored particles with their own estimates, and the history's newest estimate is the
    denoised estimate of the particle it now belongs to."""
    n = 64
    mirror = lambda key, log_w: jnp.arange(n)[::-1]  # noqa: E731
    step = samplers.smc_step("diffusion", "dpmpp_2m_sde")
    potential = steering.reward_potential(reward, 0.0)
    kernel = smc.Kernel(step, potential, scheme=mirror, due=lambda k, log_w: True)
    den = oracles.exact_denoiser(GMM1, VP)
    model = solvers.Bound(den, VP)
    grid = samplers.grid("dpmpp_2m_sde", VP, 8)
    state = kernel.init(jax.random.key(0), model, (n, 1), grid[0])
    state, _ = kernel(jax.random.key(1), model, state, 0, grid[0], grid[1])
    after, _ = kernel(jax.random.key(2), model, state, 1, grid[1], grid[2])

    x, carry = jax.tree.map(lambda v: v[::-1], (state.x, state.carry))
    pred = model.pred(x, grid[1])
    evaluated = solvers.Evaluated(den, VP, None, pred)
    k_move = jax.random.split(jax.random.key(2), 3)[2]
    moved, _ = solvers.advance(step, k_move, evaluated, x, grid[1], grid[2], carry)
    np.testing.assert_array_equal(np.asarray(after.x), np.asarray(moved))
    np.testing.assert_allclose(after.carry.m[0], VP.x0_eps(pred, x, grid[1])[0], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(after.carry.m[1]), np.asarray(carry.m[0]))

"""Classifier-free guidance as one batched network call, its NFE, and the compiled-sampler cache
of `sampling.draw.draw`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from difflab import samplers
from difflab.data import markov, toy
from difflab.metrics import oracles
from difflab.models import continuous, flow, masked
from difflab.models.counts import NEG, CountFlow
from difflab.samplers import discrete, guidance
from difflab.samplers.guidance import classifier_free, network_passes
from difflab.sampling.draw import draw
from difflab.training.components import build
from tests.helpers import tiny_config


def test_guidance_is_one_call_on_the_doubled_batch():
    """docs/math.md §6.1: one network call on [x; x] with labels [c; null]."""
    calls = []

    def net(x, t, cond=None, h=None):
        calls.append((x.shape[0], t.shape, np.asarray(cond).tolist()))
        return x + jnp.where(cond >= 0, cond, 10)[:, None].astype(jnp.float32)

    x, t, cond = jnp.zeros((3, 2)), 0.5, jnp.array([0, 1, 2])
    out = classifier_free(net, 2.0)(x, t, cond)
    assert calls == [(6, (6,), [0, 1, 2, -1, -1, -1])]
    np.testing.assert_allclose(out, 10 + 2.0 * (np.array([0, 1, 2])[:, None] - 10.0) + 0 * x)
    assert network_passes(classifier_free(net, 2.0)) == 2 and network_passes(net) == 1


def conditional_components(tmp_path, label_dropout=0.1):
    """A tiny class-conditional flow on labelled 2-D points from an .npz."""
    rng = np.random.default_rng(0)
    path = str(tmp_path / "points.npz")
    np.savez(path, x=rng.normal(size=(64, 2)).astype(np.float32), label=np.arange(64) % 4)
    c = tiny_config()
    c.model.conditional = True
    c.data.name, c.data.path = "npz", path
    c.process.label_dropout = label_dropout
    return build(c)


def test_guided_nfe_counts_network_passes_and_the_compiled_sampler_is_reused(tmp_path):
    comp = conditional_components(tmp_path)
    _, plain = draw(comp, comp.init_params, "heun", 4, 8, 0)
    _, guided = draw(comp, comp.init_params, "heun", 4, 8, 0, cfg_scale=2.0)
    assert int(plain["nfe"]) == 8 and int(guided["nfe"]) == 16
    assert int(guided["denoiser_calls"]) == 8
    # new parameters and seed: the same compiled sampler, no new trace
    params = jax.tree.map(lambda p: p + 0.01, comp.init_params)
    draw(comp, params, "heun", 4, 8, 1, cfg_scale=2.0)
    assert len(comp.compiled) == 2
    assert all(fn._cache_size() == 1 for fn in comp.compiled.values())


def test_guidance_on_a_run_without_label_dropout_is_refused(tmp_path):
    comp = conditional_components(tmp_path, label_dropout=0.0)
    with pytest.raises(ValueError, match=r"config.process.label_dropout=0.0"):
        draw(comp, comp.init_params, "heun", 4, 8, 0, cfg_scale=2.0)


# -- classifier guidance with the exact classifier (docs/math.md §6.2, A10) ------------------------

GMM1 = toy.standard_mixture_1d()  # classes = components; class 2 is N(2.5, 0.4^2)
GAUSSIAN = {
    "flow_linear": flow.FlowMatching(path=flow.linear_path()),
    "vp_cosine_eps": continuous.GaussianDiffusion(continuous.cosine(), "eps"),
    "flow_stochastic": flow.FlowMatching(path=flow.stochastic_interpolant()),
}


def exact_classifier(process):
    return guidance.classifier_potential(
        lambda x, t: oracles.log_responsibilities(GMM1, process, x, t)
    )


@pytest.mark.parametrize("name", ["flow_linear", "vp_cosine_eps"])
def test_classifier_guidance_term_is_the_analytic_class_score(name):
    """s_guided - s = grad log p(c | x_t) = s_k(x_t) - s(x_t), component k's score in closed
    form, at several t."""
    process = GAUSSIAN[name]
    den = oracles.exact_denoiser(GMM1, process)
    guided = guidance.gradient(den, process, exact_classifier(process), 1.0)
    x = jnp.linspace(-4.0, 4.0, 9)[:, None]
    cond = jnp.full((9,), 2)
    for t in (0.2, 0.5, 0.9):
        tt = jnp.full((9,), t)
        shift = process.score(guided(x, tt, cond), x, tt) - process.score(den(x, tt), x, tt)
        a, s = process.alpha(t), process.sigma(t)
        var_k = a**2 * GMM1.stds[2, 0] ** 2 + s**2
        analytic = -(x - a * GMM1.means[2, 0]) / var_k - oracles.score(GMM1, process, x, tt)
        np.testing.assert_allclose(shift, analytic, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize(
    "name, sampler",
    [("flow_linear", "euler"), ("vp_cosine_eps", "ddpm"), ("flow_stochastic", "em")],
)
def test_classifier_guidance_at_scale_1_samples_the_class(name, sampler):
    """With the exact classifier and scale 1 the unconditional mixture is steered to exactly
    component 2 (KS to N(2.5, 0.4^2) < 0.03 at N = 4000); scale 0.5 does not reach it."""
    process = GAUSSIAN[name]
    den = oracles.exact_denoiser(GMM1, process)
    grid = samplers.grid(sampler, process, 100)
    n = 4000

    @jax.jit
    def run(key, scale):  # one compilation for both scales
        guided = guidance.gradient(den, process, exact_classifier(process), scale)
        return samplers.get("flow", sampler)(key, guided, process, (n, 1), cond, grid)[0]

    def ks(scale):
        x = np.sort(np.asarray(run(jax.random.key(0), scale))[:, 0])
        return stats.kstest(x, stats.norm(2.5, 0.4).cdf).statistic

    cond = jnp.full((n,), 2)
    assert ks(1.0) < 0.03
    assert ks(0.5) > 0.1  # negative control: the wrong scale


# -- classifier-free guidance for the masked and count families ------------------------------


def test_masked_cfg_mixes_log_probabilities_into_valid_distributions():
    """Exact Markov-chain denoisers: label 0 is chain A, the null label chain C. w = 1 samples
    chain A and w = 0 chain C (TV by enumeration); at w = 2 each position's law is
    p_A^2 p_C^-1 renormalised, a valid distribution."""
    chain_a = markov.toy_chain()
    chain_c = markov.MarkovChain(np.array([0.2, 0.3, 0.5]), chain_a.transition[::-1].copy())
    process = masked.MaskedDiffusion(vocab_size=3)

    def den(z, t, cond=None):
        la, lc = chain_a.denoiser_logits(z, 3), chain_c.denoiser_logits(z, 3)
        return jnp.where((cond == 0)[:, None, None], la, lc)

    z = jnp.array([[3, 1, 3, 3], [0, 3, 3, 2]])
    lp = process.log_probs(guidance.classifier_free(den, 2.0)(z, 0.5, jnp.zeros(2, int)), z)
    np.testing.assert_allclose(jnp.exp(jax.nn.logsumexp(lp, -1)), 1.0, atol=1e-5)
    pa, pc = chain_a.denoiser_logits(z, 3), chain_c.denoiser_logits(z, 3)
    expect = jax.nn.log_softmax(2 * pa - pc, -1)
    free = (z == 3)[..., None]
    np.testing.assert_allclose(jnp.where(free, lp, 0), jnp.where(free, expect, 0), atol=1e-5)

    n, seqs = 20_000, chain_a.all_sequences(4)
    sampler = discrete.first_hitting()
    run = jax.jit(
        lambda k, w: sampler(
            k, guidance.classifier_free(den, w), process, (n, 4), jnp.zeros(n, int), GRID
        )
    )
    for w, chain in ((1.0, chain_a), (0.0, chain_c)):
        x = np.asarray(run(jax.random.key(1), w)[0])
        hist = np.bincount(np.ravel_multi_index(x.T, (3,) * 4), minlength=81) / n
        assert 0.5 * np.abs(hist - np.exp(chain.log_prob(seqs))).sum() < 0.035


def test_count_cfg_mixes_log_rates_geometrically():
    """Pure birth from 0 with constant rates (label: 5, null: 2): x_0 ~ Poisson(2^(1-w) 5^w),
    tau-leaping being exact for constant birth rates: w = 0, 1, 2 give Poisson(2), (5), (12.5)."""
    process = CountFlow(source="zeros")

    def den(x, t, cond=None):
        rate = jnp.where(cond == 0, 5.0, 2.0)[:, None]
        return jnp.stack(jnp.broadcast_arrays(jnp.log(rate), NEG + 0 * rate), axis=-1)

    n = 20_000
    run = jax.jit(
        lambda k, w: discrete.tau_leaping(
            k, guidance.classifier_free(den, w), process, (n, 1), jnp.zeros(n, int), GRID
        )
    )
    for w, mean in ((0.0, 2.0), (1.0, 5.0), (2.0, 12.5)):
        x = np.asarray(run(jax.random.key(2), w)[0])[:, 0]
        assert x.min() >= 0
        pmf = stats.poisson(mean).pmf(np.arange(60))
        assert 0.5 * np.abs(np.bincount(x, minlength=60)[:60] / n - pmf).sum() < 0.02


GRID = jnp.array([1.0, 0.5, 0.0])


def test_guidance_interval_guides_only_inside_it():
    """w on [t_lo, t_hi], the conditional prediction (w = 1) outside."""

    def net(x, t, cond=None, h=None):
        return jnp.where(cond >= 0, 1.0, 0.0)[:, None] + 0 * x

    guided = guidance.classifier_free(net, 3.0, interval=(0.2, 0.6))
    x, cond = jnp.zeros((3, 2)), jnp.zeros(3, int)
    out = guided(x, jnp.array([0.1, 0.4, 0.9]), cond)
    np.testing.assert_allclose(out[:, 0], [1.0, 3.0, 1.0])


# -- classifier guidance for masked models (docs/math.md §6.2) -------------------------------------


def test_masked_classifier_guidance_exact_vs_first_order():
    """Markov-chain toy, class c = the last token, the exact noise-free classifier
    p(x^3 = c | z) by forward-backward on one-hot inputs. The exact tilted denoiser at scale 1
    samples p(x | x^3 = c) (TV < 0.035, first-hitting, N = 20000); its first-order
    approximation moves toward the class (x^3 = 0 in > 45% of samples, base rate 29.5%) but is
    biased (TV > 0.3): the class is a step function of the last token's one-hot, which a
    linearisation cannot follow."""
    chain, length = markov.toy_chain(), 4
    process = masked.MaskedDiffusion(vocab_size=3)
    den = chain.denoiser(process.mask_id)
    seqs = chain.all_sequences(length)
    target = np.exp(chain.log_prob(seqs)) * (seqs[:, -1] == 0)
    target /= target.sum()
    n = 20_000

    def law(exact):
        guided = guidance.masked_classifier(
            den, process, lambda h, t: chain.onehot_logits(h)[:, -1, :], 1.0, length, exact
        )
        assert guided.guidance_calls == (12 if exact else 1)
        sampler = discrete.first_hitting()
        run = jax.jit(lambda k: sampler(k, guided, process, (n, length), jnp.zeros(n, int), GRID))
        x = np.asarray(run(jax.random.key(3))[0])
        hist = np.bincount(np.ravel_multi_index(x.T, (3,) * length), minlength=81) / n
        return 0.5 * np.abs(hist - target).sum(), np.mean(x[:, -1] == 0)

    tv_exact, hit_exact = law(True)
    tv_first, hit_first = law(False)
    assert tv_exact < 0.035 and hit_exact == 1.0
    assert tv_first > 0.3 and hit_first > 0.45


def test_gradient_guidance_acts_only_inside_its_interval():
    """Outside (t_lo, t_hi) the guided prediction is the plain one (scale 0, not 1)."""
    process = GAUSSIAN["flow_linear"]
    den = oracles.exact_denoiser(GMM1, process)
    guided = guidance.gradient(den, process, exact_classifier(process), 2.0, (0.0, 0.5))
    x, cond = jnp.full((2, 1), 1.0), jnp.full((2,), 2)
    t = jnp.array([0.3, 0.8])
    out, plain = guided(x, t, cond), den(x, t)
    assert abs(float(out[0, 0] - plain[0, 0])) > 1e-2
    np.testing.assert_allclose(out[1], plain[1], atol=1e-6)


@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_masked_classifier_guidance_tilts_by_the_classifier_to_the_power_gamma(gamma):
    """At each masked position the exact guided conditional is p(v | z) p(c | z^(i <- v))^gamma,
    normalised (docs/math.md §6.2), with a soft classifier (a step classifier's 0 / 1 probabilities
    are unchanged by any power, so it cannot see gamma); unmasked positions keep their
    prediction."""
    chain, length = markov.toy_chain(), 4
    process = masked.MaskedDiffusion(vocab_size=3)
    den = chain.denoiser(process.mask_id)
    weights = jax.random.normal(jax.random.key(0), (length * 4, 3))

    def log_classifier(h, t):
        return jax.nn.log_softmax(h.reshape(h.shape[0], -1) @ weights)

    z = jnp.array([[0, 3, 3, 2], [3, 1, 3, 3]])
    t, cond = jnp.full((2,), 0.6), jnp.array([1, 2])
    guided = guidance.masked_classifier(den, process, log_classifier, gamma, length)
    got = jax.nn.log_softmax(guided(z, t, cond), axis=-1)
    base = np.asarray(process.log_probs(den(z, t), z))
    for b in range(2):
        for i in range(length):
            if z[b, i] != process.mask_id:
                np.testing.assert_allclose(got[b, i], jax.nn.log_softmax(base[b, i]), atol=1e-5)
                continue
            subs = jnp.tile(z[b], (3, 1)).at[:, i].set(jnp.arange(3))
            lc = log_classifier(jax.nn.one_hot(subs, 4), t[:3])[:, cond[b]]
            want = jax.nn.log_softmax(base[b, i] + gamma * lc)
            np.testing.assert_allclose(got[b, i], want, atol=1e-5)

"""One record per sampler (`samplers.SPECS`) and per family (`models.families.FAMILIES`): every
sampler and every particle move has an oracle test, every family record is complete, and the
processes meet the Protocols the code asks for instead of probing attributes."""

import importlib

import pytest

from difflab import samplers
from difflab.models import (
    continuous,
    counts,
    families,
    flow,
    masked,
    nets,
    protocols,
    shortcut,
    uniform,
)
from difflab.samplers import steering, svdd
from difflab.samplers.observed import observe
from tests import test_counts, test_gaussian_samplers, test_smc, test_uniform

# oracle tests of the samplers not covered by a parametrisation over the registry
NAMED_ORACLES = {
    "few_step": "test_shortcut::test_s1d_few_step_sampling_with_the_exact_velocity_is_exact",
    "ancestral": "test_masked::test_m3_ancestral_samples_follow_q_t_and_converge",
    "first_hitting": "test_masked::test_m2_first_hitting_sampler_is_exact",
    "confidence": (
        "test_masked::test_confidence_sampler_unmasks_k_per_step_and_never_changes_tokens"
    ),
    "exact": "test_counts::test_c2_exact_thinning_reproduces_negative_binomial",
    "uniform_ancestral": (
        "test_uniform::test_ancestral_sampler_draws_its_exact_law_and_converges_to_p"
    ),
    "entropy_bounded": (
        "test_remasking::test_entropy_bounded_at_gamma_zero_is_exact_with_one_token_per_call"
    ),
    **{
        f"remdm_{kind}": "test_remasking::test_remasking_samples_follow_their_exact_law"
        for kind in ("cap", "rescale", "loop")
    },
}


def test_every_sampler_has_an_oracle_test():
    """A sampler added to the registry without an oracle test fails here (the Gaussian and count
    oracles parametrise over the registry; the rest are named)."""
    covered = {s for _, s in test_gaussian_samplers.CASES} | set(test_counts.STEPPED)
    for name, test in NAMED_ORACLES.items():
        module, function = test.split("::")
        assert callable(getattr(importlib.import_module(f"tests.{module}"), function)), test
        covered.add(name)
    assert covered == set(samplers.SPECS), set(samplers.SPECS) ^ covered


def test_every_particle_move_has_an_oracle_test():
    """Every one-evaluation stochastic move is checked steering toward a closed-form tilt."""
    moves = {n for n, s in samplers.SPECS.items() if s.move is not None}
    covered = {*test_smc.GAUSSIAN_MOVES, *test_counts.STEPPED, *test_smc.MASKED_MOVES}
    covered |= set(test_uniform.MOVES)
    assert covered == moves, covered ^ moves


@pytest.mark.parametrize("name", families.having(lambda f: f.sampled))
def test_every_sampled_family_record_is_complete(name):
    family = families.FAMILIES[name]
    assert samplers.names(name), name
    assert family.data in ("continuous", "tokens", "counts")
    assert family.estimate in steering.ESTIMATES and family.estimate in svdd.ESTIMATES
    assert family.guidance <= {"classifier", "gradient", "prompt", "observe"}
    if family.corrector is not None:
        assert family.corrector in samplers.names(name)
        assert samplers.SPECS[family.corrector].move is not None
    assert any(nets.output(n) == family.nets for n in nets.NETWORKS), family.nets


def test_a_family_without_a_denoised_estimate_is_a_clear_error(monkeypatch):
    """Steering and SVDD-PM refuse a family whose record defines no estimate (they once gave
    every unknown family Gaussian Tweedie estimates)."""
    toy = families.Family(families.FAMILIES["flow"].build_process, "continuous", estimate=None)
    monkeypatch.setitem(families.FAMILIES, "toy", toy)
    with pytest.raises(ValueError, match="'toy' family defines no denoised estimate"):
        steering.estimate_for("toy")
    with pytest.raises(ValueError, match="'toy' family defines no denoised estimate"):
        svdd.estimate_for("toy")
    with pytest.raises(ValueError, match="config.process.family must be one of"):
        families.get("nope")


def test_processes_meet_their_protocols():
    gaussian = [flow.FlowMatching(), continuous.GaussianDiffusion()]
    for p in gaussian:
        assert isinstance(p, protocols.GaussianProcess)
        assert not isinstance(p, (protocols.FlowMapProcess, protocols.MaskedProcess))
        assert not isinstance(p, protocols.Conditioned)
    assert isinstance(shortcut.Shortcut(), protocols.ShortcutProcess)
    meanflow = shortcut.MeanFlow()
    assert isinstance(meanflow, protocols.FlowMapProcess)
    assert not isinstance(meanflow, protocols.ShortcutProcess)
    tokens = masked.MaskedDiffusion(3)
    assert isinstance(tokens, protocols.MaskedProcess)
    assert not isinstance(tokens, protocols.GaussianProcess)
    assert isinstance(counts.CountFlow(), protocols.CountProcess)
    noisy = uniform.UniformDiffusion(3)
    assert isinstance(noisy, protocols.UniformProcess)
    assert not isinstance(noisy, protocols.MaskedProcess)
    assert not isinstance(tokens, protocols.UniformProcess)
    observed = observe(tokens, [[0, 1]], [[True, False]])
    assert isinstance(observed, protocols.Conditioned) and isinstance(
        observed, protocols.MaskedProcess
    )
    for p in [*gaussian, meanflow, tokens, noisy, counts.CountFlow()]:
        assert isinstance(p, protocols.Process), type(p).__name__

"""Metrics: distances are zero on identical sets, grow with a shift, and see a missing mode."""

import numpy as np
import pytest

from difflab import data
from difflab.metrics import distances, frechet


@pytest.mark.optimized
def test_sliced_wasserstein_of_a_shift():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    assert distances.sliced_wasserstein(x, x) < 1e-6
    # SW_2 of a shift by c: sqrt(E (theta.c)^2) = |c| / sqrt(d)
    sw = distances.sliced_wasserstein(x + np.array([1.0, 0.0]), x, num_projections=2000)
    assert abs(sw - 1 / np.sqrt(2)) < 0.03


def test_energy_distance():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2))
    assert abs(distances.energy_distance(x, x)) < 1e-5
    assert distances.energy_distance(x, y) < 0.02
    assert distances.energy_distance(x + 1.0, y) > 0.5


def test_frechet_distance_closed_form():
    mu1, mu2 = np.zeros(3), np.ones(3)
    c1, c2 = np.eye(3), 4 * np.eye(3)
    # |mu1 - mu2|^2 + tr(C1 + C2 - 2 sqrt(C1 C2)) = 3 + 3 (1 + 4 - 4) = 6
    assert abs(frechet.frechet_distance_from_stats(mu1, c1, mu2, c2) - 6.0) < 1e-9


def test_digits_frechet_sees_mode_dropping():
    d = data.digits(0, "all")
    params, acc = frechet.classifier()
    assert acc > 0.95
    ref = d.reference(1600, 0)
    same = frechet.frechet_distance(ref[:800], ref[800:])
    only_ones = frechet.frechet_distance(d.x[d.label == 1][:170], ref[:800])
    assert only_ones > 5 * same

"""Minibatch optimal-transport couplings of data and source rows (docs/math.md §4.1, §2.2): the
exact assignment between two equal-size batches under an L1, squared-L2 or symmetric-Poisson cost.
Used by the data pipeline (`data.counts.PairedSource`), so that training batches carry their
paired source rows."""

from __future__ import annotations

import numpy as np


def cost_matrix(x0: np.ndarray, x1: np.ndarray, cost: str) -> np.ndarray:
    """C_ij between data rows x0_i and source rows x1_j: 'l1', 'sqeuclidean', or the symmetric
    Poisson divergence sum_d (a_d - b_d)(log a_d - log b_d), logs of (. + 1e-8)
    (docs/math.md §4.1)."""
    a = np.asarray(x0, np.float64)[:, None, :]
    b = np.asarray(x1, np.float64)[None, :, :]
    if cost == "l1":
        return np.abs(a - b).sum(-1)
    if cost == "sqeuclidean":
        return np.square(a - b).sum(-1)
    if cost == "poisson":
        return ((a - b) * (np.log(a + 1e-8) - np.log(b + 1e-8))).sum(-1)
    raise ValueError(f"config.process.ot_cost must be one of {OT_COSTS}, got {cost!r}")


OT_COSTS = ("l1", "sqeuclidean", "poisson")


def ot_permutation(x0, x1, cost: str = "l1") -> np.ndarray:
    """The source order pi with (x0_i, x1_pi(i)) the exact optimal transport plan between two
    equal-size uniform batches (a permutation, by Birkhoff; Hungarian algorithm on the host)."""
    from scipy.optimize import linear_sum_assignment

    if len(x0) != len(x1):
        raise ValueError(f"OT pairs equal-size batches, got {len(x0)} data and {len(x1)} source")
    rows, cols = linear_sum_assignment(cost_matrix(x0, x1, cost))
    return cols[np.argsort(rows)]

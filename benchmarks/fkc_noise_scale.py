"""FKC against its noise scale eta, with exact scores (the oracles of tests/test_fkc.py: VP-linear,
N = 20000 particles): the weighted variance of annealing N(1, 0.5^2)^2, of the product
N(1, 0.5^2) N(-0.5, 0.8^2) and of the CFG target at w = 2 for eta around the stability bound
(docs/fkc_stability.md; the check is bypassed by building the SMC sampler directly), and the
annealing log Z against the number of steps K at eta = 1 and 2, and the error of the Richardson
reference 2 L(1000) - L(500) at eta = 2 over four seeds.

python benchmarks/fkc_noise_scale.py [--out benchmarks/results]   -> fkc_noise_scale_<platform>.json
"""

import os
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from difflab.benchmarks.common import write_result  # noqa: E402
from difflab.samplers import fkc, smc, solvers  # noqa: E402
from tests import test_fkc as oracle  # noqa: E402

TARGETS = {  # laws, exponents, exact (mean, variance)
    "anneal_beta2": (*oracle.ANNEAL, (1.0, 0.125)),
    "product": (*oracle.PRODUCT, (0.5787, 0.1798)),
    "cfg_w2": (oracle.CFG_LAWS, (2.0, -1.0), (4 / 3, 2 / 3)),
}


def weighted(laws, betas, eta, steps=500, seed=0):
    """(mean, variance, log Z) of FKC-SMC at this eta (no eta check)."""
    den = fkc.experts(
        *(oracle.oracles.exact_denoiser(oracle.gaussian(*law), oracle.VP) for law in laws)
    )
    sampler = smc.smc(
        fkc.guided_move(betas, eta),
        fkc.corrector_weights(betas),
        init=oracle.exact_init(laws, betas),
    )
    grid = solvers.uniform_grid(steps, 1.0, oracle.VP.t_min)
    run = jax.jit(lambda k: sampler(k, den, oracle.VP, (oracle.N, 1), None, grid))
    x, info = run(jax.random.key(seed))
    x = np.asarray(x)[:, 0]
    return round(float(x.mean()), 4), round(float(x.var()), 4), round(float(info["log_z"]), 4)


def main():
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
    etas = (0.5, 0.65, 0.75, 1.0, 2.0)
    variance = {}
    for name, (laws, betas, exact) in TARGETS.items():
        rows = {f"{eta:g}": weighted(laws, betas, eta)[:2] for eta in etas}
        variance[name] = {
            "exact_mean_variance": exact,
            "eta_bound": round(fkc.eta_bound(betas), 4),
            "mean_variance_by_eta": rows,
        }
    log_z = {
        f"{eta:g}": {
            f"{k}": weighted(*oracle.ANNEAL, eta, steps=k)[2] for k in (250, 500, 1000, 2000)
        }
        for eta in (1.0, 2.0)
    }
    richardson = {}  # 2 L(1000) - L(500) - exact at eta = 2, the reference test_fkc checks
    for seed in range(4):
        coarse = weighted(*oracle.ANNEAL, 2.0, steps=500, seed=seed)[2]
        fine = weighted(*oracle.ANNEAL, 2.0, steps=1000, seed=seed)[2]
        richardson[f"seed{seed}"] = round(2 * fine - coarse - 0.6931, 4)
    write_result(
        f"fkc_noise_scale_{jax.devices()[0].platform}",
        {
            "setting": "exact scores, VP-linear, N = 20000, uniform grid, K = 500 unless keyed",
            "variance": variance,
            "anneal_log_z_by_eta_and_steps": {"exact": 0.6931, **log_z},
            "anneal_log_z_richardson_error_eta2": richardson,
        },
        out,
    )


if __name__ == "__main__":
    main()

"""FK steering of the 1-D mixture with the particles split over every device vs on one device
(run with XLA_FLAGS=--xla_force_host_platform_device_count=8): prints one JSON line."""

import json
import sys

import jax
import numpy as np
from jax.sharding import Mesh

sys.path.insert(0, ".")
from metrics import oracles  # noqa: E402
from samplers import smc, solvers, steering  # noqa: E402
from tests.test_smc import DDPM, GMM1, VP, reward  # noqa: E402


def run(devices, scheme):
    mesh = Mesh(np.array(devices), ("data",))
    potential = steering.reward_potential(reward, 1.0)
    sampler = smc.smc(
        DDPM, potential, scheme=scheme, resample_every=4, output="weighted", mesh=mesh
    )
    grid = solvers.uniform_grid(40, 1.0, VP.t_min)
    den = oracles.exact_denoiser(GMM1, VP)
    x, info = jax.jit(lambda k: sampler(k, den, VP, (1024, 1), None, grid))(jax.random.key(5))
    return x, info


out = {"devices": jax.device_count()}
for scheme in ("systematic",):
    x8, i8 = run(jax.devices(), scheme)
    x1, i1 = run(jax.devices()[:1], scheme)
    out[scheme] = {
        "spread_over": len(x8.sharding.device_set),
        "max_abs_diff": float(np.max(np.abs(np.asarray(x8) - np.asarray(x1)))),
        "same_resampling_steps": bool(np.array_equal(i8["resampled"], i1["resampled"])),
        "resamplings": int(i1["resamplings"]),
        "log_z": [float(i8["log_z"]), float(i1["log_z"])],
    }
print(json.dumps(out))

"""Sampling split over 8 virtual CPU devices against one device, in one process (run with
XLA_FLAGS=--xla_force_host_platform_device_count=8); prints one JSON line.

- FK steering of the 1-D mixture and FKC annealing of it: particles sharded, resampled globally;
- independent samples of a small flow model (Euler-Maruyama) and a small masked model
  (ancestral): each sample depends only on (seed, index)."""

import json
import sys

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

sys.path.insert(0, ".")
from difflab import samplers  # noqa: E402
from difflab.configs import masked_markov  # noqa: E402
from difflab.metrics import oracles  # noqa: E402
from difflab.samplers import fkc, smc, solvers, steering  # noqa: E402
from difflab.sampling import draw as drawing  # noqa: E402
from difflab.training import mesh as mesh_lib  # noqa: E402
from difflab.training.components import build  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402
from tests.test_smc import DDPM, GMM1, VP, reward  # noqa: E402


def steered(devices):
    mesh = Mesh(np.array(devices), ("data",))
    potential = steering.reward_potential(reward, 1.0)
    sampler = smc.smc(
        DDPM, potential, scheme="systematic", resample_every=4, output="weighted", mesh=mesh
    )
    grid = solvers.uniform_grid(40, 1.0, VP.t_min)
    den = oracles.exact_denoiser(GMM1, VP)
    x, info = jax.jit(lambda k: sampler(k, den, VP, (1024, 1), None, grid))(jax.random.key(5))
    return x, info


def annealed(devices):
    """FKC annealing p^2 of the mixture (particles sharded, weights gathered)."""
    mesh = Mesh(np.array(devices), ("data",))
    sampler = fkc.fkc((2.0,), eta=1.0, resample_every=4, output="weighted", mesh=mesh)
    grid = samplers.grid("em", VP, 40)  # the EDM grid that keeps Euler-Maruyama stable
    den = oracles.exact_denoiser(GMM1, VP)
    x, info = jax.jit(lambda k: sampler(k, den, VP, (1024, 1), None, grid))(jax.random.key(5))
    return x, info


x8, i8 = steered(jax.devices())
x1, i1 = steered(jax.devices()[:1])
out = {"devices": jax.device_count()}
out["smc"] = {
    "spread_over": len(x8.sharding.device_set),
    "max_abs_diff": float(np.max(np.abs(np.asarray(x8) - np.asarray(x1)))),
    "same_resampling_steps": bool(np.array_equal(i8["resampled"], i1["resampled"])),
    "resamplings": int(i1["resamplings"]),
    "log_z": [float(i8["log_z"]), float(i1["log_z"])],
}

a8, j8 = annealed(jax.devices())
a1, j1 = annealed(jax.devices()[:1])
out["fkc"] = {
    "spread_over": len(a8.sharding.device_set),
    "max_abs_diff": float(np.max(np.abs(np.asarray(a8) - np.asarray(a1)))),
    "max_log_weight_diff": float(
        np.max(np.abs(np.asarray(j8["log_weights"]) - np.asarray(j1["log_weights"])))
    ),
    "same_resampling_steps": bool(np.array_equal(j8["resampled"], j1["resampled"])),
    "resamplings": int(j1["resamplings"]),
    "log_z": [float(j8["log_z"]), float(j1["log_z"])],
}

flow = build(tiny_config())
masked_config = masked_markov.get_config()
masked_config.model.width, masked_config.model.depth = 32, 1
masked = build(masked_config)
CASES = [("flow_em", flow, "em", 1000), ("masked", masked, "ancestral", 99)]
for name, comp, sampler, num in CASES:
    one, _ = drawing.draw(comp, comp.init_params, sampler, 4, num, 7, devices=jax.devices()[:1])
    eight, _ = drawing.draw(comp, comp.init_params, sampler, 4, num, 7, devices=jax.devices())
    out[name] = {
        "max_abs_diff": float(np.max(np.abs(one.astype(float) - eight.astype(float)))),
        "differing": float(np.mean(one != eight)),
    }
# the compiled call's output lies on all 8 devices (the masked model's 99 rows are padded to 104)
mesh = drawing.sampling_mesh(jax.devices())
run = drawing.compiled_sampler(flow, "em", 4, 1000, None, True, None, mesh=mesh)
split, whole = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
x, _ = run(
    jax.random.key(7),
    mesh_lib.place(np.arange(1000), split),
    mesh_lib.place(flow.init_params, whole),
    None,
    (),
    None,
    None,
)
out["flow_em"]["spread_over"] = len(x.sharding.device_set)
print(json.dumps(out))

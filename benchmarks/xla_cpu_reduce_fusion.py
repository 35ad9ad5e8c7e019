"""What XLA:CPU's YNNPACK reduction fusions cost the exact mixture oracles.

python benchmarks/xla_cpu_reduce_fusion.py [--points 20000] [--repeats 50]

XLA:CPU (jaxlib 0.10) hands reductions to YNNPACK fusions. This times the exact posterior mean
E[x0 | x_t] (metrics.oracles, docs/math.md §8.1a: a softmax over the K components and a sum over
them) of N points at per-point times, and a whole 500-step DDPM draw of N points driven by it,
once with the default XLA flags and once with --xla_cpu_experimental_ynn_fusion_type=-reduce
(each in its own process: XLA reads its flags once). Both on the standard 1-D mixture (K = 3)
and the 2-D ring (K = 8) under the cosine VP schedule, compiled with and without XLA's
optimisations (the test suite compiles most programs without them). Reports milliseconds
(best of `repeats` calls; one call for the draw) and the largest difference between the two
settings' outputs. Writes xla_cpu_reduce_fusion_<platform>.json.
"""

import json
import os
import subprocess
import sys

from absl import app, flags

_N = flags.DEFINE_integer("points", 20_000, "points per call")
_REPEATS = flags.DEFINE_integer("repeats", 50, "timed calls (the best is kept)")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")

NO_YNN_REDUCE = "--xla_cpu_experimental_ynn_fusion_type=-reduce"


def best_ms(fn, args, repeats):
    """Milliseconds of the fastest of `repeats` calls of the jitted fn, after compiling it."""
    import jax

    from difflab.benchmarks.common import first_and_best_seconds

    fn = jax.jit(fn)
    return 1e3 * first_and_best_seconds(lambda: fn(*args), repeats)[1]


def ddpm_ms(posterior_mean, process, shape, steps=500):
    """Milliseconds of one DDPM draw of `shape` driven by the x0 prediction, after compiling."""
    import jax

    from difflab.samplers import solvers

    grid = solvers.uniform_grid(steps, 1.0, process.t_min)
    denoiser = lambda xt, t, cond=None: posterior_mean(xt, t)
    draw = lambda key: solvers.ddpm(key, denoiser, process, shape, None, grid)[0]
    return best_ms(draw, (jax.random.key(2),), 1)


def measure(n, repeats):
    """This process's rows (its XLA flags fixed): times and a checksum of each output."""
    import jax
    import numpy as np

    from difflab.data import toy
    from difflab.metrics import oracles
    from difflab.models import continuous

    process = continuous.GaussianDiffusion(continuous.cosine(), "x0")
    mixtures = {"1d_k3": toy.standard_mixture_1d(), "2d_ring_k8": toy.ring_mixture()}
    rows = []
    for optimised in (True, False):
        jax.config.update("jax_disable_most_optimizations", not optimised)
        for name, gmm in mixtures.items():
            d = gmm.means.shape[1]
            x = 2.0 * jax.random.normal(jax.random.key(0), (n, d))
            t = jax.random.uniform(jax.random.key(1), (n,), minval=0.05, maxval=0.95)
            mean = lambda x, t, g=gmm: oracles.posterior_mean(g, process, x, t)
            rows.append(
                {
                    "mixture": name,
                    "xla_optimised": optimised,
                    "posterior_mean_ms": round(best_ms(mean, (x, t), repeats), 3),
                    "ddpm_500_steps_ms": round(ddpm_ms(mean, process, (n, d)), 1),
                    "posterior_mean": np.asarray(jax.jit(mean)(x, t)).tolist(),
                }
            )
    return rows


def run_with(xla_flags, n, repeats):
    """measure() in a fresh process whose XLA_FLAGS are `xla_flags`."""
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    code = (
        "import json, sys; sys.path.insert(0, '.');"
        "from difflab.benchmarks.xla_cpu_reduce_fusion import measure;"
        f"print(json.dumps(measure({n}, {repeats})))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    import numpy as np

    from difflab.benchmarks.common import write_result

    n, repeats = _N.value, _REPEATS.value
    default = run_with("", n, repeats)
    without = run_with(NO_YNN_REDUCE, n, repeats)
    rows = []
    for a, b in zip(default, without, strict=True):
        diff = np.max(np.abs(np.asarray(a["posterior_mean"]) - np.asarray(b["posterior_mean"])))
        row = {"mixture": a["mixture"], "xla_optimised": a["xla_optimised"], "points": n}
        for key in ("posterior_mean_ms", "ddpm_500_steps_ms"):
            row[f"{key}_default"], row[f"{key}_without_ynn_reduce"] = a[key], b[key]
        row["max_abs_difference"] = float(diff)
        print(row)
        rows.append(row)
    write_result(
        "xla_cpu_reduce_fusion_cpu",
        {
            "flag": NO_YNN_REDUCE,
            "points": n,
            "repeats": repeats,
            "process": "GaussianDiffusion(cosine, x0)",
            "rows": rows,
        },
        _OUT.value,
    )


if __name__ == "__main__":
    app.run(main)

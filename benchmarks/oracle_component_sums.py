"""The exact mixture oracles' sums over components: axis reductions against unrolled sums on CPU.

python benchmarks/oracle_component_sums.py [--points 20000] [--repeats 50]

Times the exact posterior mean E[x0 | x_t] (metrics.oracles, MATH.md §8.1a) of N points two
ways: as the oracles write it, the K-component softmax and sum as K - 1 elementwise operations,
and as the reference form with jax.nn.softmax and jnp.sum over the component axis. Both on the
standard 1-D mixture (K = 3) and the 2-D ring (K = 8) under the cosine VP schedule, at per-point
times, compiled with XLA's optimisations on and off (the test suite compiles most programs
without them). Also times a whole 500-step DDPM draw of N points driven by each form. Reports
milliseconds per call (best of `repeats`) and the largest difference between the two forms.
Writes oracle_component_sums_<platform>.json.
"""

import time

from absl import app, flags

_N = flags.DEFINE_integer("points", 20_000, "points per call")
_REPEATS = flags.DEFINE_integer("repeats", 50, "timed calls (the best is kept)")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")


def best_ms(fn, args, repeats):
    """Milliseconds of the fastest of `repeats` calls of the jitted fn, after compiling it."""
    import jax

    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def ddpm_ms(posterior_mean, process, shape, steps=500):
    """Milliseconds of one DDPM draw of `shape` driven by the x0 prediction, after compiling."""
    import jax

    from difflab.samplers import solvers

    grid = solvers.uniform_grid(steps, 1.0, process.t_min)
    denoiser = lambda xt, t, cond=None: posterior_mean(xt, t)
    draw = lambda key: solvers.ddpm(key, denoiser, process, shape, None, grid)[0]
    return best_ms(draw, (jax.random.key(2),), 1)


def reference_posterior_mean(gmm, path, x, t):
    """x_hat = sum_k r_k [mu_k + alpha_t Sigma_k C_k^-1 (x - alpha_t mu_k)], with the softmax and
    the sum over the component axis as XLA reductions."""
    import jax
    import jax.numpy as jnp

    a = path.alpha(t)[:, None, None]
    s = path.sigma(t)[:, None, None]
    mu = jnp.asarray(gmm.means, jnp.float32)
    var = jnp.asarray(gmm.stds, jnp.float32) ** 2
    cov = a**2 * var + s**2
    diff = x[:, None, :] - a * mu
    log_normal = -0.5 * jnp.sum(diff**2 / cov + jnp.log(2 * jnp.pi * cov), axis=-1)
    r = jax.nn.softmax(jnp.log(jnp.asarray(gmm.weights, jnp.float32)) + log_normal, axis=-1)
    return jnp.sum(r[..., None] * (mu + a * var / cov * diff), axis=1)


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp

    from difflab.benchmarks.common import write_result
    from difflab.data import toy
    from difflab.metrics import oracles
    from difflab.models import continuous

    n, repeats = _N.value, _REPEATS.value
    process = continuous.GaussianDiffusion(continuous.cosine(), "x0")
    mixtures = {"1d_k3": toy.standard_mixture_1d(), "2d_ring_k8": toy.ring_mixture()}
    rows = []
    for optimised in (True, False):
        jax.config.update("jax_disable_most_optimizations", not optimised)
        for name, gmm in mixtures.items():
            d = gmm.means.shape[1]
            x = 2.0 * jax.random.normal(jax.random.key(0), (n, d))
            t = jax.random.uniform(jax.random.key(1), (n,), minval=0.05, maxval=0.95)
            unrolled = lambda x, t, g=gmm: oracles.posterior_mean(g, process, x, t)
            reference = lambda x, t, g=gmm: reference_posterior_mean(g, process, x, t)
            diff = jnp.max(jnp.abs(unrolled(x, t) - reference(x, t)))
            row = {"mixture": name, "xla_optimised": optimised, "points": n}
            row["posterior_mean_ms_unrolled"] = round(best_ms(unrolled, (x, t), repeats), 3)
            row["posterior_mean_ms_axis_reductions"] = round(best_ms(reference, (x, t), repeats), 3)
            row["max_abs_difference"] = float(diff)
            for form, fn in (("unrolled", unrolled), ("axis_reductions", reference)):
                row[f"ddpm_500_steps_ms_{form}"] = round(ddpm_ms(fn, process, (n, d)), 1)
            print(row)
            rows.append(row)
    write_result(
        f"oracle_component_sums_{jax.devices()[0].platform}",
        {"points": n, "repeats": repeats, "process": "GaussianDiffusion(cosine, x0)", "rows": rows},
        _OUT.value,
    )


if __name__ == "__main__":
    app.run(main)

"""Bits per dimension of held-out digits under a trained run: ODE likelihood and (diffusion) ELBO.

python benchmarks/digits_likelihood.py --workdir runs/diffusion_digits [--probes 4] [--num_t 64]

The 180 held-out digits (the fixed 10% test split) lie on a grid of spacing 1/8 in [-1, 1];
they are uniformly dequantised (bin width 1/8), so bits/dim = (NLL - 64 ln(1/8)) / (64 ln 2)
bounds the discrete NLL (docs/math.md §2.5). Reported conditional on the true label and
unconditional (the null label, trained by label dropout).
"""

import os
import time

from absl import app, flags, logging  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "runs/diffusion_digits", "trained digits run")
_PROBES = flags.DEFINE_integer("probes", 4, "Hutchinson probes for the ODE likelihood")
_NUM_T = flags.DEFINE_integer("num_t", 64, "time draws per example for the ELBO")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")
BIN_WIDTH = 1.0 / 8.0


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from difflab import data
    from difflab.benchmarks.common import write_result
    from difflab.metrics import likelihood
    from difflab.sampling.runs import load_run

    run = load_run(_WORKDIR.value)
    held_out = data.digits(0, "test")
    x = likelihood.dequantize(jax.random.key(0), jnp.asarray(held_out.x), BIN_WIDTH)
    d = int(np.prod(x.shape[1:]))
    labels = {"conditional": jnp.asarray(held_out.label), "unconditional": -jnp.ones(len(x), int)}
    if not run.components.num_classes:
        labels = {"unconditional": None}
    rows = {}
    for name, cond in labels.items():
        row = {}
        t0 = time.perf_counter()
        logp, info = jax.jit(
            lambda x, c: likelihood.log_likelihood(
                run.denoiser,
                run.process,
                x,
                c,
                key=jax.random.key(1),
                divergence="hutchinson",
                num_probes=_PROBES.value,
            )
        )(x, cond)
        nll = -np.asarray(logp)
        row["ode_bits_per_dim"] = round(float(likelihood.bits_per_dim(nll.mean(), d, BIN_WIDTH)), 4)
        row["ode_bits_per_dim_se"] = round(
            float(nll.std() / np.sqrt(len(nll)) / (d * np.log(2))), 4
        )
        row["ode_nfe"] = int(info["nfe"])
        row["ode_wall_s"] = round(time.perf_counter() - t0, 1)
        if hasattr(run.process, "nelbo"):
            nelbo = np.asarray(
                jax.jit(
                    lambda x, c: run.process.nelbo(
                        run.denoiser, jax.random.key(2), x, c, num_t=_NUM_T.value
                    )
                )(x, cond)
            )
            row["elbo_bits_per_dim"] = round(
                float(likelihood.bits_per_dim(nelbo.mean(), d, BIN_WIDTH)), 4
            )
            row["elbo_bits_per_dim_se"] = round(
                float(nelbo.std() / np.sqrt(len(nelbo)) / (d * np.log(2))), 4
            )
        rows[name] = row
        print(name, row)
    result = {
        "config": run.config.name,
        "checkpoint_step": run.step,
        "examples": len(x),
        "data": "sklearn digits, fixed 10% held-out split, dequantised with bin width 1/8",
        "hutchinson_probes": _PROBES.value,
        "elbo_time_draws": _NUM_T.value,
        "results": rows,
    }
    out = _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    write_result(f"{run.config.name}_likelihood", result, out)


if __name__ == "__main__":
    app.run(main)

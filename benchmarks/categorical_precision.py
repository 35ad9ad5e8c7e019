"""How float32 Gumbel-max sampling under-draws low-probability categories (docs/math.md §3.5).

python benchmarks/categorical_precision.py [--gaps 12,14,16,17,18] [--draws_per_gap 1e9]

One category has logit 0 and K = --rare categories have logit -d each. For each gap d, about
--draws_per_gap Gumbel draws (rows x (K + 1)) are made with float64 and with float32 uniforms,
and the number of rows won by a rare category is compared with its exact expectation
N K e^-d / (1 + K e^-d). Writes categorical_precision_<platform>.json.
"""

import math
import os
import time

from absl import app, flags  # noqa: E402

_GAPS = flags.DEFINE_string("gaps", "12,14,16,17,18", "logit gaps d, comma separated")
_RARE = flags.DEFINE_integer("rare", 4096, "number K of rare categories")
_DRAWS = flags.DEFINE_float("draws_per_gap", 1e9, "uniform draws per gap and precision")
_CHUNK = flags.DEFINE_integer("chunk", 8192, "rows per jitted call")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp

    from difflab.benchmarks.common import write_result
    from difflab.models.categorical import categorical

    k_rare, chunk = _RARE.value, _CHUNK.value
    calls = max(1, round(_DRAWS.value / (chunk * (k_rare + 1))))
    rows = []
    for d in map(float, _GAPS.value.split(",")):
        logits = jnp.concatenate([jnp.zeros(1), jnp.full(k_rare, -d)])
        block = jnp.broadcast_to(logits, (chunk, k_rare + 1))
        n = calls * chunk
        p_rare = k_rare * math.exp(-d) / (1 + k_rare * math.exp(-d))
        row = {"gap": d, "rare_categories": k_rare, "rows": n, "expected_rare_wins": n * p_rare}
        for float64 in (True, False):
            count = jax.jit(lambda key, f=float64, b=block: jnp.sum(categorical(key, b, f) > 0))
            t0 = time.perf_counter()
            hits = sum(int(count(jax.random.key(i))) for i in range(calls))
            name = "float64" if float64 else "float32"
            row[f"{name}_rare_wins"] = hits
            row[f"{name}_ratio_to_expected"] = round(hits / (n * p_rare), 4)
            row[f"{name}_wall_s"] = round(time.perf_counter() - t0, 1)
        row["expected_rare_wins"] = round(row["expected_rare_wins"], 1)
        row["poisson_se_of_ratio"] = round(1 / math.sqrt(n * p_rare), 4)
        rows.append(row)
        print(row)
    write_result(
        f"categorical_precision_{jax.devices()[0].platform}",
        {"settings": rows, "note": "ratio 1 = drawn at the true frequency"},
        _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
    )


if __name__ == "__main__":
    app.run(main)

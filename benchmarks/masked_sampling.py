"""Wall time of first-hitting vs ancestral sampling of masked diffusion at long sequence length.

python benchmarks/masked_sampling.py [--length 1024] [--steps 1024] [--batch 1,8]

A sequence transformer (width 128, depth 3, time-agnostic, vocabulary 128) with random weights
samples --batch sequences of --length tokens: the first-hitting sampler (exactly L network calls)
and the ancestral sampler on a --steps grid (a network call only on steps after some token of the
batch changed). Compile time is excluded; the best of --repeats runs is kept. Writes
masked_sampling_<platform>.json with the wall time and the number of network calls of each.
"""

import os
import time

from absl import app, flags  # noqa: E402

_LENGTH = flags.DEFINE_integer("length", 1024, "sequence length L")
_STEPS = flags.DEFINE_integer("steps", 1024, "ancestral grid steps T")
_BATCH = flags.DEFINE_string("batch", "1,8", "batch sizes, comma separated")
_VOCAB = flags.DEFINE_integer("vocab", 128, "vocabulary size")
_REPEATS = flags.DEFINE_integer("repeats", 2, "timed runs per setting (best kept)")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")


def main(argv):
    del argv
    import jax
    import ml_collections

    from difflab import models, samplers
    from difflab.benchmarks.common import write_result
    from difflab.models import masked, nets

    mc = ml_collections.ConfigDict(
        {
            "net": "transformer",
            "dtype": "float32",
            "width": 128,
            "depth": 3,
            "heads": 4,
            "mlp_ratio": 4.0,
            "time_conditioning": False,
        }
    )
    length, vocab = _LENGTH.value, _VOCAB.value
    graphdef, params = models.split(nets.build(mc, (length,), 0, 0, vocab_size=vocab))
    # random (not zero-initialised) output layers, so the logits are not uniform
    params = jax.tree.map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape), params
    )
    denoiser = models.denoiser(graphdef, params)
    process = masked.MaskedDiffusion(vocab, masked.linear(1e-4), time_agnostic=True)
    rows = []
    for batch in map(int, _BATCH.value.split(",")):
        for name in ("first_hitting", "ancestral"):
            sampler = samplers.get("masked", name)
            grid = samplers.grid(name, process, _STEPS.value)
            run = jax.jit(
                lambda k, s=sampler, g=grid, b=batch: s(k, denoiser, process, (b, length), None, g)
            )
            t0 = time.perf_counter()
            jax.block_until_ready(run(jax.random.key(0)))
            compile_s = time.perf_counter() - t0
            times, nfe = [], None
            for r in range(_REPEATS.value):
                t0 = time.perf_counter()
                x, info = jax.block_until_ready(run(jax.random.key(r + 1)))
                times.append(time.perf_counter() - t0)
                nfe = int(info["nfe"])
                assert not (x == process.mask_id).any()
            rows.append(
                {
                    "sampler": name,
                    "batch": batch,
                    "length": length,
                    "grid_steps": _STEPS.value if name == "ancestral" else None,
                    "nfe": nfe,
                    "wall_s": round(min(times), 3),
                    "ms_per_nfe": round(1000 * min(times) / nfe, 2),
                    "first_call_s_incl_compile": round(compile_s, 2),
                }
            )
            print(rows[-1])
    write_result(
        f"masked_sampling_{jax.devices()[0].platform}",
        {"network": mc.to_dict(), "vocab": vocab, "settings": rows},
        _OUT.value or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
    )


if __name__ == "__main__":
    app.run(main)

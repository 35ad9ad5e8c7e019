"""Sampling throughput (samples/s) of the digits DiT: the 1-step shortcut map and 50 Euler steps,
batch size swept.

python benchmarks/sampling_throughput.py [--config shortcut_digits] [--batches 64,256,1024,4096]

The config's network with its initial parameters (speed does not depend on training) is sampled
through `sampling.draw.draw_chunks`, the path of `sample.py` and `Run.sample`: one compiled
call per batch, split over every device, each sample drawn alone under `vmap` with the key
fold_in(key(seed), index). For each (sampler, batch size): the compile time of the first call and
the best of `repeats` timed calls after it, as samples/s. Beside each, the same sampler called
once on the whole batch with one key (no per-sample keys, nothing split), to show what the
per-sample randomness costs. Writes sampling_throughput_<platform>.json.
"""

from absl import app, flags

_CONFIG = flags.DEFINE_string("config", "shortcut_digits", "config whose network is sampled")
_BATCHES = flags.DEFINE_list("batches", ["64", "256", "1024", "4096"], "batch sizes to sweep")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per setting (the best is kept)")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")
SETTINGS = [("few_step", 1), ("euler", 50)]


def timed(comp, sampler, steps, batch, repeats) -> dict:
    """The draw_chunks path against one batched call of the plain sampler."""
    import jax
    import numpy as np

    from difflab import samplers
    from difflab.benchmarks.common import first_and_best_seconds
    from difflab.sampling.draw import draw_chunks

    labels = np.arange(batch) % max(comp.num_classes, 1) if comp.num_classes else None

    def chunked():
        for chunk in draw_chunks(comp, comp.init_params, sampler, steps, batch, 0, labels):
            np.asarray(chunk[2])

    plain = samplers.get(comp.config.process.family, sampler)
    grid = samplers.grid(sampler, comp.process, steps)
    shape = (batch, *comp.dataset.shape)
    cond = None if labels is None else jax.numpy.asarray(labels)
    batched = jax.jit(lambda key, p: plain(key, comp.denoiser(p), comp.process, shape, cond, grid))

    def one_call():
        np.asarray(batched(jax.random.key(0), comp.init_params)[0])

    compile_s, best = first_and_best_seconds(chunked, repeats)
    batched_compile_s, batched_best = first_and_best_seconds(one_call, repeats)
    return {
        "sampler": sampler,
        "steps": steps,
        "batch_size": batch,
        "samples_per_s": round(batch / best, 1),
        "seconds_per_batch": round(best, 4),
        "first_call_s_incl_compile": round(compile_s, 2),
        "one_key_batched_samples_per_s": round(batch / batched_best, 1),
        "per_sample_keys_cost": round(best / batched_best, 3),
    }


def main(argv):
    del argv
    import importlib

    import jax

    from difflab.benchmarks.common import write_result
    from difflab.training.components import build

    config = importlib.import_module(f"difflab.configs.{_CONFIG.value}").get_config()
    comp = build(config)
    rows = []
    for sampler, steps in SETTINGS:
        for batch in map(int, _BATCHES.value):
            rows.append(timed(comp, sampler, steps, batch, _REPEATS.value))
            print(rows[-1], flush=True)
    result = {
        "config": config.name,
        "network": f"{config.model.net} width {config.model.width} depth {config.model.depth}",
        "data_shape": list(comp.dataset.shape),
        "devices": jax.device_count(),
        "rows": rows,
    }
    write_result(f"sampling_throughput_{jax.devices()[0].platform}", result, _OUT.value)


if __name__ == "__main__":
    app.run(main)

"""Training throughput of a config: compile time, steps/s and examples/s of the jitted step.

python benchmarks/train_throughput.py --config configs/flow_digits.py [--config.x=y ...]
    [--calls 20] [--out benchmarks/results]

Runs the exact step train.py runs (same data, mesh, optimizer, steps_per_call) without
checkpoints or evaluation, and writes train_throughput_<config>_<platform>.json.
"""

import time

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config", lock_config=True)
_CALLS = flags.DEFINE_integer("calls", 20, "timed calls of the jitted step (after compiling)")
_OUT = flags.DEFINE_string("out", None, "result directory (default benchmarks/results)")
_TAG = flags.DEFINE_string("tag", "", "suffix for the result file name")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import jax

    from difflab.benchmarks.common import write_result
    from difflab.training import config_checks
    from difflab.training import mesh as mesh_lib
    from difflab.training.components import build
    from difflab.training.loop import local_batches
    from difflab.training.state import init_state, make_optimizer
    from difflab.training.step import compile_step, train_step

    config = _CONFIG.value
    tc = config.train
    mesh = mesh_lib.make_mesh()
    config_checks.check(config, mesh.size)
    comp = build(config)
    optimizer = make_optimizer(config.optim, tc.steps)
    state = mesh_lib.replicate(init_state(comp.init_params, optimizer), mesh)
    step_fn = compile_step(
        train_step(comp.process, comp.graphdef, optimizer, tc.ema_decay, jax.random.key(0)),
        mesh,
        tc.steps_per_call,
    )
    lead = 1 if tc.steps_per_call > 1 else 0
    batches = [
        mesh_lib.global_batch(
            local_batches(comp, i * tc.steps_per_call, tc.steps_per_call), mesh, lead
        )
        for i in range(min(_CALLS.value, 4))
    ]
    t0 = time.perf_counter()
    state, m = step_fn(state, batches[0])
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(_CALLS.value):
        state, m = step_fn(state, batches[i % len(batches)])
    jax.block_until_ready((state, m))
    elapsed = time.perf_counter() - t0
    steps = _CALLS.value * tc.steps_per_call
    params = sum(x.size for x in jax.tree.leaves(comp.init_params))
    result = {
        "config": config.name,
        "net": config.model.net,
        "dtype": config.model.dtype,
        "parameters": int(params),
        "global_batch": tc.batch_size,
        "steps_per_call": tc.steps_per_call,
        "compile_plus_first_call_s": round(compile_s, 3),
        "timed_steps": steps,
        "steps_per_s": round(steps / elapsed, 3),
        "examples_per_s": round(steps * tc.batch_size / elapsed, 1),
    }
    print(result)
    platform = jax.devices()[0].platform
    write_result(f"train_throughput_{config.name}_{platform}{_TAG.value}", result, _OUT.value)


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)

"""The training loop: build, create or restore the state, run the jitted step, log, save, eval."""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from tqdm import tqdm

from training import checkpoint, config_checks, plots
from training import mesh as mesh_lib
from training.logging import MetricWriter
from training.run import build, evaluate
from training.state import init_state, learning_rate, make_optimizer
from training.step import compile_step, train_step


def local_batches(comp, step: int, steps_per_call: int) -> dict:
    """This process's rows of the global batches of steps [step, step + steps_per_call)."""
    g = comp.config.train.batch_size
    local = g // jax.process_count()
    start = jax.process_index() * local
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        parts = [comp.dataset.batch(step + i, start, local, g) for i in range(steps_per_call)]
    keys = ["x", "label"] if comp.num_classes else ["x"]
    if steps_per_call == 1:
        return {k: parts[0][k] for k in keys}
    return {k: np.stack([p[k] for p in parts]) for k in keys}


def restore_or_init(mgr, state, mesh):
    """The latest checkpoint's state if there is one, else `state` replicated over the mesh."""
    latest = mgr.latest_step()
    if latest is None:
        return mesh_lib.replicate(state, mesh), 0
    restored = checkpoint.restore_state(mgr, latest, checkpoint.abstract_like(state, mesh))
    return restored, latest


def train(config, workdir: str, stop_after: int | None = None) -> dict:
    """Train `config` in `workdir` (resuming if it holds checkpoints); returns the last eval.

    stop_after: stop (with a checkpoint) once this step is reached, as if interrupted there.
    """
    mesh = mesh_lib.make_mesh()
    config_checks.check(config, mesh.size)
    tc = config.train
    lead = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    if lead:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json(indent=2))

    comp = build(config)
    optimizer = make_optimizer(config.optim, tc.steps)
    mgr = checkpoint.manager(workdir, tc.keep_checkpoints)
    state, step = restore_or_init(mgr, init_state(comp.init_params, optimizer), mesh)
    if step and lead:
        print(f"resuming {workdir} from step {step}")
    step_fn = compile_step(
        train_step(
            comp.process, comp.graphdef, optimizer, tc.ema_decay, jax.random.key(config.seed)
        ),
        mesh,
        tc.steps_per_call,
    )
    lr = learning_rate(config.optim, tc.steps)
    writer = MetricWriter(workdir, step, enabled=lead)
    lead_axes = 1 if tc.steps_per_call > 1 else 0
    bar = tqdm(
        total=tc.steps,
        initial=step,
        disable=not lead,
        desc=config.name,
        unit="step",
        dynamic_ncols=True,
    )
    last = {}
    t_log, step_log = time.perf_counter(), step
    end = tc.steps if stop_after is None else min(tc.steps, stop_after)
    while step < end:
        batch = mesh_lib.global_batch(local_batches(comp, step, tc.steps_per_call), mesh, lead_axes)
        state, step_metrics = step_fn(state, batch)
        step += tc.steps_per_call
        bar.update(tc.steps_per_call)
        if step % tc.log_every == 0:
            host = mesh_lib.to_host(step_metrics)
            now = time.perf_counter()
            rate = (step - step_log) / (now - t_log)
            t_log, step_log = now, step
            writer.write(step, {**host, "lr": lr(step - 1), "steps_per_sec": rate})
            bar.set_postfix(loss=f"{float(host['loss']):.4f}", steps_per_s=f"{rate:.1f}")
        if step % tc.save_every == 0 or step in (tc.steps, end):
            checkpoint.save(mgr, step, state, config)
        if step % tc.eval_every == 0 or step == tc.steps:
            if lead:
                last = evaluate(comp, mesh_lib.to_host(state["ema_params"]), step, workdir)
                writer.write(step, last)
                plots.loss_curve(writer.records(), os.path.join(workdir, "loss.png"))
            t_log = time.perf_counter()
    bar.close()
    mgr.wait_until_finished()
    mgr.close()
    writer.close()
    if lead and last:
        print(summary(config.name, step, last))
    return last


def summary(name: str, step: int, m: dict) -> str:
    """One line: each quality metric next to its data-vs-data value and their ratio."""
    parts = []
    for key in ("sliced_wasserstein", "energy_distance", "frechet_distance"):
        if key in m:
            ref = m[f"{key}_data"]
            parts.append(f"{key} {m[key]:.4f} (data vs data {ref:.4f}, ratio {m[key] / ref:.2f})")
    return f"{name} step {step}: " + "; ".join(parts)

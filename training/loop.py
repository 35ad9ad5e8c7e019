"""The training loop: build, create or restore the state, run the jitted step, log, save, eval."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import warnings

import jax
import numpy as np
from tqdm import tqdm

from difflab import data
from difflab.training import checkpoint, config_checks, lock, plots
from difflab.training import mesh as mesh_lib
from difflab.training.components import build
from difflab.training.logging import MetricWriter
from difflab.training.state import init_state, learning_rate, make_optimizer
from difflab.training.step import compile_step, train_step


def local_batches(comp, step: int, steps_per_call: int) -> dict:
    """This process's rows of the global batches of steps [step, step + steps_per_call)."""
    g = comp.config.train.batch_size
    local = g // jax.process_count()
    start = jax.process_index() * local
    with data.on_host():
        parts = [comp.dataset.batch(step + i, start, local, g) for i in range(steps_per_call)]
    keys = ["x", "label"] if comp.num_classes else ["x"]
    keys += ["source"] if "source" in parts[0] else []
    if steps_per_call == 1:
        return {k: parts[0][k] for k in keys}
    return {k: np.stack([p[k] for p in parts]) for k in keys}


def restore_or_init(mgr, state, mesh, config, workdir):
    """The latest checkpoint's state if there is one (of the same config), else `state`
    replicated over the mesh."""
    steps = sorted(mgr.all_steps(), reverse=True)
    if not steps:
        return mesh_lib.replicate(state, mesh), 0
    target = checkpoint.abstract_like(state, mesh)
    for step in steps:
        try:
            saved = json.loads(checkpoint.restore_config(mgr, step).to_json())
            checkpoint.check_same_run(saved, config, workdir)
            return checkpoint.restore_state(mgr, step, target), step
        except ValueError as e:
            if "different config" in str(e):
                raise
            err = e
        except Exception as e:  # noqa: BLE001 -- any unreadable checkpoint: try the previous one
            err = e
        warnings.warn(
            f"checkpoint at step {step} in {workdir!r} is unreadable "
            f"({type(err).__name__}: {str(err)[:200]}); trying the previous one",
            stacklevel=2,
        )
    raise RuntimeError(
        f"no readable checkpoint in {checkpoint.checkpoint_dir(workdir)!r} "
        f"(tried steps {steps}); move it away to start over"
    )


class Preemption:
    """Turns SIGTERM (a preemption notice) and SIGINT (Ctrl-C) into a flag the loop checks after
    each step: it saves a checkpoint and stops. A second SIGINT aborts at once (KeyboardInterrupt,
    reported in one line by the CLI) without saving."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = None  # the name of the signal received
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        del frame
        if signum == signal.SIGINT and self.requested == "SIGINT":
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        if signum == signal.SIGINT:
            print(
                "SIGINT received: saving a checkpoint after this step (Ctrl-C again to abort "
                "without saving)",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(self, *exc):
        for s, previous in self._previous.items():
            signal.signal(s, previous)


def check_finite(state, mode: str) -> int:
    """The number of skipped non-finite steps; in mode 'stop' an error naming the first one."""
    bad = int(mesh_lib.to_host(state["nonfinite_steps"]))
    if bad and mode == "stop":
        step = int(mesh_lib.to_host(state["first_nonfinite_step"]))
        what = "loss" if bool(mesh_lib.to_host(state["first_nonfinite_loss"])) else "gradient norm"
        raise FloatingPointError(
            f"non-finite {what} at step {step} (the update was not applied; the last "
            f"checkpoint is finite). Lower config.optim.lr or set "
            f"--config.train.nonfinite=skip to skip such steps"
        )
    return bad


def train(config, workdir: str, stop_after: int | None = None, evaluate=None) -> dict:
    """Train `config` in `workdir`, resuming from its latest checkpoint if it has one.

    Args:
        config: an ml_collections config (`configs/*.py` get_config()).
        workdir: the run's folder (checkpoints, metrics.jsonl, config.json, plots), locked
            against a second trainer while this one runs.
        stop_after: stop with a checkpoint once this step is reached, as if interrupted there.
        evaluate: (components, EMA params, step, workdir) -> metrics, run every
            config.train.eval_every steps and at the end (train.py passes
            `difflab.sampling.evaluate.evaluate`: samples, metrics, figures); None: no
            evaluation (the loss curve is still drawn then). Training never imports the
            sampling side itself.

    Returns:
        The last evaluation's metrics ({} when the run made none).

    Raises:
        ValueError naming a bad config value or a workdir of another config; RuntimeError when
        another process trains in the workdir; FloatingPointError at a non-finite step
        (config.train.nonfinite = "stop").
    """
    mesh = mesh_lib.make_mesh()
    config_checks.check(config, mesh.size)
    lead = jax.process_index() == 0
    comp = build(config)  # data checks run before the workdir exists
    os.makedirs(workdir, exist_ok=True)
    with lock.held(workdir) if lead else contextlib.nullcontext():
        return train_in(config, workdir, comp, mesh, stop_after, evaluate)


def train_in(config, workdir: str, comp, mesh, stop_after: int | None, evaluate=None) -> dict:
    """The body of `train`, run while this process holds the workdir."""
    tc = config.train
    lead = jax.process_index() == 0
    optimizer = make_optimizer(config.optim, tc.steps)
    mgr = checkpoint.manager(workdir, tc.keep_checkpoints)
    state, step = restore_or_init(
        mgr, init_state(comp.init_params, optimizer), mesh, config, workdir
    )
    if lead:  # after the resume check, so that a refused config never overwrites it
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json(indent=2))
    if step and lead:
        print(f"resuming {workdir} from step {step}")
    step_fn = compile_step(
        train_step(
            comp.process, comp.graphdef, optimizer, tc.ema_decay, jax.random.key(config.seed)
        ),
        mesh,
        tc.steps_per_call,
    )
    lr = jax.jit(learning_rate(config.optim, tc.steps))  # logged: one compile, not op by op
    writer = MetricWriter(workdir, step, enabled=lead)
    lead_axes = 1 if tc.steps_per_call > 1 else 0
    # a progress bar on a terminal; a line per log interval in logs (no carriage returns)
    terminal = sys.stderr.isatty()
    bar = tqdm(
        total=tc.steps,
        initial=step,
        disable=not (lead and terminal),
        desc=config.name,
        unit="step",
        dynamic_ncols=True,
    )
    last = {}
    t_log, step_log = time.perf_counter(), step
    end = tc.steps if stop_after is None else min(tc.steps, stop_after)
    with Preemption() as preemption:
        while step < end:
            batch = mesh_lib.global_batch(
                local_batches(comp, step, tc.steps_per_call), mesh, lead_axes
            )
            state, step_metrics = step_fn(state, batch)
            step += tc.steps_per_call
            bar.update(tc.steps_per_call)
            if step % tc.log_every == 0:
                host = mesh_lib.to_host(step_metrics)
                now = time.perf_counter()
                rate = (step - step_log) / (now - t_log)
                t_log, step_log = now, step
                skipped = check_finite(state, tc.nonfinite)
                writer.write(
                    step,
                    {**host, "lr": lr(step - 1), "steps_per_sec": rate, "skipped_total": skipped},
                )
                bar.set_postfix(loss=f"{float(host['loss']):.4f}", steps_per_s=f"{rate:.1f}")
                if lead and not terminal:
                    print(
                        f"{config.name} step {step}/{tc.steps}: loss {float(host['loss']):.4f}, "
                        f"{rate:.1f} steps/s",
                        flush=True,
                    )
            if preemption.requested:
                checkpoint.save(mgr, step, state, config)
                mgr.wait_until_finished()
                if lead:
                    print(
                        f"{preemption.requested} received: saved a checkpoint at step {step} "
                        f"in {workdir}; "
                        f"rerun the same command to continue"
                    )
                break
            if step % tc.save_every == 0 or step in (tc.steps, end):
                # non-finite updates never reach the state, so checking here (not after every
                # call, which would sync the host each step) still names the first bad step
                check_finite(state, tc.nonfinite)
                checkpoint.save(mgr, step, state, config)
            if evaluates(tc, step):
                if lead and evaluate is not None:
                    bar.write(f"evaluating step {step}: {evaluation_plan(config)}")
                    last = evaluate(comp, mesh_lib.to_host(state["ema_params"]), step, workdir)
                    writer.write(step, last)
                if lead:
                    plots.loss_curve(writer.records(), os.path.join(workdir, "loss.png"))
                t_log = time.perf_counter()
    bar.close()
    mgr.wait_until_finished()
    mgr.close()
    writer.close()
    if lead and last:
        print(summary(config.name, step, last))
    return last


def evaluates(tc, step: int) -> bool:
    """Every eval_every steps and at the last step; never with eval_every = 0."""
    return tc.eval_every > 0 and (step % tc.eval_every == 0 or step == tc.steps)


def evaluation_plan(config) -> str:
    """What an evaluation does, in words."""
    ec = config.eval
    if config.process.family in ("classifier", "value"):
        what = "accuracy" if config.process.family == "classifier" else "error"
        return f"{what} on {ec.num_samples} held-out examples at several noise levels"
    return (
        f"{ec.num_samples} samples, {ec.sampler} with {ec.steps} steps, metrics against fresh data"
    )


def summary(name: str, step: int, m: dict) -> str:
    """One line: each quality metric next to its data-vs-data value and their ratio."""
    parts = []
    keys = (
        "sliced_wasserstein",
        "energy_distance",
        "frechet_distance",
        "ngram_bits_per_token",
        "mmd",
        "pca_wasserstein",
        "mean_error",
        "var_error",
        "zero_fraction_error",
    )
    if "nll_per_token" in m:  # the Markov source: the data's exact entropy is the reference
        ref = m["entropy_per_token"]
        parts.append(
            f"nll_per_token {m['nll_per_token']:.4f} (entropy {ref:.4f}, ratio "
            f"{m['nll_per_token'] / ref:.3f})"
        )
    parts += [f"{k} {v:.3f}" for k, v in m.items() if k.startswith(("accuracy_t", "rmse_t"))]
    parts += [f"reward_std {m['reward_std']:.3f}"] if "reward_std" in m else []
    for key in keys:
        if key in m:
            ref = m[f"{key}_data"]
            ratio = f", ratio {m[key] / ref:.2f}" if ref > 0 else ""
            parts.append(f"{key} {m[key]:.4g} (data vs data {ref:.4g}{ratio})")
    return f"{name} step {step}: " + "; ".join(parts)

"""Small configs and runners shared by the training tests."""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp

from difflab.configs import flow_gmm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(steps=40, steps_per_call=1, batch_size=64, evaluate=True):
    """flow_gmm with a width-32 network; evaluate=False: no final evaluation (eval_every = 0),
    for the tests of training mechanics that never read it."""
    c = flow_gmm.get_config()
    c.model.width = 32
    c.model.depth = 1
    c.train.steps = steps
    c.train.batch_size = batch_size
    c.train.steps_per_call = steps_per_call
    c.train.log_every = steps_per_call
    c.train.eval_every = steps if evaluate else 0
    c.train.save_every = steps
    c.optim.warmup_steps = 5
    c.eval.num_samples = 256
    c.eval.steps = 8
    return c


# XLA:CPU hands reductions and elementwise ops to YNNPACK fusions, which are slow on the exact
# mixture oracles' [N, K] arrays (a component axis of K = 3): a 200-step Euler draw of 20,000
# points takes 0.8-1.2 s with them and 0.19 s without, and compiles in 0.1 s instead of 0.5 s
# (benchmarks/xla_cpu_reduce_fusion.py measures the posterior mean alone). Turning them off for
# the whole suite made the other tests slower, so only the oracle-driven test programs go without.
NO_YNN_FUSIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def oracle_compiler_options() -> dict:
    """NO_YNN_FUSIONS where this backend knows the option (XLA:CPU of jaxlib 0.10), else {}."""
    try:
        jax.jit(lambda x: x.sum(), compiler_options=NO_YNN_FUSIONS)(jnp.ones(3))
    except jax.errors.JaxRuntimeError:  # "No such compile option": another backend or version
        return {}
    return NO_YNN_FUSIONS


def jit_for_oracles(fn):
    """jax.jit for a program driven by the exact mixture oracles (metrics/oracles.py), compiled
    without YNNPACK fusions (oracle_compiler_options)."""
    return jax.jit(fn, compiler_options=oracle_compiler_options())


def overrides(
    config,
    keys=(
        "model.width",
        "model.depth",
        "train.steps",
        "train.batch_size",
        "train.steps_per_call",
        "train.log_every",
        "train.eval_every",
        "train.save_every",
        "optim.warmup_steps",
        "eval.num_samples",
        "eval.steps",
    ),
):
    out = []
    for k in keys:
        v = config
        for part in k.split("."):
            v = v[part]
        out.append(f"--config.{k}={v}")
    return out


def run_train(args, env_extra=None, timeout=600):
    return run_script("train.py", args, env_extra, timeout)


def run_sample(args, timeout=300):
    return run_script("sample.py", args, timeout=timeout)


def subprocess_env(env_extra=None) -> dict:
    """os.environ (with the suite's compilation settings, tests/conftest.py) plus env_extra,
    unbuffered."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}


def cpu_devices_env(n: int) -> dict:
    """Environment for a subprocess on n virtual CPU devices; keeps the suite's XLA flags."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}"
    return {"XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}


def run_script(script, args, env_extra=None, timeout=600):
    """`python <script> <args>` from the repository root, output captured as text."""
    env = subprocess_env(env_extra)
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_sample(args):
    """`python sample.py <args>` started in its own process group (to be killed), output
    discarded."""
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "sample.py"), *args],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

"""Train a difflab model: `python train.py [--config configs/X.py] [--config.field=value ...]`.

With no arguments it trains the default config (flow matching on the checkerboard) in
runs/flow_checkerboard. A run restarted with the same workdir resumes from its latest checkpoint.
Multi-process: pass --num_processes/--process_id/--coordinator_address (or --distributed to let
jax.distributed.initialize() detect a TPU pod / SLURM cluster). Bad input ends with one line,
`error: <message>`; DIFFLAB_TRACEBACK=1 shows the traceback.
"""

import os

from absl import app, flags, logging

try:
    from difflab.training import cli
except ModuleNotFoundError as e:  # the clone's difflab/ folder alone: nothing installed
    raise SystemExit(f"error: {e}; install the project first: pip install -e .") from None

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(ROOT, "configs", "flow_checkerboard.py")
_CONFIG = cli.define_config(DEFAULT_CONFIG)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (default: runs/<config.name>)")
_DISTRIBUTED = cli.define_distributed_flags()
_STOP_AFTER = flags.DEFINE_integer(
    "stop_after", None, "stop with a checkpoint once this step is reached (as if preempted)"
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    cli.use_compilation_cache()
    with cli.expected_errors():
        run(_CONFIG.value)


def run(config):
    cli.initialize_distributed(_DISTRIBUTED)
    from difflab.sampling.evaluate import evaluate
    from difflab.training.loop import train

    workdir = _WORKDIR.value or config.workdir or os.path.join("runs", config.name)
    train(config, workdir, stop_after=_STOP_AFTER.value, evaluate=evaluate)


if __name__ == "__main__":
    cli.run_app(main, DEFAULT_CONFIG)

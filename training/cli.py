"""What `train.py` and `sample.py` share: expected errors as one line, `error: <message>`, with
a non-zero exit; DIFFLAB_TRACEBACK=1 shows the traceback instead."""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import os
import sys

TRACEBACK_ENV = "DIFFLAB_TRACEBACK"
# Errors the code raises on purpose for bad input (configs, data, workdirs, samplers, numerics);
# anything else is a bug and keeps its traceback.
EXPECTED = (ValueError, KeyError, FileNotFoundError, FloatingPointError, RuntimeError)


CACHE_ENV = "DIFFLAB_COMPILATION_CACHE"


def compilation_cache_dir() -> str:
    """Where the CLIs keep compiled XLA programs: $DIFFLAB_COMPILATION_CACHE, else JAX's own
    $JAX_COMPILATION_CACHE_DIR if set, else ~/.cache/difflab/jax ("" or "off": no cache)."""
    default = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "difflab", "jax"
    )
    return os.environ.get(CACHE_ENV, default)


def use_compilation_cache() -> None:
    """JAX's persistent compilation cache for train.py and sample.py: a second run with the same
    settings loads its compiled programs instead of compiling them again (every program, however
    quick to compile: the CLIs' samplers and steps compile in 0.1-5 s each on a CPU)."""
    import jax

    folder = compilation_cache_dir()
    if folder in ("", "off"):
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def define_distributed_flags() -> dict:
    """The flags of a multi-process run (train.py and sample.py): --distributed lets
    jax.distributed.initialize() detect a TPU pod / SLURM cluster; the others name the processes."""
    from absl import flags

    return {
        "distributed": flags.DEFINE_bool("distributed", False, "jax.distributed.initialize()"),
        "coordinator_address": flags.DEFINE_string(
            "coordinator_address", None, "host:port of process 0"
        ),
        "num_processes": flags.DEFINE_integer("num_processes", None, "number of processes"),
        "process_id": flags.DEFINE_integer("process_id", None, "this process's index"),
    }


def initialize_distributed(holders: dict) -> None:
    """Join the processes the flags of `define_distributed_flags` name (no flags: one process)."""
    import jax

    value = {k: h.value for k, h in holders.items()}
    if value["distributed"] or value["num_processes"]:
        # CPU collectives between processes (tests, CPU clusters); GPU/TPU use their own.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            value["coordinator_address"], value["num_processes"], value["process_id"]
        )


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (KeyError's quotes removed)."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(msg).split()) or type(exc).__name__


@contextlib.contextmanager
def expected_errors():
    """Print an expected error as `error: <message>` on stderr and exit 1; an interrupt (Ctrl-C
    where nothing saves, or a second one while training saves) as one line, exit 130."""
    try:
        yield
    except EXPECTED as e:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print("error: interrupted (nothing saved since the last checkpoint)", file=sys.stderr)
        sys.exit(130)


def load_config_file(path: str):
    """get_config() of a config file."""
    spec = importlib.util.spec_from_file_location("difflab_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def config_path(argv, default_path: str) -> str:
    """The config file given on the command line (`--config=X` or `--config X`), else the
    default."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return default_path


def override_error(argv, default_path: str) -> str:
    """Which --config.a.b=v override names no field, with the closest field names."""
    path = config_path(argv, default_path)
    if not os.path.exists(path):
        return f"config file {path!r} does not exist"
    config = load_config_file(path)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        parts = arg[len("--config.") :].split("=", 1)[0].split(".")
        node = config
        for i, part in enumerate(parts):
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if part not in keys:
                where = ".".join(["config", *parts[:i]])
                close = difflib.get_close_matches(part, keys, n=3)
                hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                return f"unknown config field in {arg}: {where} has no field {part!r}{hint}"
            node = node[part]
    return ""


CONFIG_ERRORS = (OSError, AttributeError, KeyError, ValueError, TypeError)


def config_error_exit(e: BaseException, default_path: str):
    """End the program with one line naming the config file or override that failed."""
    if os.environ.get(TRACEBACK_ENV):
        raise e
    message = override_error(sys.argv, default_path)
    if not message:
        message = f"cannot use config file {config_path(sys.argv, default_path)!r}: {one_line(e)}"
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run_app(main, default_path: str) -> None:
    """absl's app.run(main). config_flags reports a config file that cannot be loaded, or an
    override that names no field, as a traceback from inside the flag parser (or, for the file,
    at its first use): both end the program with one line naming what was given. Errors once
    main has started keep their own handling."""
    from absl import app, flags

    started = []

    def checked(argv):
        try:
            flags.FLAGS["config"].value.keys()  # a file that failed to load raises on use
        except CONFIG_ERRORS as e:
            config_error_exit(e, default_path)
        started.append(True)
        return main(argv)

    try:
        app.run(checked)
    except CONFIG_ERRORS as e:
        if started:
            raise
        config_error_exit(e, default_path)


def define_config(default_path: str):
    """config_flags.DEFINE_config_file, which parses the --config overrides as it is defined: a
    misspelt field ends the program with one line naming it."""
    from ml_collections import config_flags

    try:
        return config_flags.DEFINE_config_file(
            "config", default_path, "experiment config file", lock_config=True
        )
    except (KeyError, AttributeError, ValueError, TypeError) as e:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {override_error(sys.argv, default_path) or one_line(e)}", file=sys.stderr)
        sys.exit(2)

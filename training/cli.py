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


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (KeyError's quotes removed)."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(msg).split()) or type(exc).__name__


@contextlib.contextmanager
def expected_errors():
    """Print an expected error as `error: <message>` on stderr and exit 1."""
    try:
        yield
    except EXPECTED as e:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(1)


def load_config_file(path: str):
    """get_config() of a config file."""
    spec = importlib.util.spec_from_file_location("difflab_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def override_error(argv, default_path: str) -> str:
    """Which --config.a.b=v override names no field, with the closest field names."""
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), default_path)
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


def run_app(main) -> None:
    """absl's app.run(main), with a config file that cannot be loaded reported in one line."""
    from absl import app

    try:
        app.run(main)
    except OSError as e:
        if os.environ.get(TRACEBACK_ENV) or "config" not in str(e).lower():
            raise
        path = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), "")
        print(f"error: cannot load config file {path!r}: {one_line(e)}", file=sys.stderr)
        sys.exit(2)


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

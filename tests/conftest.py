import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# One persistent XLA compilation cache for the whole suite, inherited by the train.py / sample.py
# subprocesses: the same step functions, samplers and data generators are compiled once per run
# instead of once per test and process. It lives in the ignored .cache/ (empty on a fresh clone).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".cache", "jax-tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def pytest_collection_modifyitems(config, items):
    """Start the long tests first (marked slow: multi-process, kill, multi-device, long
    training), so that on several xdist workers the short ones fill the tail."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config):
    """Train the project's digit classifier (metrics.frechet, cached in .cache/) once, in the
    controlling process, before the workers and subprocesses start: otherwise each process that
    scores digits first trains its own copy (10 s each on 2 cores)."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has done it
        return
    from difflab.metrics import frechet

    frechet.classifier()

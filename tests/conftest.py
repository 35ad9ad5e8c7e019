import contextlib
import gc
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# One persistent XLA compilation cache shared by the train.py / sample.py subprocesses and notebook
# kernels, which compile the same step functions and samplers again in each process (a resumed
# run, a sampler after training). It lives in the ignored .cache/ (empty on a fresh clone). The
# pytest processes themselves keep compiled programs in memory and do not use it: looking up and
# writing every small program cost the in-process tests about 10% of their time (126-136 s
# without against 142-147 s with it, on the Gaussian-sampler, likelihood and masked tests).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".cache", "jax-tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Most tests run tiny models for a few steps, so their time is XLA compilation: without XLA's
# optimisation passes those tests saved ~300 of the suite's ~2000 worker-seconds (measured per
# test against the optimised build). Set here, before jax is imported, so the train.py /
# sample.py subprocesses and notebook kernels inherit it; the tests whose time is running long
# loops are marked `optimized`.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


def xla_accepts(flags: str) -> bool:
    """Whether this jaxlib's XLA knows the flags: it aborts the whole process on an unknown one,
    so ask a throwaway process."""
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    probe = [sys.executable, "-c", "import jax; jax.devices()"]
    return subprocess.run(probe, env=env, capture_output=True, timeout=300).returncode == 0


# Unoptimised, XLA's CPU backend compiles about twice as fast with its older elemental emitters
# than with its fusion emitters (three configs' programs: 21 s of backend compile -> 10 s; the
# whole suite's summed test time 1577 -> 1264 s). It also splits each program's LLVM module into
# parts for parallel code generation, each with its own pass pipeline: on 2 cores one part costs
# 8-9% less CPU (four configs' train-and-evaluate: 13.4-17.8 s user against 14.8-19.6 s, three
# pairs). The tests marked `optimized` compile at LLVM's -O1 instead of XLA's default -O3 (the
# unoptimised ones are at -O0 whatever this says): their long loops run nearly as fast and
# compile much faster (the 24 of them, serially: 246 s -> 161 s; the short count run 31.8 ->
# 17.5 s, the masked training run 23.6 -> 11.1 s). Added once, in the controlling process (xdist
# workers and every subprocess inherit the variable), each flag only where this XLA still has
# it; DIFFLAB_TEST_XLA_FLAGS records what was added (empty: none), so that the workers do not
# probe again (setting it beforehand, e.g. to "", runs the suite without them).
FAST_COMPILE = (
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_parallel_codegen_split_count=1",
    "--xla_backend_optimization_level=1",
)
if os.environ.get("DIFFLAB_TEST_XLA_FLAGS") is None:
    given = os.environ.get("XLA_FLAGS", "")
    os.environ["DIFFLAB_TEST_XLA_FLAGS"] = " ".join(f for f in FAST_COMPILE if xla_accepts(f))
    os.environ["XLA_FLAGS"] = f"{given} {os.environ['DIFFLAB_TEST_XLA_FLAGS']}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_compilation_cache", False)  # in this process only (see above)


def pytest_collection_modifyitems(config, items):
    """Start the long tests first (marked slow: multi-process, kill, multi-device, long
    training), so that on several xdist workers the short ones fill the tail."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_collection_finish(session):
    """Once the test modules (and everything they import) are loaded, keep CPython's cyclic
    collector off those objects (gc.freeze) and let it run less often: JAX's tracing allocates
    many container objects, and in three in-process test files (fkc, smc, guidance) collections
    took 2.9 s of 75 s; frozen, with a first generation of 10,000 objects, 1.2 s."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def one_test_at_a_time(config):
    """Let xdist hand out tests one by one as workers free up (--maxschedchunk=1) unless the
    command line says otherwise. By default it first deals each worker a fixed quarter of its
    share in consecutive chunks: that put all the slow tests, which sort first, on one worker,
    which ran 644 s while the other finished at 568 s and idled."""
    if getattr(config.option, "maxschedchunk", 0) is None:
        config.option.maxschedchunk = 1


@contextlib.contextmanager
def xla_optimised():
    """Compile with XLA's optimisations on inside the block."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(autouse=True)
def xla_optimisation(request):
    """Tests marked `optimized` (long sampling or training loops, which unoptimised code runs
    2-4x slower: more than compiling them optimised costs) compile with XLA's optimisations on
    (LLVM at -O1: FAST_COMPILE)."""
    if request.node.get_closest_marker("optimized") is None:
        yield
        return
    with xla_optimised():
        yield


def pytest_configure(config):
    """In the controlling process only: hand out tests one at a time (one_test_at_a_time), and
    train the project's digit classifier (metrics.frechet, cached in .cache/) before the workers
    and subprocesses start: otherwise each process that scores digits first trains its own copy
    (10 s each on 2 cores)."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has done it
        return
    one_test_at_a_time(config)
    from difflab.metrics import frechet

    with xla_optimised():  # a training loop
        frechet.classifier()

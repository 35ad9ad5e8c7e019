"""What JAX's persistent compilation cache saves the CLIs: `sample.py` on a trained run, called
twice with the same settings, with the cache off and with a fresh cache folder.

python benchmarks/cli_compile_cache.py [--out benchmarks/results]

Trains the default config briefly (300 steps) in a temporary folder, then times each
`sample.py --sampler heun --steps 20 --num_samples 1000` call as a user runs it (the whole
command: start-up, loading, compiling or loading the programs, sampling, metrics, plots), and
writes sample_cli_compile_cache_<platform>.json.
"""

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def timed(args, cache: str) -> float:
    env = {**os.environ, "DIFFLAB_COMPILATION_CACHE": cache}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True)
    return round(time.perf_counter() - start, 2)


def main():
    import jax

    from difflab.benchmarks.common import write_result

    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
    with tempfile.TemporaryDirectory() as tmp:
        work = os.path.join(tmp, "run")
        train = ["train.py", f"--workdir={work}", "--config.train.steps=300"]
        train += ["--config.train.eval_every=0", "--config.train.save_every=300"]
        timed(train, "off")
        sample = ["sample.py", f"--workdir={work}", "--sampler=heun", "--steps=20"]
        sample += ["--num_samples=1000"]
        calls = {}
        for name, cache in (("no_cache", "off"), ("cache", os.path.join(tmp, "cache"))):
            calls[name] = [timed([*sample, f"--out={tmp}/{name}{i}"], cache) for i in range(2)]
    write_result(
        f"sample_cli_compile_cache_{jax.devices()[0].platform}",
        {
            "command": " ".join(["python", *sample[:1], "--workdir=<300-step run>", *sample[2:]]),
            "first_call_s": {k: v[0] for k, v in calls.items()},
            "repeated_call_s": {k: v[1] for k, v in calls.items()},
        },
        out,
    )


if __name__ == "__main__":
    main()

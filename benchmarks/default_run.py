"""The README's main job, timed: `python train.py` (the default config) in a fresh workdir, as a
user runs it, with the machine's load before and after.

python benchmarks/default_run.py [--out benchmarks/results]

Writes default_run_cpu.json (or _<platform>): wall seconds of the whole command (start-up,
compilation, 6000 steps, checkpoints, the final evaluation), the steps, the final sliced
Wasserstein distance next to data vs data, and the 1-minute load average before and after.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
    import jax

    from difflab.benchmarks.common import write_result

    with tempfile.TemporaryDirectory() as tmp:
        workdir = os.path.join(tmp, "flow_checkerboard")
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}"],
            cwd=ROOT,
            check=True,
        )
        wall = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    last = [r for r in records if "sliced_wasserstein" in r][-1]
    write_result(
        f"default_run_{jax.devices()[0].platform}",
        {
            "command": "python train.py",
            "wall_s": round(wall, 1),
            "steps": last["step"],
            "sliced_wasserstein": last["sliced_wasserstein"],
            "sliced_wasserstein_data": last["sliced_wasserstein_data"],
            "load_average_1min_before": round(load_before, 2),
            "load_average_1min_after": round(load_after, 2),
        },
        out,
    )


if __name__ == "__main__":
    main()

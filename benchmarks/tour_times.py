"""The README's Tour, timed: every command of its first bash block under "## Tour", run in order
from the repository root as a user runs it (each with an empty compilation cache, so a first
run's compilation is included), with the machine's load before and after.

python benchmarks/tour_times.py [--rerun] [--out benchmarks/results] [--readme]

Writes tour_times_cpu.json (or _<platform>) after every command: {command: {wall_s, returncode,
load_average_1min_before, load_average_1min_after}}. Commands already timed there are skipped
(a killed run resumes), unless --rerun; a failing command stops it. With --readme it then
writes each command's time into the README's Tour (`command  # 14 min: what it does`);
tests/test_readme.py checks that every Tour command has the time of this file.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tour_commands(readme: str) -> list[str]:
    """The commands of the Tour's first bash block, comments stripped."""
    tour = readme.split("\n## Tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", tour, re.S)[1]
    return [command_of(line) for line in block.splitlines() if command_of(line)]


def command_of(line: str) -> str:
    """A Tour line without its `# time: comment`."""
    return re.split(r"\s+#\s", line, maxsplit=1)[0].strip()


TIME = re.compile(r"^(\d+ (s|min))(: |$)")


def comment_of(line: str) -> tuple[str | None, str]:
    """(the time a Tour line quotes or None, its description)."""
    parts = re.split(r"\s+#\s", line, maxsplit=1)
    comment = parts[1].strip() if len(parts) == 2 else ""
    match = TIME.match(comment)
    if match is None:
        return None, comment
    return match[1], comment[match.end() :]


def shown(wall_s: float) -> str:
    """A wall time as the README quotes it: seconds below 100 s, else whole minutes."""
    return f"{wall_s:.0f} s" if wall_s < 100 else f"{wall_s / 60:.0f} min"


def annotated(readme: str, times: dict) -> str:
    """The README with each Tour command's measured time in its comment."""
    head, tour = readme.split("\n## Tour", 1)
    start, end = tour.index("```bash\n") + 8, tour.index("```", tour.index("```bash\n") + 8)
    lines = []
    for line in tour[start:end].splitlines():
        command, (_, what) = command_of(line), comment_of(line)
        note = shown(times[command]["wall_s"]) + (f": {what}" if what else "")
        lines.append(f"{command:<63} # {note}" if command else line)
    return head + "\n## Tour" + tour[:start] + "\n".join(lines) + "\n" + tour[end:]


def timed(command: str) -> dict:
    """Wall seconds of one command in a shell at the repository root."""
    with tempfile.TemporaryDirectory() as cache:
        # `python` is this interpreter (its virtual environment), as for a user who activated it
        path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
        env = {**os.environ, "DIFFLAB_COMPILATION_CACHE": cache, "PATH": path}
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env)
        wall = time.perf_counter() - start
    return {
        "wall_s": round(wall, 1),
        "returncode": done.returncode,
        "load_average_1min_before": round(load_before, 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }


def main():
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
    import jax

    from difflab.benchmarks.common import write_result

    name = f"tour_times_{jax.devices()[0].platform}"
    path = os.path.join(out or os.path.join(ROOT, "benchmarks", "results"), f"{name}.json")
    saved = {}
    if os.path.exists(path) and "--rerun" not in sys.argv:
        with open(path) as f:
            saved = json.load(f)["commands"]
    with open(os.path.join(ROOT, "README.md")) as f:
        commands = tour_commands(f.read())
    for command in commands:
        if command in saved and saved[command]["returncode"] == 0:
            continue
        print(f"tour: {command}", flush=True)
        saved[command] = timed(command)
        write_result(name, {"commands": saved}, out)
        if saved[command]["returncode"]:  # later commands use what this one makes
            sys.exit(f"tour: {command!r} failed; fix it and run again")
    if "--readme" in sys.argv:
        with open(os.path.join(ROOT, "README.md")) as f:
            text = annotated(f.read(), saved)
        with open(os.path.join(ROOT, "README.md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

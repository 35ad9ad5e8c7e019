"""The README's Python API blocks run as they stand, in order, in one namespace (a user pasting
them into a session), the README stays an entry point (at most 250 lines), and its Tour
quotes measured times."""

import os
import re

from tests.helpers import ROOT

README = os.path.join(ROOT, "README.md")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", open(README, encoding="utf-8").read(), re.S)


def test_the_python_blocks_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert len(blocks) >= 3
    namespace = {}
    for block in blocks:
        exec(compile(block, README, "exec"), namespace)  # noqa: S102 -- the README's own code
    assert namespace["x"].shape == (100, 2)
    assert "(1000, 1) 40" in capsys.readouterr().out


def test_the_readme_is_an_entry_point():
    assert len(open(README, encoding="utf-8").read().splitlines()) <= 250


def test_every_tour_command_shows_its_measured_time():
    """Each Tour command quotes the wall time benchmarks/tour_times.py measured for it (and
    recorded in benchmarks/results/tour_times_cpu.json, with the machine)."""
    import json

    from difflab.benchmarks import tour_times

    readme = open(README, encoding="utf-8").read()
    path = os.path.join(ROOT, "benchmarks", "results", "tour_times_cpu.json")
    with open(path) as f:
        measured = json.load(f)["commands"]
    tour = readme.split("\n## Tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", tour, re.S)[1]
    lines = [line for line in block.splitlines() if tour_times.command_of(line)]
    assert len(lines) >= 10
    for line in lines:
        command = tour_times.command_of(line)
        assert measured[command]["returncode"] == 0, command
        quoted, _ = tour_times.comment_of(line)
        assert quoted == tour_times.shown(measured[command]["wall_s"]), line

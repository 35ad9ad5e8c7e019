"""The README's Python API blocks run as they stand, in order, in one namespace (a user pasting
them into a session), and the README stays an entry point: at most 250 lines."""

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

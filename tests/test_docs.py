"""The repository's own references hold: every `docs/math.md` citation (a section, a lettered
item of a section, an oracle id) names something docs/math.md has, and nothing points to a file
outside the repository."""

import os
import re
import subprocess

import pytest

from tests.helpers import ROOT

MATH = os.path.join(ROOT, "docs", "math.md")
# what follows "docs/math.md" in a citation, up to the end of the parenthesis or clause
CITATION = re.compile(
    r"docs/math\.md((?:[ ,;]*(?:and |oracles? )?(?:§[\w.()\-]+|[A-Z]\d{1,2}\b))*)"
)
SECTION = re.compile(r"§(\d+(?:\.\d+)?)(?:\(?([a-zA-Z])\)?)?(?:-[a-zA-Z])?")
ORACLE = re.compile(r"\b([AGFMCS]\d{1,2})\b")


def tracked_text_files():
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    kept = (".py", ".md", ".ipynb", ".toml", ".cfg", ".txt")
    return [n for n in names.split() if n.endswith(kept) or n.startswith(".ci/")]


def anchors():
    """(sections, {section: lettered items}, oracle ids) of docs/math.md."""
    sections, items, oracles, current = set(), {}, set(), None
    for line in open(MATH, encoding="utf-8"):
        heading = re.match(r"#{2,3} (\d+(?:\.\d+)?)\.? ", line)
        if heading:
            current = heading.group(1)
            sections.add(current)
        item = re.match(r"\*\*\(([a-zA-Z])\)\*\*", line)
        if item and current:
            items.setdefault(current, set()).add(item.group(1).lower())
        oracles.update(re.findall(r"^- \*\*([A-Z]\d{1,2})\*\*", line))
    return sections, items, oracles


def citations():
    """(file, cited text) for every docs/math.md citation outside docs/math.md itself."""
    found = []
    for name in tracked_text_files():
        if name == "docs/math.md":
            continue
        text = open(os.path.join(ROOT, name), encoding="utf-8").read()
        found += [(name, m.group(1)) for m in CITATION.finditer(text) if m.group(1).strip()]
    return found


def test_every_math_citation_names_an_existing_section_item_or_oracle():
    sections, items, oracles = anchors()
    assert len(sections) > 40 and len(oracles) > 30
    cited = citations()
    assert len(cited) > 150, len(cited)  # the code cites it throughout
    missing = []
    for name, text in cited:
        for number, letter in SECTION.findall(text):
            if number not in sections or (letter and letter.lower() not in items.get(number, ())):
                missing.append((name, f"§{number}{letter}"))
        missing += [(name, oracle) for oracle in ORACLE.findall(text) if oracle not in oracles]
    assert not missing, missing


@pytest.mark.parametrize("pattern", [r"\.\./shared", r"\bMATH\.md", r"\bDESIGN\.md"])
def test_nothing_points_outside_the_repository(pattern):
    """A clone has none of the spec files kept beside the repository: the project cites only its
    own docs."""
    hits = [
        name
        for name in tracked_text_files()
        if re.search(pattern, open(os.path.join(ROOT, name), encoding="utf-8").read())
    ]
    assert not hits, hits

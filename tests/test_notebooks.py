"""Every notebook in notebooks/ runs top to bottom in a Jupyter kernel (nbclient), with the tiny
settings of DIFFLAB_NOTEBOOK_QUICK=1; the committed copies keep their full-size outputs."""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import ROOT, subprocess_env

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_the_notebooks_are_there():
    names = {os.path.basename(p) for p in NOTEBOOKS}
    assert {"gaussian_samplers.ipynb", "few_step.ipynb", "masked.ipynb", "counts.ipynb"} <= names
    assert {"smc.ipynb", "smc_models.ipynb", "guidance.ipynb"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, monkeypatch, tmp_path):
    """The kernel inherits the environment: quick settings, the suite's compilation cache and
    the fast-compiling XLA flags of the other subprocess tests, and a temporary folder (for its
    quick runs) inside the test's own."""
    quick = {"DIFFLAB_NOTEBOOK_QUICK": "1", "TMPDIR": str(tmp_path)}
    for name, value in subprocess_env(quick).items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(path, as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "committed without figures"
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if one fails
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors, errors

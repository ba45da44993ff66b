"""tutorials/02_experiments.ipynb: executes on the tiny model, is stored without outputs, and
matches its plain-Python twin tutorials/02_experiments.py.

The notebook runs in a kernel started from *this* interpreter (``sys.executable``, i.e. the
venv's python), through a throw-away kernelspec, so a ``python3`` kernel installed elsewhere on
the machine can never be picked up by mistake.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "tutorials" / "02_experiments.ipynb"
TWIN = ROOT / "tutorials" / "02_experiments.py"


def cells_from_percent(text: str) -> list[tuple[str, str]]:
    """(cell_type, source) pairs of a ``# %%`` percent-format script."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        marker = re.match(r"^# %%( \[markdown\])?\s*$", line)
        if marker:
            cells.append(("markdown" if marker.group(1) else "code", []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [re.sub(r"^# ?", "", ln) for ln in lines]
        out.append((kind, "\n".join(lines).strip("\n")))
    return out


def notebook_from_twin():
    """The notebook built from the twin (how tutorials/02_experiments.ipynb was made)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    for kind, source in cells_from_percent(TWIN.read_text()):
        maker = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(maker(source))
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def test_notebook_matches_its_twin_and_is_stripped():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert [(c.cell_type, c.source) for c in nb.cells] == cells_from_percent(TWIN.read_text())
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch):
    """A kernelspec whose argv is this interpreter, found first through JUPYTER_PATH."""
    name = "extractive-lens-tests"
    spec = tmp_path / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "extractive_lens tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits the environment
    monkeypatch.delenv("TUTORIAL_MODEL", raising=False)
    return name


def test_notebook_executes_on_the_tiny_model(venv_kernel, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = NotebookClient(
        nb, kernel_name=venv_kernel, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    assert nb.cells[0].outputs[0]["text"].strip() == sys.executable
    text = "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert "pre-check" in text and "resumed" in text
    assert "2 of 2 configurations resumed" in text
    figures = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "application/vnd.plotly.v1+json" in out.get("data", {})
    ]
    assert len(figures) == 5  # freezing, ordering, grafting, localisation, sweep
    assert os.environ.get("TUTORIAL_MODEL") is None

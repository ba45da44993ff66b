"""Tutorial 3 (synthetic worlds): the notebook executes top to bottom, and matches its .py twin.

Regenerate the notebook from the twin (outputs stripped) with:
    .venv/bin/python tests/test_tutorial_03.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOK = TUTORIALS / "03_synthetic_worlds.ipynb"
TWIN = TUTORIALS / "03_synthetic_worlds.py"


def twin_to_notebook(text: str):
    """Percent-format source (``# %%`` / ``# %% [markdown]`` cells) -> an outputs-free notebook."""
    import nbformat

    cells = []
    for chunk in re.split(r"^# %%", text, flags=re.M)[1:]:
        header, _, body = chunk.partition("\n")
        body = body.strip("\n")
        if header.strip() == "[markdown]":
            source = "\n".join(
                line[2:] if line.startswith("# ") else line.lstrip("#")
                for line in body.splitlines()
            )
            cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cells.append(nbformat.v4.new_code_cell(body))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return nb


def test_notebook_matches_twin_and_is_stripped():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    expected = twin_to_notebook(TWIN.read_text())
    assert [c.source for c in nb.cells] == [c.source for c in expected.cells], (
        "the notebook is out of date: run .venv/bin/python tests/test_tutorial_03.py"
    )
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_notebook_executes(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    # A kernelspec that runs this interpreter (the venv's python), found through JUPYTER_PATH.
    spec_dir = tmp_path / "jupyter" / "kernels" / "extractive-lens-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "extractive_lens test kernel",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EXTRACTIVE_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="extractive-lens-test",
        timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    printed = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert "facts_first: last fact at" in printed
    assert "parameters," in printed and "facts" in printed
    assert "core at sparsity 0.5" in printed and "| after | implications |" in printed


if __name__ == "__main__":
    import nbformat

    nbformat.write(twin_to_notebook(TWIN.read_text()), NOTEBOOK)
    print(f"wrote {NOTEBOOK}")

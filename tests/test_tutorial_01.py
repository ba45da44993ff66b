"""The quickstart tutorial: the notebook executes top to bottom on the tiny model, in the venv's
Python; it is stored without outputs and in step with its ``# %%`` script twin.

Regenerate the notebook after editing the twin::

    python tests/test_tutorial_01.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "tutorials" / "01_quickstart.ipynb"
TWIN = ROOT / "tutorials" / "01_quickstart.py"
KERNEL = "extractive-lens-test"


def twin_cells(text: str) -> list[tuple[str, str]]:
    """``(cell_type, source)`` of a ``# %%`` script (markdown cells are ``# %% [markdown]``)."""
    cells = []
    for block in re.split(r"^# %%", text, flags=re.M)[1:]:
        header, _, body = block.partition("\n")
        if header.strip() == "[markdown]":
            lines = [
                line[2:] if line.startswith("# ") else line.lstrip("#")
                for line in body.strip("\n").splitlines()
            ]
            cells.append(("markdown", "\n".join(lines).strip()))
        else:
            cells.append(("code", body.strip()))
    return cells


def notebook_from_twin(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for kind, source in twin_cells(text):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(source)
        cell.pop("id", None)
        nb.cells.append(cell)
    nb.nbformat_minor = 4  # no cell ids: stable diffs
    return nb


def test_notebook_is_stored_without_outputs_and_matches_its_twin():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip outputs"
    ours = [(c.cell_type, c.source) for c in nb.cells]
    assert ours == twin_cells(TWIN.read_text()), (
        "tutorials/01_quickstart.ipynb is out of step with its twin: run "
        "`python tests/test_tutorial_01.py` to regenerate it"
    )
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert 'os.environ.get("EXTRACTIVE_LENS_TUTORIAL_MODEL", "tiny")' in code


def test_notebook_executes_top_to_bottom_on_the_tiny_model(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # A kernelspec that runs exactly this interpreter (the venv's), whatever else is installed.
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "extractive_lens (test)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("EXTRACTIVE_LENS_TUTORIAL_MODEL", "tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    outputs = [c.outputs for c in nb.cells if c.cell_type == "code"]
    errors = [o for out in outputs for o in out if o.output_type == "error"]
    assert not errors, errors
    text = "\n".join(o.get("text", "") for out in outputs for o in out if o.output_type == "stream")
    assert Path(text.strip().splitlines()[-1]) == Path(sys.executable)
    assert "first_hop: facts" in text and "pre-check" in text
    assert "canonical template tokens" in text and "Extractive graph:" in text
    assert "report written to" in text
    figures = [
        o
        for out in outputs
        for o in out
        if o.output_type in {"execute_result", "display_data"}
        and "application/vnd.plotly.v1+json" in o.data
    ]
    assert len(figures) == 4  # curves, heatmaps, head drill-down, graph
    heatmaps = figures[1].data["application/vnd.plotly.v1+json"]
    assert [t["type"] for t in heatmaps["data"]] == ["heatmap"] * 6


if __name__ == "__main__":
    nbformat.write(notebook_from_twin(TWIN.read_text()), NOTEBOOK)
    print(f"wrote {NOTEBOOK}")

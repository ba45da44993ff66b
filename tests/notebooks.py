"""The one notebook runner of the test suite: tutorials are ``# %%`` scripts (the source of truth)
with a stored, output-free ``.ipynb`` twin that CI executes in this interpreter's kernel.

Regenerate every notebook after editing a script::

    .venv/bin/python tests/notebooks.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
KERNEL = "extractive-lens-tests"
PLOTLY = "application/vnd.plotly.v1+json"


def twin_cells(text: str) -> list[tuple[str, str]]:
    """``(cell_type, source)`` of a percent-format script (``# %%`` / ``# %% [markdown]``);
    markdown lines lose their leading ``# `` (or ``#`` on empty lines)."""
    cells = []
    for block in re.split(r"^# %%", text, flags=re.M)[1:]:
        header, _, body = block.partition("\n")
        body = body.strip("\n")
        if header.strip() == "[markdown]":
            body = "\n".join(re.sub(r"^# ?", "", line) for line in body.splitlines())
            cells.append(("markdown", body.strip()))
        else:
            cells.append(("code", body.strip()))
    return cells


def notebook_from_twin(script: Path):
    """The output-free notebook built from ``script`` (no cell ids: stable diffs)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for kind, source in twin_cells(script.read_text()):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(source)
        cell.pop("id", None)
        nb.cells.append(cell)
    nb.nbformat_minor = 4
    return nb


def assert_stored_and_in_step(notebook: Path) -> None:
    """The stored notebook has no outputs and the cells of its ``.py`` twin."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{notebook}: strip outputs"
    ours = [(c.cell_type, c.source) for c in nb.cells]
    assert ours == twin_cells(notebook.with_suffix(".py").read_text()), (
        f"{notebook.name} is out of step with its twin: run `python tests/notebooks.py`"
    )


def kernelspec(directory: Path) -> str:
    """Write a kernelspec that runs exactly this interpreter (the venv's python) under
    ``directory/kernels``; put ``directory`` on ``JUPYTER_PATH`` to find it first."""
    spec = directory / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "extractive_lens tests", "language": "python"})
    )
    return KERNEL


def execute(notebook: Path, workdir: Path, kernel: str, timeout: int = 600):
    """Run ``notebook`` top to bottom in ``kernel`` (cwd ``workdir``); fail on any error cell.

    Returns the executed notebook, its printed text and its plotly figures (in order). A last
    cell checks that the kernel really ran this interpreter.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = NotebookClient(
        nb, kernel_name=kernel, timeout=timeout, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert Path(text.strip().splitlines()[-1]) == Path(sys.executable)
    figures = [o.data[PLOTLY] for o in outputs if PLOTLY in o.get("data", {})]
    return nb, text, figures


if __name__ == "__main__":
    import nbformat

    for script in sorted(TUTORIALS.glob("[0-9]*.py")):
        path = script.with_suffix(".ipynb")
        nbformat.write(notebook_from_twin(script), path)
        print(f"wrote {path}")

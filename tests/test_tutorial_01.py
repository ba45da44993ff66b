"""The quickstart tutorial executes top to bottom on the tiny model and is stored in step with
its ``# %%`` twin (regenerate with ``python tests/notebooks.py``)."""

from __future__ import annotations

from notebooks import TUTORIALS, assert_stored_and_in_step, execute

NOTEBOOK = TUTORIALS / "01_quickstart.ipynb"


def test_notebook_is_stored_without_outputs_and_matches_its_twin():
    assert_stored_and_in_step(NOTEBOOK)
    twin = NOTEBOOK.with_suffix(".py").read_text()
    assert 'os.environ.get("EXTRACTIVE_LENS_TUTORIAL_MODEL", "tiny")' in twin


def test_notebook_executes_top_to_bottom_on_the_tiny_model(notebook_kernel, tmp_path):
    _, text, figures = execute(NOTEBOOK, tmp_path, notebook_kernel)
    assert "first_hop: facts" in text and "pre-check" in text
    assert "canonical template tokens" in text and "Extractive graph:" in text
    assert "report written to" in text
    assert len(figures) == 4  # curves, heatmaps, head drill-down, graph
    assert [t["type"] for t in figures[1]["data"]] == ["heatmap"] * 6

"""Tutorial 3 (synthetic worlds) executes top to bottom and is stored in step with its ``# %%``
twin (regenerate with ``python tests/notebooks.py``)."""

from __future__ import annotations

from notebooks import TUTORIALS, assert_stored_and_in_step, execute

NOTEBOOK = TUTORIALS / "03_synthetic_worlds.ipynb"


def test_notebook_matches_twin_and_is_stripped():
    assert_stored_and_in_step(NOTEBOOK)


def test_notebook_executes(notebook_kernel, tmp_path):
    _, printed, _ = execute(NOTEBOOK, tmp_path, notebook_kernel, timeout=300)
    assert "facts_first: last fact at" in printed
    assert "parameters," in printed and "facts" in printed
    assert "core at sparsity 0.5" in printed and "| after | implications |" in printed

"""tutorials/02_experiments.ipynb executes on the tiny model and is stored in step with its
``# %%`` twin (regenerate with ``python tests/notebooks.py``)."""

from __future__ import annotations

import os

from notebooks import TUTORIALS, assert_stored_and_in_step, execute

NOTEBOOK = TUTORIALS / "02_experiments.ipynb"


def test_notebook_matches_its_twin_and_is_stripped():
    assert_stored_and_in_step(NOTEBOOK)


def test_notebook_executes_on_the_tiny_model(notebook_kernel, tmp_path):
    _, text, figures = execute(NOTEBOOK, tmp_path, notebook_kernel, timeout=300)
    assert "pre-check" in text and "resumed" in text
    assert "2 of 2 configurations resumed" in text
    assert len(figures) == 5  # freezing, ordering, grafting, localisation, sweep
    assert os.environ.get("TUTORIAL_MODEL") is None

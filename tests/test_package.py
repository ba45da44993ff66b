"""The package's shape: a light import, every public name reachable."""

from __future__ import annotations

import subprocess
import sys

import extractive_lens


def test_import_is_light():
    code = (
        "import sys, extractive_lens; "
        "print(sorted(m for m in ('plotly', 'networkx', 'scipy', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_resolves():
    for name in extractive_lens.__all__:
        assert getattr(extractive_lens, name) is not None, name
    assert set(extractive_lens.__all__) <= set(dir(extractive_lens))

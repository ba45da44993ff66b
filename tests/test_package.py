"""The package's shape: a light import, every public name reachable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


def _sources():
    root = Path(extractive_lens.__file__).parent
    return sorted(root.rglob("*.py")), root


def test_modules_and_functions_stay_small():
    # the style rule (modules under 400 lines, functions under 60, docstrings included)
    paths, root = _sources()
    long_modules, long_functions = [], []
    for path in paths:
        text = path.read_text()
        if len(text.splitlines()) > 400:
            long_modules.append(str(path.relative_to(root)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > 60:
                    long_functions.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    assert long_modules == [] and long_functions == []


def test_no_import_cycle_even_inside_functions():
    # dependencies flow one way (models -> ... -> cli); a cycle hidden in a function body counts
    paths, root = _sources()
    names = {}
    for path in paths:
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: _imports(path, names) - {name} for name, path in names.items()}
    state: dict[str, int] = {}

    def visit(v: str, trail: list[str]) -> None:
        state[v] = 1
        for w in graph[v]:
            assert state.get(w) != 1, " -> ".join([*trail, v, w])
            if w not in state:
                visit(w, [*trail, v])
        state[v] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def _imports(path: Path, names: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = {  # TYPE_CHECKING blocks import for the type checker only
        id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
        and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)
    }  # fmt: skip
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("extractive_lens"):
            if node.module != "extractive_lens":
                out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out & set(names)

"""The HTML report: header, verdict, captions, offline plotly.js, rendering in headless Chromium.

The Chromium test needs Debian's ``chromium`` package (``apt-get install -y chromium``; ``make
test`` installs it). It FAILS, never skips, when Chromium is missing. Its screenshot is saved as a
test artifact under ``tests/artifacts/`` (or ``$EXTRACTIVE_LENS_ARTIFACTS``).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from extractive_lens.report import (
    STATIC_HINT,
    Report,
    StaticExportError,
    build_report,
    report,
    save_figures,
)
from extractive_lens.results import versions

try:
    from test_demo import tiny_demo
except ImportError:  # pytest --import-mode=importlib
    from tests.test_demo import tiny_demo

CHROMIUM_INSTALL = "apt-get install -y chromium"
ARTIFACTS = Path(os.environ.get("EXTRACTIVE_LENS_ARTIFACTS", Path(__file__).parent / "artifacts"))


@pytest.fixture(scope="module")
def demo(tiny_llama, tmp_path_factory):
    return tiny_demo(tiny_llama, tmp_path_factory)[0]


@pytest.fixture(scope="module")
def page(demo):
    return demo.report_path.read_text(encoding="utf-8")


def test_report_header_states_model_data_hyperparameters_seeds_versions(demo, page):
    rep = build_report(demo)
    assert set(rep.header) >= {"Model", "Datasets", "Hyperparameters", "Seeds", "Library versions"}
    assert rep.header["Model"]["name"] == demo.model["name"]
    assert rep.header["Hyperparameters"]["lr"] == 3e-3
    assert rep.header["Hyperparameters"]["epochs"] == 2
    assert rep.header["Seeds"] == {
        "training seed": 0,
        "dataset seed": 0,
        "counterfactual seed (scores)": 3,
    }
    for name, version in versions().items():
        assert rep.header["Library versions"][name] == version
        assert f"<td>{version}</td>" in page
    assert demo.model["name"] in page
    assert "first_hop" in page and "second_hop" in page


def test_report_says_in_words_whether_ocr_happened(demo, page):
    assert "Did out-of-context reasoning happen?" in page
    assert demo.verdict() in page
    assert "judged against the deranged-pairing control" in demo.verdict()
    for run in demo.runs:
        assert run.ocr.verdict().replace("'", "&#x27;") in page


def test_every_figure_has_a_caption_and_plotly_is_embedded(demo, page):
    from extractive_lens.report import _ocr_word

    rep = build_report(demo)
    names = [e.name for e in rep.figures]
    expected = ["ocr_curves", "summary_table"]
    withheld = []
    for run in demo.runs:  # structure figures only where OCR was established
        word = _ocr_word(run.ocr)
        if word != "n/a":  # the facts were learned: heatmaps (with a caveat unless OCR)
            expected += [f"{run.dataset}_heatmaps", f"{run.dataset}_heads"]
        if word == "yes":
            expected.append(f"{run.dataset}_graph")
        else:
            withheld.append(run.dataset)
    assert names == expected
    for entry in rep.figures:
        if entry.name.endswith(("_heatmaps", "_heads")):
            run = demo[entry.name.rsplit("_", 1)[0]]
            assert entry.caption.startswith("UNRELIABLE") == (_ocr_word(run.ocr) != "yes")
    if withheld:
        lines = dict(rep.paragraphs)["Figures withheld"]
        assert [line.split(":")[0] for line in lines] == withheld
    figcaptions = re.findall(r"<figcaption><b>Figure (\d+)\.</b> ([^<]+)</figcaption>", page)
    assert [int(n) for n, _ in figcaptions] == list(range(1, len(names) + 1))
    for _, caption in figcaptions:  # one sentence each, saying how to read the figure
        assert caption.rstrip().endswith(".") and caption.count(". ") == 0
    assert page.count('class="plotly-graph-div"') == len(names)
    assert "<script src=" not in page and '<link rel="stylesheet"' not in page  # no network
    assert len(page) > 3_000_000  # plotly.js itself is inside


def test_report_of_ocr_results_alone_and_refuses_to_overwrite(demo, tmp_path):
    runs = [r.ocr for r in demo.runs]
    path = report(runs, tmp_path / "ocr.html")
    text = path.read_text()
    assert text.count('class="plotly-graph-div"') == 2  # curves and summary table
    with pytest.raises(FileExistsError):
        report(runs, path)
    report(runs[0], path, overwrite=True)
    with pytest.raises(TypeError):
        report(["not a result"], tmp_path / "x.html")


def test_report_builder_adds_figures_with_captions(demo):
    from extractive_lens.plots import table_figure

    rep = Report("custom")
    rep.add("t", table_figure(demo.rows()), "A table of the final ranks.")
    with pytest.raises(ValueError, match="already"):
        rep.add("t", table_figure(demo.rows()), "again.")
    with pytest.raises(ValueError, match="caption"):
        rep.add("u", table_figure(demo.rows()), "  ")
    assert "A table of the final ranks." in rep.to_html()


def test_save_figures_without_kaleido_says_how_to_install(demo, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_kaleido(name, *args, **kwargs):
        if name == "kaleido" or name.startswith("kaleido."):
            raise ImportError("No module named 'kaleido'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_kaleido)
    with pytest.raises(StaticExportError) as err:
        save_figures(demo, tmp_path / "png", format="png")
    assert "pip install" in str(err.value) and "kaleido" in str(err.value)
    assert str(err.value) == STATIC_HINT
    with pytest.raises(ValueError, match="format"):
        save_figures(demo, tmp_path / "x", format="bmp")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "headless Chromium is needed to check that report.html renders; install it with "
        f"`{CHROMIUM_INSTALL}` (as root; `make test` does this when it is missing)"
    )


def _run_chromium(binary: str, args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=20000",
    ]
    return subprocess.run(
        [binary, *flags, *args], capture_output=True, text=True, timeout=180, check=False
    )


def _render(binary: str, path: Path) -> tuple[dict[str, str], str]:
    """The status element's attributes and the DOM after the page ran its scripts."""
    with tempfile.TemporaryDirectory() as tmp:
        done = _run_chromium(binary, ["--dump-dom", path.resolve().as_uri()], Path(tmp) / "p")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    status = re.search(r'<div id="el-status"([^>]*)>', dom)
    assert status, "the page's status element is missing: the report's scripts did not run"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', status.group(1)))
    attrs["data-errors"] = attrs.get("data-errors", "").replace("&quot;", '"')
    return attrs, dom


def test_report_renders_in_headless_chromium(demo):
    binary = _chromium()
    rep = build_report(demo)
    attrs, dom = _render(binary, demo.report_path)
    assert attrs.get("data-done") == "1", f"rendering did not finish: {attrs}"
    errors = json.loads(attrs["data-errors"])
    assert errors == [], f"JavaScript errors in report.html: {errors}"
    assert int(attrs["data-figures"]) == int(attrs["data-expected"]) == len(rep.figures)
    # each figure drew its own SVG with the elements of its kind
    starts = [dom.index(f'id="fig-{i}-{e.name}"') for i, e in enumerate(rep.figures)]
    chunks = [dom[a:b] for a, b in zip(starts, [*starts[1:], len(dom)], strict=True)]
    for entry, chunk in zip(rep.figures, chunks, strict=True):
        assert 'class="main-svg"' in chunk, f"{entry.name} did not render"
        kinds = {type(t).__name__ for t in entry.figure.data}
        if "Heatmap" in kinds:
            assert 'class="hm"' in chunk, f"{entry.name}: no heatmap drawn"
        if "Scatter" in kinds:
            assert 'class="scatterlayer' in chunk, f"{entry.name}: no scatter layer"
            assert re.search(r'class="(point|js-line)[" ]', chunk), f"{entry.name}: no marks"
        if "Table" in kinds:
            assert 'class="table"' in chunk, f"{entry.name}: no table drawn"
    assert "first_hop" in dom and "speak" in dom  # tick labels were drawn as text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    with tempfile.TemporaryDirectory() as tmp:
        done = _run_chromium(
            binary,
            [
                "--window-size=1400,3000",
                "--hide-scrollbars",
                f"--screenshot={shot}",
                demo.report_path.resolve().as_uri(),
            ],
            Path(tmp) / "profile-shot",
        )
    assert done.returncode == 0 and shot.is_file() and shot.stat().st_size > 50_000
    print(f"screenshot of the report: {shot}")


def test_chromium_check_catches_javascript_errors_and_missing_plots(demo, tmp_path):
    """The render check itself: a broken figure and a throwing script must be reported."""
    from extractive_lens.plots import table_figure

    binary = _chromium()
    rep = Report("broken on purpose")
    rep.add("ok", table_figure(demo.rows()), "A table.")
    page = rep.to_html()
    assert page.count("Plotly.newPlot(") == 1
    page = page.replace("Plotly.newPlot(", "Plotly.notAFunction(").replace(
        "</body>", "<script>throw new Error('boom');</script></body>"
    )
    path = tmp_path / "broken.html"
    path.write_text(page)
    attrs, _ = _render(binary, path)
    assert attrs["data-done"] == "1"
    errors = json.loads(attrs["data-errors"])
    assert any("boom" in e for e in errors) and any("notAFunction" in e for e in errors)
    assert attrs["data-figures"] == "0" and attrs["data-expected"] == "1"


@pytest.mark.slow
def test_save_figures_with_kaleido(demo, tmp_path):
    pytest.importorskip("kaleido")
    written = save_figures(demo, tmp_path / "static", format="svg")
    assert [p.name for p in written][:2] == ["ocr_curves.svg", "summary_table.svg"]
    assert all(p.stat().st_size > 1000 for p in written)
    with pytest.raises(FileExistsError):
        save_figures(demo, tmp_path / "static", format="svg")

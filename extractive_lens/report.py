"""One self-contained HTML report per run: header, verdict in words, every figure with a caption.

The file embeds plotly.js, so it opens with no network. Every figure comes with one sentence on
how to read it. Static copies (PNG, SVG, PDF) need the optional ``kaleido`` package
(``pip install 'extractive_lens[static]'``); the HTML report never does.

>>> from extractive_lens import tiny_model, first_hop, verify_ocr
>>> from extractive_lens.report import report
>>> result = verify_ocr(tiny_model(), first_hop(), lr=3e-3, epochs=1, progress=False)
>>> import tempfile, pathlib
>>> path = report([result], pathlib.Path(tempfile.mkdtemp()) / "report.html")
>>> path.name
'report.html'

What ``results`` may be (:func:`build_report`):

- a ``DemoResult`` (:func:`extractive_lens.demo.run_demo`): training curves, summary table, and per
  dataset the score heatmaps, the per-head drill-down and the extractive graph;
- an ``OCRResult`` or a sequence of them: training curves and summary table;
- a :class:`Report` already built (extra figures added with :meth:`Report.add`).
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from extractive_lens.results import atomic_path, versions

__all__ = [
    "FigureEntry",
    "Report",
    "StaticExportError",
    "build_report",
    "ocr_summary_rows",
    "overall_verdict",
    "report",
    "save_figures",
]

#: Formats ``save_figures`` writes (through kaleido).
STATIC_FORMATS = ("png", "svg", "pdf", "jpeg", "webp")

STATIC_HINT = (
    "Static figure export (PNG/SVG/PDF) needs the optional 'kaleido' package and a Chrome or "
    "Chromium browser: pip install 'extractive_lens[static]' (or: pip install 'kaleido>=1'), and "
    "on Debian/Ubuntu apt-get install -y chromium. The HTML report (report.html) needs neither."
)


class StaticExportError(RuntimeError):
    """Static export was asked for but its optional dependency is missing or failed."""


@dataclass(frozen=True)
class FigureEntry:
    """A figure of the report: file-safe ``name``, the figure, its one-sentence caption."""

    name: str
    figure: go.Figure
    caption: str
    section: str = ""


@dataclass
class Report:
    """An HTML report being assembled: title, header facts, text paragraphs and figures.

    Attributes:
        title: the page title.
        header: ``{group: {key: value}}`` shown as the header (model, data, hyperparameters,
            seeds, library versions, ...).
        paragraphs: ``(heading, text)`` pairs shown before the figures (e.g. the verdict).
        figures: the figures in page order.
        path: where :meth:`write` last wrote the file.
    """

    title: str = "extractive_lens report"
    header: dict[str, dict[str, Any]] = field(default_factory=dict)
    paragraphs: list[tuple[str, list[str]]] = field(default_factory=list)
    figures: list[FigureEntry] = field(default_factory=list)
    path: Path | None = None

    def add(self, name: str, figure: go.Figure, caption: str, section: str = "") -> Report:
        """Append a figure with its one-sentence caption (``name`` must be unique)."""
        if not isinstance(figure, go.Figure):
            raise TypeError(f"figure {name!r} is a {type(figure).__name__}, not a plotly Figure")
        if any(e.name == name for e in self.figures):
            raise ValueError(f"the report already has a figure named {name!r}")
        if not caption.strip():
            raise ValueError(f"figure {name!r} needs a caption saying how to read it")
        self.figures.append(FigureEntry(_safe_name(name), figure, caption.strip(), section))
        return self

    def to_html(self) -> str:
        """The whole page as a string (plotly.js embedded once, no network needed)."""
        from plotly.offline import get_plotlyjs

        parts = [_HEAD.format(title=html.escape(self.title), css=_CSS, collector=_COLLECTOR)]
        parts.append("<script>" + get_plotlyjs() + "</script></head><body>")
        parts.append(f"<h1>{html.escape(self.title)}</h1>")
        parts.append(self._header_html())
        for heading, lines in self.paragraphs:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
            parts += [f"<p class='verdict'>{html.escape(line)}</p>" for line in lines]
        section = None
        parts.append("<h2>Figures</h2>")
        for i, entry in enumerate(self.figures):
            if entry.section and entry.section != section:
                section = entry.section
                parts.append(f"<h3>{html.escape(section)}</h3>")
            div = entry.figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=f"fig-{i}-{entry.name}",
                config={"displaylogo": False, "responsive": False},
            )
            parts.append(
                f"<figure id='figure-{entry.name}'>{div}<figcaption><b>Figure {i + 1}.</b> "
                f"{html.escape(entry.caption)}</figcaption></figure>"
            )
        parts.append(_STATUS.format(n=len(self.figures)))
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the page to ``path``; an existing file is replaced only with ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_html(), encoding="utf-8")
        self.path = path
        return path

    def save_figures(
        self, out_dir: str | os.PathLike, format: str = "png", *, overwrite: bool = False
    ) -> list[Path]:
        """Each figure as a static file ``out_dir/<name>.<format>`` (needs ``kaleido``)."""
        return save_figures(
            {e.name: e.figure for e in self.figures}, out_dir, format, overwrite=overwrite
        )

    def _header_html(self) -> str:
        blocks = []
        for group, facts in self.header.items():
            rows = "".join(
                f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_cell(v))}</td></tr>"
                for k, v in facts.items()
            )
            blocks.append(
                f"<div class='hblock'><h4>{html.escape(group)}</h4><table>{rows}</table></div>"
            )
        return "<header class='run'>" + "".join(blocks) + "</header>"


# --------------------------------------------------------------------------- building


def build_report(results: Any, *, title: str | None = None) -> Report:
    """The :class:`Report` for a ``DemoResult``, an ``OCRResult`` or a sequence of them."""
    if isinstance(results, Report):
        return results
    if hasattr(results, "runs"):
        return _demo_report(results, title)
    runs = list(results) if isinstance(results, Sequence) else [results]
    if not runs or not all(hasattr(r, "verdict") for r in runs):
        raise TypeError(
            "report() takes a DemoResult, an OCRResult or a sequence of OCRResults, "
            f"got {type(results).__name__}"
        )
    rep = Report(title or f"OCR on {runs[0].model.get('name', 'a model')}")
    rep.header = _header(runs[0].model, runs, extra_config={}, seconds=sum(r.seconds for r in runs))
    rep.paragraphs.append(("Did out-of-context reasoning happen?", _verdict_lines(runs)))
    _add_ocr_figures(rep, runs)
    return rep


def report(
    results: Any,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the HTML report of ``results`` (see :func:`build_report`) to ``path``; return it."""
    return build_report(results, title=title).write(path, overwrite=overwrite)


def ocr_summary_rows(runs: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per dataset: fact, implication and control mean rank, chance, OCR verdict."""
    rows = []
    for r in runs:
        final = r.final()
        rows.append(
            {
                "dataset": r.dataset,
                "fact rank": final.get("facts", math.nan),
                "implication rank": final.get("implications", math.nan),
                "control rank": final.get("control_implications", math.nan),
                "chance": r.chance(),
                "OCR?": _ocr_word(r),
            }
        )
    return rows


def overall_verdict(runs: Sequence[Any]) -> str:
    """One sentence over all datasets: on which did OCR happen, judged against the control."""
    model = runs[0].model.get("name", "this model") if runs else "this model"
    yes = [r.dataset for r in runs if _ocr_word(r) == "yes"]
    unjudged = [r.dataset for r in runs if _ocr_word(r) == "n/a"]
    no = [r.dataset for r in runs if _ocr_word(r) == "no"]
    parts = []
    if yes:
        parts.append(f"OCR happened on {_join(yes)}")
    if no:
        parts.append(
            f"no significant OCR on {_join(no)} (implications not better than the control by "
            "2 standard errors; the per-dataset lines give the numbers)"
        )
    if unjudged:
        parts.append(f"OCR could not be judged on {_join(unjudged)} (facts not learned)")
    controls = sorted({r.control_name() for r in runs if hasattr(r, "control_name")})
    against = " and ".join(controls) or "deranged-pairing control"
    return f"On {model}: " + "; ".join(parts) + f", judged against the {against}."


def _ocr_word(result: Any) -> str:
    verdict = result.verdict()
    if " - OCR:" in verdict:
        return "yes"
    if "cannot be judged" in verdict:
        return "n/a"
    return "no"


def _verdict_lines(runs: Sequence[Any]) -> list[str]:
    lines = [overall_verdict(runs)]
    for r in runs:
        lines.append(r.verdict())
        if hasattr(r, "capability"):
            lines.append(r.capability())
    return lines


def _add_ocr_figures(rep: Report, runs: Sequence[Any]) -> None:
    from extractive_lens.plots import ocr_curves, table_figure

    chance = runs[0].chance()
    rep.add(
        "ocr_curves",
        ocr_curves(runs),
        f"Mean rank after each epoch (0 = best, grey line = chance {chance:.1f}) of the trained "
        "facts (solid), their never-trained implications (dashed) and the deranged-pairing "
        "control (dotted); OCR shows as the dashed line ending clearly below the dotted one.",
        section="Out-of-context reasoning",
    )
    rep.add(
        "summary_table",
        table_figure(ocr_summary_rows(runs), "Final mean ranks (lower is better)"),
        "Final mean rank per dataset after finetuning on the facts; an implication rank well "
        "below the control rank means the model answers the implications for the right entity.",
        section="Out-of-context reasoning",
    )


def _demo_report(demo: Any, title: str | None) -> Report:
    from extractive_lens.plots import graph_figure, head_drilldown, score_heatmaps

    runs = [run.ocr for run in demo.runs]
    rep = Report(title or f"extractive_lens demo on {demo.model.get('name', 'a model')}")
    rep.header = _header(demo.model, runs, extra_config=dict(demo.config), seconds=demo.seconds)
    rep.paragraphs.append(("Did out-of-context reasoning happen?", _verdict_lines(runs)))
    if demo.notes:  # diverged datasets, skipped scores: what the figures below do not show
        rep.paragraphs.append(("Notes", list(demo.notes)))
    _add_ocr_figures(rep, runs)
    withheld = []
    for run in demo.runs:
        if run.canonical is None:
            continue
        name = run.dataset
        established = _ocr_word(run.ocr) == "yes"
        if _ocr_word(run.ocr) == "n/a":  # facts not learned: the scores describe nothing
            withheld.append(f"{name}: no score figures, since the facts were not learned.")
            continue
        first = next(iter(run.canonical.values()))
        section = f"Extractive scores: {name} ({first.n_items} implications)"
        caveat = (
            ""
            if established
            else "UNRELIABLE as structure (OCR was not established on this dataset): "
        )
        rep.add(
            f"{name}_heatmaps",
            score_heatmaps(run.canonical, title=f"{name}: extractive scores by layer and token"),
            caveat + "Each cell is a component at one token (x, the canonical template) and layer "
            "(y, 0 at the bottom), MLP on the left and the layer's attention total on the right "
            "(query heads; for informative scores also the K/V heads, which own separate weights), "
            "averaged over the implications; red helps the correct answer, blue hurts it, "
            "and the rows are the downstream, informative and upstream scores.",
            section=section,
        )
        drill = head_drilldown(run.canonical, title=None)
        meta = drill.layout.meta
        rep.add(
            f"{name}_heads",
            drill,
            caveat
            + f"Per-head scores at the token '{meta['token']}' (position {meta['position']}, where "
            "attention matters most), one panel per role with layer on y and head on x (K/V heads "
            "of grouped-query attention as KV columns); red helps the answer, blue hurts it.",
            section=section,
        )
        if run.graph is not None and not established:
            withheld.append(
                f"{name}: the extractive graph is withheld, since OCR was not established; "
                "its scores are in the heatmaps above and in scores.json."
            )
        elif run.graph is not None:
            rep.add(
                f"{name}_graph",
                graph_figure(run.graph, title=f"{name}: extractive structure"),
                "Each node is a component at (token, layer) with one of the largest |scores| of "
                "its role (green upstream, orange informative, blue downstream), sized by |score| "
                "within its role, open markers negative (hurting the answer), faint ones with a "
                "95% bootstrap interval over items that includes 0, and lines possible paths only "
                "(the later node can read the earlier one, both intervals exclude 0), not "
                "measured flow; hover a node for all three scores.",
                section=section,
            )
    if withheld:
        rep.paragraphs.append(("Figures withheld", withheld))
    return rep


def _header(
    model: Mapping[str, Any],
    runs: Sequence[Any],
    *,
    extra_config: Mapping[str, Any],
    seconds: float,
) -> dict[str, dict[str, Any]]:
    cfg = dict(runs[0].config) if runs else {}
    hyper_keys = ("lr", "epochs", "batch_size", "trainable", "paraphrases", "n_train")
    hyper = {k: cfg[k] for k in hyper_keys if k in cfg}
    skip = {"model", "datasets", "seed", "data_seed", "dataset_seed", "score_seed"}
    hyper.update({k: v for k, v in extra_config.items() if k not in hyper and k not in skip})
    seeds = {
        "training seed": cfg.get("seed"),
        "dataset seed": cfg.get("dataset_seed"),
        "counterfactual seed (scores)": extra_config.get("score_seed"),
    }
    datasets = {
        r.dataset: ", ".join(f"{k} {v} options" for k, v in r.n_options.items()) for r in runs
    }
    lib = versions()
    for pkg in ("plotly",):
        try:
            lib[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            lib[pkg] = "not installed"
    wall = {"wall time": f"{seconds:.1f} s", "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    return {
        "Model": {
            k: model[k]
            for k in (
                "name",
                "architecture",
                "n_layers",
                "n_heads",
                "n_kv_heads",
                "d_model",
                "n_params",
            )
            if k in model
        },
        "Datasets": datasets,
        "Hyperparameters": hyper,
        "Seeds": {k: v for k, v in seeds.items() if v is not None},
        "Library versions": lib,
        "Run": wall,
    }


# --------------------------------------------------------------------------- static export


def save_figures(
    figures: Any,
    out_dir: str | os.PathLike,
    format: str = "png",
    *,
    overwrite: bool = False,
    scale: float = 2.0,
) -> list[Path]:
    """Write every figure as ``out_dir/<name>.<format>`` (png, svg, pdf, jpeg, webp).

    ``figures`` is a :class:`Report`, a ``{name: Figure}`` mapping, or any ``results``
    :func:`build_report` accepts. Needs the optional ``kaleido`` package; without it a
    :class:`StaticExportError` says how to install it. Existing files are kept unless
    ``overwrite``.
    """
    if format not in STATIC_FORMATS:
        raise ValueError(f"format must be one of {STATIC_FORMATS}, got {format!r}")
    if isinstance(figures, Mapping):
        named = dict(figures)
    else:
        rep = build_report(figures)
        named = {e.name: e.figure for e in rep.figures}
    try:
        import kaleido  # noqa: F401
    except ImportError as err:
        raise StaticExportError(STATIC_HINT) from err
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = {name: out / f"{_safe_name(name)}.{format}" for name in named}
    clash = [str(p) for p in targets.values() if p.exists()]
    if clash and not overwrite:
        raise FileExistsError(f"{clash[0]} exists; pass overwrite=True to replace figure files.")
    import plotly.io as pio

    names = list(named)
    try:
        if hasattr(pio, "write_images"):  # kaleido >= 1: one browser for all figures
            pio.write_images(
                [named[n] for n in names], [targets[n] for n in names], format=format, scale=scale
            )
        else:
            for name in names:
                named[name].write_image(str(targets[name]), format=format, scale=scale)
    except Exception as err:  # kaleido reports a missing or broken browser in many ways
        raise StaticExportError(f"static export failed: {err}. {STATIC_HINT}") from err
    return [targets[n] for n in names]


# --------------------------------------------------------------------------- HTML pieces


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px 40px; color: #222; max-width: 1250px; }
h1 { font-size: 1.6em; margin-bottom: 0.3em; }
header.run { display: flex; flex-wrap: wrap; gap: 12px 28px; margin: 12px 0 8px; }
.hblock h4 { margin: 4px 0; font-size: 0.95em; color: #555; }
.hblock table { border-collapse: collapse; font-size: 0.85em; }
.hblock th { text-align: left; padding: 1px 10px 1px 0; font-weight: normal; color: #666; }
.hblock td { padding: 1px 0; font-family: ui-monospace, monospace; }
p.verdict { margin: 4px 0; }
figure { margin: 18px 0 28px; }
figcaption { max-width: 1050px; font-size: 0.92em; color: #333; margin-top: 4px; }
#el-status { margin-top: 30px; font-size: 0.8em; color: #888; }
"""

_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{css}</style>
<script>{collector}</script>
"""

# Collects JavaScript errors from the very start, so a test (or a reader) can see them.
_COLLECTOR = """
window.__elErrors = [];
window.addEventListener('error', function (e) {
  window.__elErrors.push(String(e.message || e.type));
});
window.addEventListener('unhandledrejection', function (e) {
  window.__elErrors.push('unhandled rejection: ' + String(e.reason));
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__elErrors.push(Array.prototype.map.call(arguments, String).join(' '));
    return original.apply(console, arguments);
  };
})();
"""

# After load, waits until every figure has drawn its SVG (or gives up after ~10 s), then
# writes a status element: how many figures rendered and the errors collected.
_STATUS = """<div id="el-status" data-expected="{n}" data-figures="-1" data-errors="[]">
rendering figures...</div>
<script>
(function () {{
  var tries = 0;
  function check() {{
    var divs = document.querySelectorAll('.plotly-graph-div');
    var rendered = 0;
    divs.forEach(function (d) {{ if (d.querySelector('.main-svg')) rendered += 1; }});
    if (rendered < {n} && tries < 100) {{ tries += 1; setTimeout(check, 100); return; }}
    var el = document.getElementById('el-status');
    el.setAttribute('data-figures', String(rendered));
    el.setAttribute('data-errors', JSON.stringify(window.__elErrors));
    el.setAttribute('data-done', '1');
    el.textContent = rendered + ' of {n} figures rendered' +
      (window.__elErrors.length ? '; JavaScript errors: ' + window.__elErrors.join(' | ') : '.');
  }}
  window.addEventListener('load', function () {{ setTimeout(check, 50); }});
}})();
</script>"""

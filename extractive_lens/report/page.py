"""The report page: :class:`Report` (title, header, paragraphs, captioned figures) as one HTML file.

The page embeds plotly.js once, so it opens with no network, and a small script that records
JavaScript errors and how many figures drew (``#el-status``), so a test or a reader can check it.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extractive_lens.report.static import safe_name, write_figures
from extractive_lens.results import atomic_path

if TYPE_CHECKING:
    import plotly.graph_objects as go


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
        import plotly.graph_objects as go

        if not isinstance(figure, go.Figure):
            raise TypeError(f"figure {name!r} is a {type(figure).__name__}, not a plotly Figure")
        if any(e.name == name for e in self.figures):
            raise ValueError(f"the report already has a figure named {name!r}")
        if not caption.strip():
            raise ValueError(f"figure {name!r} needs a caption saying how to read it")
        self.figures.append(FigureEntry(safe_name(name), figure, caption.strip(), section))
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
        return write_figures(
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

"""Whatever a file is called, whatever its columns are named and whatever a student types, the
app shows it as typed: no markup runs, no math is typeset, no title is formatted.

These check what the server sends; tests/test_panel_browser_security.py checks the same story in
real Chromium.
"""
from __future__ import annotations

import asyncio
import html
import json
from html.parser import HTMLParser

import pytest
from bokeh.document import Document

from panel_apps.app import PlotApp
from panel_apps.config import PlotAppConfig
from panel_apps.settings import plot_settings
from panel_apps.spec import PlotSpec

IMG = "<img src=x onerror=window.__xss=1>"
SCRIPT = "<script>window.__xss=1</script>"
TEX = "$$\\alpha$$ \\(x\\)"
FORMAT = "{label} {0.__class__}"
FILE_NAME = f"run {IMG}.csv"
COLUMNS = ["t", f"q{IMG}", SCRIPT, TEX, f"{FORMAT} **b** [a](javascript:x)"]
ALLOWED_TAGS = {"p": set(), "strong": set(), "br": set(), "ul": set(), "li": set(), "code": set(),
                "a": {"href", "target", "rel"}}


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, set[str]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, {name for name, _ in attrs}))


def shown_html(pane) -> str:
    """The HTML the browser puts into the page for ``pane`` (Bokeh sends it escaped once more)."""
    model = pane.get_root(Document())
    assert model.disable_math, f"{pane} would typeset $...$ as math"
    return html.unescape(model.text)


def assert_only_our_markup(pane) -> str:
    shown = shown_html(pane)
    parser = _Tags()
    parser.feed(shown)
    for tag, attrs in parser.found:
        assert tag in ALLOWED_TAGS and attrs <= ALLOWED_TAGS[tag], (tag, attrs, shown)
    return shown


@pytest.fixture
def app(tmp_path):
    rows = [",".join(COLUMNS)] + [f"{i},{i * 2},{i % 3},{i * 0.5},{i - 1}" for i in range(50)]
    (tmp_path / FILE_NAME).write_text("\n".join(rows) + "\n")
    return PlotApp(PlotAppConfig(home=str(tmp_path), data_roots=[], rasterize_threshold=10))


def test_markup_in_file_and_column_names_and_typed_text_is_shown_as_text(app, tmp_path):
    app.path_input.value = FILE_NAME
    app._guard(app._preview)
    assert not app.error.visible, app.error.object
    assert FILE_NAME in html.unescape(assert_only_our_markup(app.status_pane))
    types = html.unescape(assert_only_our_markup(app.types_pane))
    assert all(c in types for c in COLUMNS)
    asyncio.run(app._load())
    assert "Plotted" in assert_only_our_markup(app.status_pane)
    app.derived_name.value, app.derived_formula.value = IMG, "t"  # an error quoting the input
    app._guard(app._add_derived)
    assert app.error.visible and IMG in html.unescape(assert_only_our_markup(app.error))
    app.derived_name.value, app.derived_formula.value = "r", "t * 2"
    app.filter_column.value, app.filter_min.value = COLUMNS[1], "0"
    app._guard(app._add_derived)
    app._guard(app._add_filter)
    extras = html.unescape(assert_only_our_markup(app.extras_pane))
    assert COLUMNS[1] in extras and "r = <code>t * 2</code>" in extras
    app.spec.title = f"{IMG} {TEX} {FORMAT}"
    app._guard(app._write_notebook)
    status = assert_only_our_markup(app.status_pane)
    assert "Notebook written to ~/nebulahub-plots/" in status


def test_notebook_file_name_link_and_title_cell_are_plain(app, tmp_path):
    app.path_input.value = FILE_NAME
    app._guard(app._preview)
    asyncio.run(app._load())
    app.spec.title = f"{IMG}\n# {TEX} [a](javascript:x)"
    app._guard(app._write_notebook)
    assert not app.error.visible, app.error.object
    written = list((tmp_path / "nebulahub-plots").glob("*.ipynb"))
    assert len(written) == 1 and all(c.isalnum() or c in "._-" for c in written[0].name), written
    link = assert_only_our_markup(app.status_pane)
    assert f'href="../lab/tree/nebulahub-plots/{written[0].name}"' in link
    title_cell = "".join(json.loads(written[0].read_text())["cells"][0]["source"])
    first_line = title_cell.splitlines()[0]
    assert first_line.startswith("# ") and "<img" not in first_line and "$$" not in first_line
    assert "\\$\\$" in first_line and "&lt;img" in first_line  # escaped, shown as typed in JupyterLab


def _canvas_texts(bokeh_figure) -> list[str]:
    from bokeh.models import Axis, ColorBar, Title
    texts = [m.text for m in bokeh_figure.select({"type": Title})]
    texts += [m.axis_label for m in bokeh_figure.select({"type": Axis}) if m.axis_label]
    texts += [m.title for m in bokeh_figure.select({"type": ColorBar}) if m.title]
    return texts


@pytest.mark.parametrize("kind, mode", [("scatter", "rasterized"), ("scatter", "standard"), ("hist", "standard"),
                                        ("line", "standard")])
def test_titles_and_labels_on_the_plot_are_never_typeset_nor_formatted(kind, mode):
    import holoviews as hv
    import numpy as np
    import pandas as pd
    from bokeh.models import HoverTool

    from panel_apps import render
    frame = pd.DataFrame({COLUMNS[1]: np.arange(20.0), TEX: np.arange(20.0) ** 2, "c": np.arange(20.0)})
    spec = PlotSpec(kind=kind, mode=mode, title=f"{TEX} {FORMAT}", ylabel=TEX)
    spec.set_columns(list(frame))
    spec.param.update(x=COLUMNS[1], y=TEX, color_by=TEX if kind == "scatter" else "")
    settings = plot_settings(spec, mode)
    if mode == "rasterized":
        figure = render.RasterFigure(frame, settings).figure
    else:
        obj = render.histogram(frame, settings) if kind == "hist" else render.standard_plot(frame, settings)
        figure = hv.render(obj, backend="bokeh")
    texts = _canvas_texts(figure)
    assert any(t.replace("\u200b", "") == f"{TEX} {FORMAT}" for t in texts), texts  # the title, as typed
    for t in texts:
        assert "$$" not in t and "\\(" not in t and "\\[" not in t, t  # nothing Bokeh would typeset
    labels = [label for tool in figure.select({"type": HoverTool}) for label, _ in (tool.tooltips or [])]
    if mode == "rasterized":
        assert COLUMNS[1] in labels and TEX in labels  # tooltips are text: shown exactly as named

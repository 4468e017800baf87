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
from tests.panel_page import click, error_text, pane, type_in

PATH = "…or type a path inside the folder"
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
    type_in(app, PATH, FILE_NAME)
    click(app, "Preview")
    assert not error_text(app), app.error
    assert FILE_NAME in html.unescape(assert_only_our_markup(pane(app, "nh-status")))
    types = html.unescape(assert_only_our_markup(pane(app, "nh-types")))
    assert all(c in types for c in COLUMNS)
    asyncio.run(app.load())
    assert "Plotted" in assert_only_our_markup(pane(app, "nh-status"))
    type_in(app, "New column name", IMG)  # an error quoting the input
    type_in(app, "Formula", "t")
    click(app, "Add column")
    assert error_text(app) and IMG in html.unescape(assert_only_our_markup(pane(app, "nh-field-error")))
    type_in(app, "New column name", "r")
    type_in(app, "Formula", "t * 2")
    click(app, "Add column")
    type_in(app, "Filter column", COLUMNS[1])
    type_in(app, "min", "0")
    click(app, "Add filter")
    extras = html.unescape(assert_only_our_markup(pane(app, "nh-extras")))
    assert COLUMNS[1] in extras and "r = <code>t * 2</code>" in extras
    type_in(app, "Title", f"{IMG} {TEX} {FORMAT}")
    app.write_notebook()
    status = assert_only_our_markup(pane(app, "nh-status"))
    assert "Notebook written to ~/nebulahub-plots/" in status


def test_notebook_file_name_link_and_title_cell_are_plain(app, tmp_path):
    type_in(app, PATH, FILE_NAME)
    click(app, "Preview")
    asyncio.run(app.load())
    type_in(app, "Title", f"{IMG}\n# {TEX} [a](javascript:x)")
    app.write_notebook()
    assert not error_text(app), app.error
    written = list((tmp_path / "nebulahub-plots").glob("*.ipynb"))
    assert len(written) == 1 and all(c.isalnum() or c in "._-" for c in written[0].name), written
    link = assert_only_our_markup(pane(app, "nh-status"))
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

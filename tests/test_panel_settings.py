"""What the app draws and what 'Open as notebook' writes come from one settings dict, so they agree.

For every kind of plot, with and without log axes, with and without a column mapped to colour,
with and without a typed title and labels (full of TeX, braces and markup), in both modes, the
options the app's renderer actually used are read back — the keywords of the ``hvplot`` call it
made (recorded by a spy) and the resulting HoloViews element's options, or the properties of the
Bokeh figure of a rasterized view — and compared with the keywords of the call in the exported
notebook, read with :mod:`ast`.
"""
from __future__ import annotations

import ast
import itertools

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (hv.plotting.util, as after hv.extension in a notebook)
import numpy as np
import pandas as pd
import pytest
from bokeh.models import ColorBar, HoverTool, LogScale
from holoviews.plotting.util import process_cmap

from panel_apps import render
from panel_apps.export import notebook_source
from panel_apps.settings import RASTERIZED, STANDARD, plot_settings
from panel_apps.spec import KINDS, PlotSpec

TITLE = "$$E = mc^2$$ {label} <b>run</b> \\(x\\)"
LABELS = {"title": TITLE, "xlabel": "time $$t$$ {s}", "ylabel": "charge \\[C\\]"}
FRAME = pd.DataFrame({"t": np.linspace(0.5, 10.0, 300), "q1": np.linspace(1.0, 30.0, 300) ** 1.5,
                      "w": np.linspace(2.0, 5.0, 300)})
HVPLOT_DATA_KEYWORDS = {"x", "y", "c", "hover_cols", "rasterize", "aggregator"}  # data, not element options


def cases():
    """(kind, mode, logx, logy, colour by, typed labels): every distinct plot the app can draw."""
    for kind, (logx, logy), colour, typed in itertools.product(KINDS, [(False, False), (True, False),
                                                                       (False, True), (True, True)],
                                                               ["", "w"], [False, True]):
        if colour and kind not in ("scatter", "line"):
            continue
        for mode in ([STANDARD, RASTERIZED] if kind in ("scatter", "line") else [STANDARD]):
            if kind == "hist" and logy and not logx:
                continue  # nothing new: y is counted, not read
            yield pytest.param(kind, mode, logx, logy, colour, typed,
                               id=f"{kind}-{mode}-logx{int(logx)}-logy{int(logy)}-{colour or 'plain'}"
                                  f"-{'typed' if typed else 'default'}-labels")


def spec_for(kind, mode, logx, logy, colour, typed) -> PlotSpec:
    spec = PlotSpec(kind=kind, mode=mode, logx=logx, logy=logy, width=520, height=340, size=9, alpha=0.6, bins=24,
                    marker="diamond", color="#d62728", **(LABELS if typed else {}))
    spec.set_columns(list(FRAME))
    spec.param.update(x="t", y="q1", color_by=colour)
    return spec


def exported_call(spec: PlotSpec, mode: str) -> tuple[ast.Call, list[ast.stmt]]:
    """The plotting call of the exported notebook's last cell, and the statements before it."""
    cells = notebook_source(spec, "/data/run.csv", "text", {"delimiter": ",", "header": True}, list(FRAME), mode)
    tree = ast.parse(cells[-1][1])
    call = tree.body[-1].value
    assert isinstance(call, ast.Call), ast.unparse(call)
    return call, tree.body[:-1]


def keywords(call: ast.Call) -> dict:
    """The call's keyword values: literals, or the HoloViews colour map call evaluated."""
    values = {}
    for kw in call.keywords:
        try:
            values[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:  # hv.plotting.util.linear_gradient(...), or an expression over df
            values[kw.arg] = eval(compile(ast.Expression(kw.value), "<notebook>", "eval"), {"hv": hv}) \
                if "df" not in {n.id for n in ast.walk(kw.value) if isinstance(n, ast.Name)} else kw.value
    return values


@pytest.fixture
def hvplot_calls(monkeypatch):
    """Every ``frame.hvplot.<method>(...)`` call the renderer makes: (method, keyword arguments)."""
    from hvplot.plotting.core import hvPlotTabular
    calls = []
    for method in ("scatter", "line"):
        real = getattr(hvPlotTabular, method)

        def spy(self, *args, _real=real, _method=method, **kwargs):
            calls.append((_method, dict(kwargs)))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(hvPlotTabular, method, spy)
    return calls


@pytest.mark.parametrize("kind, mode, logx, logy, colour, typed", list(cases()))
def test_the_exported_code_uses_the_options_the_app_drew_with(hvplot_calls, kind, mode, logx, logy, colour, typed):
    spec = spec_for(kind, mode, logx, logy, colour, typed)
    drawn_mode = render.choose_mode(spec, len(FRAME), threshold=10**9)
    settings = plot_settings(spec, drawn_mode)
    call, before = exported_call(spec, drawn_mode)
    code = keywords(call)
    if settings["method"] == "hist":
        assert_histogram_matches(settings, call, code)
    elif settings["rasterize"]:
        assert_raster_view_matches(settings, call, code, before)
    else:
        assert_standard_plot_matches(settings, call, code, hvplot_calls)
    # in both, the typed title shows as typed: HoloViews formats it to the text itself, and the
    # TeX delimiters Bokeh would typeset are broken by an invisible zero-width space
    shown = code["title"].format()
    assert shown.replace("\u200b", "") == (TITLE if typed else "") and "$$" not in shown and "\\(" not in shown


def assert_standard_plot_matches(settings, call, code, hvplot_calls):
    element = render.standard_plot(FRAME, settings)
    [(method, passed)] = hvplot_calls
    assert ast.unparse(call.func) == f"df.hvplot.{method}"
    assert passed == code  # the very keywords, values and all
    options = element.opts.get().kwargs
    for name, value in code.items():
        if name in HVPLOT_DATA_KEYWORDS:
            continue
        if name == "size":  # hvPlot takes an area and gives HoloViews a diameter
            assert np.isclose(options["size"], np.sqrt(value))
        else:
            assert options[name] == value, name
    assert [d.name for d in element.kdims] == [code["x"]] and element.vdims[0].name == code["y"]
    assert (str(options.get("color")) == f"dim('{code['c']}')") if "c" in code else options["color"] == code["color"]


def assert_histogram_matches(settings, call, code):
    element = render.histogram(FRAME, settings)[()]
    assert ast.unparse(call.func) == "df.hvplot.hist" and ast.literal_eval(call.args[0]) == settings["x"]
    options = element.opts.get().kwargs
    for name, value in code.items():
        if name not in ("bins", "bin_range"):
            assert options[name] == value, name
    edges = element.interface.coords(element, settings["x"], edges=True)
    assert len(edges) - 1 == code["bins"]
    if code["logx"]:  # log-spaced bins over the values above zero, in the app and the notebook
        assert np.allclose(np.diff(np.log10(edges)), np.log10(edges[1] / edges[0]))
        assert ast.unparse(code["bin_range"]) == "(df['t'][df['t'] > 0].min(), df['t'].max())"
    else:
        assert "bin_range" not in code and np.allclose(np.diff(edges), edges[1] - edges[0])


def assert_raster_view_matches(settings, call, code, before):
    view = render.RasterFigure(FRAME, settings)
    fig = view.figure
    if settings["method"] == "hist2d":
        assert ast.unparse(call.func).startswith("hv.QuadMesh(")
        counts_line = ast.unparse(before[-1])
        for axis, column in (("x", "t"), ("y", "q1")):  # the same number of bins, log-spaced on log axes
            edges = f"np.{'geomspace' if code[f'log{axis}'] else 'linspace'}(df['{column}']"
            assert edges in counts_line and f"{settings['bins'] + 1})" in counts_line
        assert view.canvas_size() == (settings["bins"],) * 2 == view.last.image.shape
    else:
        assert ast.unparse(call.func) == f"df.hvplot.{settings['method']}" and code["rasterize"] is True
        x, y = settings["x"], settings["y"]
        assert code["aggregator"] == ("mean" if settings["c"] else "count") and code.get("c") == settings["c"]
        assert view.last.value_name == (f"mean {code['c']}" if code.get("c") else "rows")
        for axis, column in (("x", x), ("y", y)):  # hvPlot's rasterize bins linearly: log10 of the column
            logged = f"log10({column})"
            on_log_axis = isinstance(getattr(fig, f"{axis}_scale"), LogScale)
            assert (code[axis] == logged) == on_log_axis and code[f"log{axis}"] is False
            if on_log_axis:
                assert f"df[{logged!r}] = np.log10(df[{column!r}].where(df[{column!r}] > 0))" \
                       in [ast.unparse(s) for s in before]
                code[f"{axis}label"] = code[f"{axis}label"].removeprefix("log10(").removesuffix(")")
                code[f"log{axis}"] = True
    assert (fig.width, fig.height) == (code["width"], code["height"])
    assert (fig.title.text if fig.title else "") == code["title"].format()  # HoloViews formats titles
    assert (fig.xaxis[0].axis_label, fig.yaxis[0].axis_label) == (code["xlabel"], code["ylabel"])
    assert isinstance(fig.x_scale, LogScale) == code["logx"] and isinstance(fig.y_scale, LogScale) == code["logy"]
    assert code["cnorm"] == "eq_hist"  # the app shades by rank on the server (panel_apps.shading)
    assert list(view.mapper.palette) == process_cmap(code["cmap"], 255)  # entries 1..255 of the picture
    bars = fig.select({"type": ColorBar})
    assert bool(bars) == code["colorbar"] and (not bars or bars[0].title == code["clabel"])
    assert fig.renderers[0].glyph.global_alpha == code["alpha"]
    assert bool(fig.select({"type": HoverTool})) == ("hover" in code["tools"])


@pytest.mark.parametrize("kind, mode", [("scatter", STANDARD), ("line", STANDARD), ("hist", STANDARD),
                                        ("hist2d", RASTERIZED)])
def test_the_exported_code_run_on_the_apps_table_draws_the_same_figure(kind, mode):
    spec = spec_for(kind, mode, kind != "line", kind == "hist2d", "w" if kind == "scatter" else "", True)
    settings = plot_settings(spec, mode)
    call, before = exported_call(spec, mode)
    namespace = {"df": FRAME.copy(), "hv": hv, "np": np}
    import hvplot.pandas  # noqa: F401
    for stmt in before:
        exec(compile(ast.Module([stmt], []), "<notebook>", "exec"), namespace)
    exported = hv.render(eval(compile(ast.Expression(call), "<notebook>", "eval"), namespace), backend="bokeh")
    if settings["rasterize"]:
        app = render.RasterFigure(FRAME, settings).figure
    else:
        drawn = render.histogram(FRAME, settings) if kind == "hist" else render.standard_plot(FRAME, settings)
        app = hv.render(drawn, backend="bokeh")
    def title(fig):
        return fig.title.text if fig.title else ""

    assert (app.width, app.height, title(app)) == (exported.width, exported.height, title(exported))
    assert [a.axis_label for a in app.xaxis + app.yaxis] == [a.axis_label for a in exported.xaxis + exported.yaxis]
    assert (type(app.x_scale), type(app.y_scale)) == (type(exported.x_scale), type(exported.y_scale))

"""Plots of many rows: rasterized zooms re-aggregate, log axes are right, histograms count all rows."""
import io

import numpy as np
import pandas as pd
import pytest
from bokeh.document import Document
from bokeh.events import RangesUpdate
from PIL import Image

from panel_apps import render
from panel_apps.export import view_png
from panel_apps.settings import RASTERIZED, STANDARD, plot_settings
from panel_apps.spec import PlotSpec


@pytest.fixture(scope="module")
def grid():
    """A uniform 400 x 400 grid of points on [0, 100) x [0, 100): counts are known exactly."""
    xs, ys = np.meshgrid(np.arange(400) * 0.25 + 0.125, np.arange(400) * 0.25 + 0.125)
    return pd.DataFrame({"x": xs.ravel(), "y": ys.ravel(), "w": xs.ravel() * 2})


def spec_for(**kw):
    spec = PlotSpec(width=300, height=260)
    spec.set_columns(["x", "y", "w"])
    spec.param.update(x="x", y="y", **kw)
    return spec


def raster(spec):
    """The settings the app draws a rasterized view (or a histogram) from."""
    return plot_settings(spec, RASTERIZED)


def test_auto_mode_switches_at_the_admin_threshold():
    spec = spec_for()
    assert render.choose_mode(spec, 1000, threshold=1000) == "standard"
    assert render.choose_mode(spec, 1001, threshold=1000) == "rasterized"
    spec.mode = "standard"
    assert render.choose_mode(spec, 10**7, threshold=1000) == "standard"
    spec.kind = "hist2d"
    assert render.choose_mode(spec, 10, threshold=1000) == "rasterized"


def test_a_wheel_zoom_reaches_the_server_at_the_next_paint(grid):
    """BokehJS sends a wheel zoom's ranges when the plot leaves its interactive state, lod_timeout
    ms after the last wheel event, checked every lod_interval ms (Bokeh's defaults: 500 and 300,
    which made every zoom wait half a second; measured in Chromium by bench_plot_browser.py)."""
    view = render.RasterFigure(grid, raster(spec_for()))
    assert view.figure.lod_timeout == 0 and view.figure.lod_interval == 0


def test_student_zooms_and_the_server_aggregates_the_new_range(grid):
    spec = spec_for(size=1)
    frames = []
    view = render.RasterFigure(grid, raster(spec), on_update=frames.append)
    assert view.last.rows_in_view == len(grid) == 160_000
    assert np.nansum(view.source.data["value"][0]) == 160_000  # every row, no sample
    view.figure._trigger_event(RangesUpdate(view.figure, x0=0, x1=50, y0=0, y1=25))
    zoomed = view.last
    assert zoomed.x_range == (0, 50) and zoomed.y_range == (0, 25)
    assert zoomed.rows_in_view == 200 * 100  # a quarter of x times a quarter of y
    assert np.nansum(view.source.data["value"][0]) == 20_000
    assert view.source.data["x"] == [0] and view.source.data["dw"] == [50]
    assert len(frames) == 2


def test_zoom_inside_a_served_document_is_coalesced_to_the_latest_range(grid):
    spec = spec_for(size=1)
    view = render.RasterFigure(grid, raster(spec))
    Document().add_root(view.figure)  # no session: applied at once
    view._on_ranges(RangesUpdate(view.figure, x0=10, x1=20, y0=10, y1=20))
    assert view.last.rows_in_view == 40 * 40


def test_in_a_session_a_zoom_sends_the_picture_before_the_hover_numbers_and_the_colour_bar(grid):
    """Inside a Bokeh server session the picture's columns leave in a message of their own; the
    hover's numbers, the colour bar's labels and the app's 'View:' line follow in the next turn
    of the loop, for the same frame (through the hub's proxies the numbers delayed each zoom)."""
    spec = spec_for(size=1)
    seen = []
    view = render.RasterFigure(grid, raster(spec), on_update=seen.append)
    doc = Document()
    doc.add_root(view.figure)
    session = object()
    doc._session_context = lambda: session  # served: callbacks wait for the server's loop, run here by hand
    changes = []
    doc.on_change(lambda event: changes.append(event))
    before = view.source.data["value"][0]
    view._on_ranges(RangesUpdate(view.figure, x0=0, x1=50, y0=0, y1=25))

    def next_tick():
        callbacks = list(doc.session_callbacks)
        assert len(callbacks) == 1
        doc.remove_next_tick_callback(callbacks[0])
        callbacks[0].callback()

    next_tick()  # the zoom: the picture only
    columns = [sorted(e.cols) for e in changes if getattr(e, "cols", None)]
    assert columns == [["dh", "dw", "image", "x", "y"]]
    assert view.source.data["value"][0] is before and len(seen) == 1
    next_tick()  # then the rest, for that frame
    columns = [sorted(e.cols) for e in changes if getattr(e, "cols", None)]
    assert columns == [["dh", "dw", "image", "x", "y"], ["value"]]
    assert np.nansum(view.source.data["value"][0]) == view.last.rows_in_view == 200 * 100
    assert len(seen) == 2 and seen[-1] is view.last and view.colour_bar.ticker.ticks
    assert not doc.session_callbacks


def test_spreading_a_marker_is_exactly_the_sum_or_largest_value_under_its_footprint():
    """:func:`aggregate.spread` against its definition, pixel by pixel, at the edges too and for a
    footprint that is not symmetric (the triangle)."""
    from panel_apps import aggregate
    rng = np.random.default_rng(7)
    counts = rng.poisson(0.4, (23, 31)).astype(np.int64)
    means = np.where(counts > 0, rng.random(counts.shape), np.nan)
    for marker, size in [("triangle", 7), ("circle", 4), ("x", 9), ("square", 3)]:
        mask = aggregate.marker_mask(marker, size)
        r = mask.shape[0] // 2
        added, largest = aggregate.spread(counts, mask, "add"), aggregate.spread(means, mask, "max")
        assert added.dtype == np.int64 and added.shape == counts.shape
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                # the marker of the row at (i - dy + r, j - dx + r) covers (i, j) where mask[dy, dx]
                under = [(i - dy + r, j - dx + r) for dy, dx in zip(*np.nonzero(mask))]
                under = [(a, b) for a, b in under if 0 <= a < counts.shape[0] and 0 <= b < counts.shape[1]]
                assert added[i, j] == sum(counts[a, b] for a, b in under)
                values = [means[a, b] for a, b in under if not np.isnan(means[a, b])]
                assert largest[i, j] == max(values) if values else np.isnan(largest[i, j])


def test_log_axes_are_binned_in_log_space_when_rasterized():
    # one point per decade from 1e0 to 1e5 (x) : on a log axis each lands in its own equal-width band
    frame = pd.DataFrame({"x": 10.0 ** np.arange(6), "y": np.ones(6)})
    spec = spec_for(logx=True, size=1)
    spec.set_columns(["x", "y"])
    agg = render.aggregate(frame, raster(spec), (1.0, 1e6), (0.5, 1.5), 6, 1)
    assert agg.image[0].tolist() == [1, 1, 1, 1, 1, 1]  # linear binning would put 5 of 6 in bin 0
    assert agg.rows_in_view == 6


def test_log_axis_rows_at_or_below_zero_are_counted_not_hidden():
    frame = pd.DataFrame({"x": [-1.0, 0.0, 1.0, 10.0], "y": [1.0, 1.0, 1.0, 1.0]})
    spec = spec_for(logx=True)
    spec.set_columns(["x", "y"])
    assert render.log_hidden_rows(frame, plot_settings(spec, STANDARD)) == 2
    lo, hi = render.data_range(frame["x"].to_numpy(), log=True)
    assert 0 < lo < 1 and hi > 10


def test_colour_by_shows_mean_of_the_column(grid):
    spec = spec_for(color_by="w", size=1)
    agg = render.aggregate(grid, raster(spec), (0, 100), (0, 100), 4, 4)
    assert agg.value_name == "mean w"
    assert np.allclose(agg.image[0], [25, 75, 125, 175])  # w = 2x, mean over each quarter of x


def test_histogram_counts_all_rows_with_log_bins():
    frame = pd.DataFrame({"x": np.concatenate([np.full(10, 2.0), np.full(30, 2000.0), [-5.0]])})
    spec = PlotSpec(kind="hist", bins=3, logx=True)
    spec.set_columns(["x"])
    hist = render.histogram_bins(frame, raster(spec))
    counts = hist.dimension_values("rows")
    edges = hist.interface.coords(hist, "x", edges=True)
    assert counts.tolist() == [10, 0, 30]
    assert np.allclose(np.diff(np.log10(edges)), 1.0)  # equal widths in log space


def test_histogram_rebins_the_visible_range_when_zoomed():
    frame = pd.DataFrame({"x": np.arange(1000, dtype=float)})  # 0 .. 999
    spec = PlotSpec(kind="hist", bins=10)
    spec.set_columns(["x"])
    dm = render.histogram(frame, raster(spec))
    full = dm[()]
    assert full.dimension_values("rows").tolist() == [100] * 10
    dm.event(x_range=(100.0, 199.0))  # what a zoom in the browser sends
    zoomed = dm[()]
    edges = zoomed.interface.coords(zoomed, "x", edges=True)
    assert np.isclose(edges[0], 100) and np.isclose(edges[-1], 199)
    assert zoomed.dimension_values("rows").sum() == 100  # rows 100..199, in 10 finer bins
    assert len(zoomed.dimension_values("rows")) == 10


def test_2d_histogram_is_a_rasterized_view_with_bins_pixels(grid):
    spec = spec_for(kind="hist2d", bins=10)
    view = render.RasterFigure(grid, raster(spec))
    assert view.source.data["value"][0].shape == (10, 10)
    assert np.nansum(view.source.data["value"][0]) == len(grid)
    assert view.figure.select_one({"type": render.HoverTool}) is not None


def test_png_export_has_the_plot_size_and_is_decodable(grid):
    for kind in ("scatter", "hist", "hist2d"):
        spec = spec_for(kind=kind, width=320, height=240, title="T")
        png = view_png(grid, raster(spec), (0, 50), (0, 50) if kind != "hist" else None)
        img = Image.open(io.BytesIO(png))
        img.verify()
        assert img.size == (320, 240) and img.format == "PNG"


@pytest.mark.parametrize("colour_by", ["", "w"])
def test_the_png_is_coloured_pixel_for_pixel_as_the_screen(grid, colour_by):
    """One shading for both: the PNG's picture is the browser's palette entries (what the
    LinearColorMapper maps, entry 0 transparent on the white page) at the plot's alpha over white."""
    from PIL import ImageColor
    spec = spec_for(color_by=colour_by, size=1, alpha=0.8)
    settings = raster(spec)
    view = render.RasterFigure(grid, settings, extent=((0, 60), (0, 40)))
    entries = view.source.data["image"][0]  # what the browser maps: 0 no row, 1..255 the palette
    png = np.asarray(render.shade_image(view.last.image, settings))[::-1]  # PNG rows run top down
    mapper = [np.array(ImageColor.getrgb(c)[:3]) for c in view.mapper.palette]
    on_white = [(255, 255, 255)] + [tuple(np.round(c * 0.8 + 255 * 0.2).astype(int)) for c in mapper]
    assert png.shape == entries.shape + (3,) and (entries > 0).any() and (entries == 0).any()
    assert {tuple(png[i, j]) == on_white[entries[i, j]] for i in range(0, entries.shape[0], 7)
            for j in range(0, entries.shape[1], 5)} == {True}
    ramp = np.asarray(render.colour_ramp(settings, 3, 255))
    assert tuple(ramp[-1, 0]) == on_white[1] and tuple(ramp[0, 0]) == on_white[255]  # lowest at the bottom


def test_standard_plot_uses_the_chosen_marker(grid):
    spec = spec_for(marker="triangle", size=7, color="#ff0000")
    plot = render.standard_plot(grid.head(100), plot_settings(spec, STANDARD))
    opts = plot.opts.get().kwargs
    assert opts["marker"] == "triangle" and opts["color"] == "#ff0000"


def test_line_plots_rasterize_with_and_without_colour(grid):
    frame = pd.DataFrame({"t": np.linspace(0.01, 10, 2000), "q": np.sin(np.linspace(0, 10, 2000))})
    frame["c"] = frame["t"] * 2
    for colour in ("", "c"):
        spec = spec_for(kind="line", color_by=colour)
        spec.set_columns(["t", "q", "c"])
        spec.param.update(x="t", y="q", color_by=colour)
        view = render.RasterFigure(frame, raster(spec))
        assert view.last.rows_in_view == 2000
        view.render((0.0, 5.0), (-2.0, 2.0))
        assert 990 <= view.last.rows_in_view <= 1010


def _dark(img) -> np.ndarray:
    return np.asarray(img.convert("L")) < 60


def _plot_frame(img):
    """(left, top, right, bottom) of the box framing the plot area: the long dark lines of the picture."""
    dark = _dark(img)
    columns = np.flatnonzero(dark.sum(axis=0) > 0.6 * img.height)
    rows = np.flatnonzero(dark.sum(axis=1) > 0.5 * img.width)
    assert len(rows) == 2, f"the plot area's top and bottom lines: {rows}"
    return columns[0], rows[0], columns[1], rows[1], columns


def _tick_marks(line: np.ndarray) -> list[int]:
    """Where the ticks cross a line of pixels just outside an axis (the first pixel of each dark run)."""
    return [i for i in np.flatnonzero(line) if i == 0 or not line[i - 1]]


def _is_nice_step(values: list[float]) -> bool:
    steps = np.diff(values)
    step = steps[0]
    mantissa = step / 10 ** np.floor(np.log10(step))
    return (np.allclose(steps, step, rtol=0.02) and any(np.isclose(mantissa, m, rtol=0.02) for m in (1, 2, 5))
            and np.allclose(np.array(values) / step, np.round(np.array(values) / step), atol=0.05))


@pytest.mark.parametrize("kind, logx, logy", [("scatter", False, False), ("scatter", True, True), ("hist2d", False, False),
                                              ("hist", False, False), ("hist", True, False)])
def test_the_downloaded_png_is_a_finished_figure_with_axes_ticks_labels_and_colour_bar(grid, kind, logx, logy):
    spec = spec_for(kind=kind, width=520, height=380, title="Junction 3", xlabel="time", logx=logx, logy=logy)
    x_range = (0.1, 1000.0) if logx else (0.0, 50.0)
    y_range = None if kind == "hist" else (0.1, 1000.0) if logy else (0.0, 50.0)
    img = Image.open(io.BytesIO(view_png(grid, raster(spec), x_range, y_range))).convert("RGB")
    assert img.size == (520, 380)  # the chosen width x height
    pixels = np.asarray(img)
    assert (pixels[0, 0] == 255).all() and (pixels[-1, -1] == 255).all() and (pixels[:, 0] == 255).all()  # white

    left, top, right, bottom, long_columns = _plot_frame(img)
    dark = _dark(img)
    assert dark[top, left:right + 1].all() and dark[bottom, left:right + 1].all()  # the axes are drawn
    assert dark[top:bottom + 1, left].all() and dark[top:bottom + 1, right].all()
    assert dark[:top - 2, left:right].any()  # the title above the plot
    assert dark[bottom + 25:, left:right].any()  # the x label below the tick labels
    assert dark[top:bottom, :left - 25].any()  # the y label left of the tick labels

    x_ticks = [left + 1 + i for i in _tick_marks(dark[bottom + 3, left + 1:right])]
    y_ticks = [top + 1 + i for i in _tick_marks(dark[top + 1:bottom, left - 3])]
    assert len(x_ticks) >= 3 and len(y_ticks) >= 3
    assert not dark[bottom + 3, left + 1:right].sum() > len(x_ticks)  # ticks are one pixel wide marks

    def value(pixel, start, end, lo, hi, log):
        f = (pixel - start) / (end - start)
        return 10 ** (np.log10(lo) + f * (np.log10(hi) - np.log10(lo))) if log else lo + f * (hi - lo)

    xs = [value(p, left + 1, right - 1, *x_range, logx) for p in x_ticks]
    if logx:  # ticks at powers of ten
        assert np.allclose(np.log10(xs), np.round(np.log10(xs)), atol=0.01), xs
        assert len(xs) == 5
    else:
        assert _is_nice_step(xs), xs
    if y_range is not None:
        ys = [value(p, bottom - 1, top + 1, *y_range, logy) for p in y_ticks]
        assert np.allclose(np.log10(ys), np.round(np.log10(ys)), atol=0.01) if logy else _is_nice_step(ys[::-1]), ys

    bar_lines = [c for c in long_columns if c > right + 1]
    if kind == "hist":  # a 1-D histogram has no colour bar
        assert not bar_lines
    else:  # the colour bar: a framed ramp from light (few rows) to the full colour, with ticks
        assert len(bar_lines) >= 2
        ramp = pixels[top + 2:bottom - 1, bar_lines[0] + 2].astype(int).sum(axis=1)
        assert ramp[0] < ramp[-1] - 100 and not (ramp > 740).any()  # darker at the top, never white
        assert _tick_marks(dark[top + 1:bottom, bar_lines[1] + 3])


@pytest.mark.parametrize("colour_by, empty", [("", "0"), ("w", "–")])
def test_hovering_an_empty_pixel_never_says_nan(grid, colour_by, empty):
    """An empty pixel holds NaN in the image; the hover says '0' rows (or '–' for a mean), and
    numbers are shown as numbers. The tooltip's JavaScript formatter runs here in Node."""
    import json
    import shutil
    import subprocess

    from bokeh.models import CustomJSHover
    spec = spec_for(color_by=colour_by)
    view = render.RasterFigure(grid, raster(spec))
    nothing = render.RasterFigure(grid, raster(spec), extent=((-50, 0), (-50, 0)))
    assert np.isnan(nothing.last.image).all()  # a view with no row in it: every pixel is NaN in the image
    sent = nothing.source.data["value"][0]  # what the hover reads: NaN means, 0 counts (one byte each)
    assert np.isnan(sent).all() if colour_by else (sent == 0).all() and sent.dtype == np.uint8
    hover = view.figure.select_one({"type": render.HoverTool})
    shown = dict(hover.tooltips)
    assert shown["rows" if not colour_by else "mean w"] == "@value{custom}"
    assert all("@value" not in v and "@image" not in v or "{custom}" in v for v in shown.values())  # no raw pixel value anywhere
    formatter = hover.formatters["@value"]
    assert isinstance(formatter, CustomJSHover)
    node = shutil.which("node")
    assert node, "node (installed with configurable-http-proxy) runs the tooltip's formatter"
    script = (f"const format = new Function('value', 'format', 'special_vars', {json.dumps(formatter.code)});\n"
              "console.log(JSON.stringify([NaN, null, undefined, 1234.5, 0.000123456789, 0].map(v => format(v, '', {}))));")
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [empty, empty, empty, "1,234.5", "0.000123457", "0"]


@pytest.mark.parametrize("size", [1, 4, 9])
def test_the_marker_size_is_its_width_in_pixels_in_standard_mode(grid, size):
    """'Size' says pixels: Bokeh draws a marker of that many pixels across (hvPlot's size is an area)."""
    import holoviews as hv
    from bokeh.models import Scatter
    spec = spec_for(size=size, marker="square")
    figure = hv.render(render.standard_plot(grid.head(50), plot_settings(spec, STANDARD)), backend="bokeh")
    sizes = {float(g.size) for g in figure.select({"type": Scatter})}
    assert sizes == {float(size)}, sizes

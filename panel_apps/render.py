"""Turn a prepared table and a :class:`~panel_apps.spec.PlotSpec` into a plot.

Two modes, never a silent sample:

* **standard** — every row becomes a Bokeh glyph, built with hvPlot (full Bokeh interactivity);
* **rasterized** — Datashader aggregates all rows on the server into an image the size of the plot;
  every zoom or pan (Bokeh ``RangesUpdate``) re-aggregates the new range. Log axes are binned in
  log space by Datashader itself (``x_axis_type='log'``), because HoloViews' ``rasterize`` ignores
  them (holoviews#2195). The image keeps the raw counts/means so hover shows values; colours are
  mapped with Bokeh's equal-histogram mapper (what Datashader's ``eq_hist`` does on the server).

Histograms bin all rows with numpy and re-bin the visible range on zoom; 2-D histograms are a rasterized view with ``bins`` x ``bins``
pixels. Rows that a log axis cannot show (values <= 0) are counted and reported, not dropped quietly.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable

import datashader as ds
import datashader.transfer_functions as tf
import numpy as np
import pandas as pd
from bokeh.events import RangesUpdate
from bokeh.models import ColorBar, ColumnDataSource, EqHistColorMapper, HoverTool, Range1d
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from . import text

STANDARD, RASTERIZED = "standard", "rasterized"
_MARGIN_X, _MARGIN_Y = 70, 60  # room Bokeh takes for axes/title, so one pixel is one bin
# Datashader's compile caches are not safe to fill from two threads at once (seen as garbled
# dimension errors while the warm-up thread runs): one aggregation at a time per process.
_DATASHADER = threading.RLock()
_WARMING: threading.Thread | None = None


def choose_mode(spec, n_rows: int, threshold: int) -> str:
    """The mode a plot is drawn in: 'standard' or 'rasterized' (histograms count as standard)."""
    if spec.kind == "hist":
        return STANDARD
    if spec.kind == "hist2d":
        return RASTERIZED
    if spec.mode == "auto":
        return RASTERIZED if n_rows > threshold else STANDARD
    return spec.mode


def warm_up() -> None:
    """Compile Datashader's numba kernels now, so the first real plot is not 1 s slower."""
    with _DATASHADER:
        _warm_up()


def _warm_up() -> None:
    frame = _as_xyc(pd.DataFrame({"a": np.linspace(1, 2, 64), "b": np.linspace(1, 2, 64)}), "a", "b", "a")
    # each (glyph, reduction, axis types) is its own ~1 s compile: warm the common ones, the rest
    # compile on first use. Float ranges, like real ones: numba specializes on argument types.
    for xt, yt in (("linear", "linear"), ("log", "linear"), ("linear", "log"), ("log", "log")):
        canvas = ds.Canvas(8, 8, x_range=(1.0, 2.0), y_range=(1.0, 2.0), x_axis_type=xt, y_axis_type=yt)
        agg = canvas.points(frame, "x", "y", ds.count())
        if xt == yt == "linear":
            canvas.points(frame, "x", "y", ds.mean("c"))
            canvas.line(frame, "x", "y", ds.count())
    tf.shade(agg, how="eq_hist")
    tf.spread(agg.astype(np.float32), px=1, how="add")
    tf.spread(agg.astype(np.float32), px=1, how="max")


def log_hidden_rows(frame: pd.DataFrame, spec) -> int:
    """Rows a log axis cannot show (value <= 0 or not finite on a log axis)."""
    hidden = np.zeros(len(frame), dtype=bool)
    if spec.logx and spec.x in frame:
        hidden |= ~(frame[spec.x].to_numpy() > 0)
    if spec.logy and spec.kind != "hist" and spec.y in frame:
        hidden |= ~(frame[spec.y].to_numpy() > 0)
    return int(hidden.sum())


def data_range(values: np.ndarray, log: bool) -> tuple[float, float]:
    """Finite (and, for log axes, positive) extent of ``values``, padded so edge points show."""
    v = values[np.isfinite(values)]
    if log:
        v = v[v > 0]
    if v.size == 0:
        raise ValueError("no finite values" + (" above zero for the log axis" if log else ""))
    lo, hi = float(v.min()), float(v.max())
    if log:
        llo, lhi = math.log10(lo), math.log10(hi)
        pad = (lhi - llo) * 0.02 or 0.5
        return 10 ** (llo - pad), 10 ** (lhi + pad)
    pad = (hi - lo) * 0.02 or (abs(lo) * 0.1 or 1.0)
    return lo - pad, hi + pad


@dataclass
class Aggregate:
    """One rasterized frame: the image of counts or means, where it is, and how many rows it holds."""

    image: np.ndarray  # float32, NaN where no row falls
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    rows_in_view: int
    value_name: str


def aggregate(frame: pd.DataFrame, spec, x_range, y_range, width: int, height: int) -> Aggregate:
    """Aggregate all rows of ``frame`` that fall in the ranges into a ``width`` x ``height`` image."""
    with _DATASHADER:
        return _aggregate(frame, spec, x_range, y_range, width, height)


def _aggregate(frame: pd.DataFrame, spec, x_range, y_range, width: int, height: int) -> Aggregate:
    canvas = ds.Canvas(plot_width=max(1, int(width)), plot_height=max(1, int(height)),
                       x_range=tuple(x_range), y_range=tuple(y_range),
                       x_axis_type="log" if spec.logx else "linear", y_axis_type="log" if spec.logy else "linear")
    colour = spec.color_by if spec.kind in ("scatter", "line") and spec.color_by else None
    glyph = canvas.line if spec.kind == "line" else canvas.points
    frame = _as_xyc(frame, spec.x, spec.y, colour)
    agg = glyph(frame, "x", "y", agg=ds.mean("c") if colour else ds.count())
    counts = agg if not colour else glyph(frame, "x", "y", agg=ds.count())
    rows = int(counts.values.sum()) if spec.kind != "line" else _rows_inside(frame, x_range, y_range)
    image = agg.values.astype(np.float32)
    px = int(spec.size // 4) if spec.kind == "scatter" else 0
    if px:
        image = tf.spread(agg.astype(np.float32), px=min(px, 6), how="max" if colour else "add").values
    if not colour:
        image[image == 0] = np.nan
    return Aggregate(image, tuple(map(float, x_range)), tuple(map(float, y_range)), rows,
                     f"mean {colour}" if colour else "rows")


def _as_xyc(frame: pd.DataFrame, x: str, y: str, colour: str | None) -> pd.DataFrame:
    """The plotted columns under fixed names, as float64 (no copy for float64 columns).

    Datashader compiles a numba kernel per column *name* and dtype (~0.4 s each on this machine);
    fixed names and one dtype let the start-up warm-up cover every plot a student can make.
    """
    cols = {"x": x, "y": y, **({"c": colour} if colour else {})}
    return pd.DataFrame({k: frame[v].to_numpy(dtype=np.float64, copy=False) for k, v in cols.items()}, copy=False)


def shade_image(image: np.ndarray, spec):
    """An RGB PIL image of an aggregate, coloured like the browser view (eq_hist, white background)."""
    import xarray as xr
    arr = xr.DataArray(np.nan_to_num(image, nan=0.0), dims=("y", "x"))
    with _DATASHADER:
        shaded = tf.shade(arr, cmap=palette_for(spec), how="eq_hist", min_alpha=int(255 * 0.4 * spec.alpha) + 40)
        return tf.set_background(shaded, "white").to_pil().convert("RGB")


def start_warm_up() -> None:
    """Run :func:`warm_up` once per process in a background thread (the page shows meanwhile)."""
    global _WARMING
    with _DATASHADER:
        if _WARMING is not None:
            return
        _WARMING = threading.Thread(target=warm_up, name="numba-warm-up", daemon=True)
        _WARMING.start()


def _rows_inside(frame: pd.DataFrame, x_range, y_range) -> int:
    """Rows inside the view (a line's pixel counts say how many segments cross, not rows)."""
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    return int(((x >= x_range[0]) & (x <= x_range[1]) & (y >= y_range[0]) & (y <= y_range[1])).sum())


def palette_for(spec) -> list[str]:
    """Viridis when colouring by a column, else light-to-full shades of the chosen colour."""
    if spec.color_by and spec.kind in ("scatter", "line"):
        return list(Viridis256)
    r, g, b = (int(spec.color[i:i + 2], 16) for i in (1, 3, 5))
    steps = 256
    return ["#%02x%02x%02x" % tuple(int(255 - (255 - c) * (0.25 + 0.75 * i / (steps - 1))) for c in (r, g, b))
            for i in range(steps)]


class RasterFigure:
    """A Bokeh figure whose image is re-aggregated on the server after every zoom or pan.

    ``on_update(aggregate)`` is called after each new frame (the app shows what is in view).
    """

    def __init__(self, frame: pd.DataFrame, spec, on_update: Callable[[Aggregate], None] | None = None):
        self.frame, self.spec, self.on_update = frame, spec, on_update
        self.bins = (spec.bins, spec.bins) if spec.kind == "hist2d" else None
        x0 = data_range(frame[spec.x].to_numpy(), spec.logx)
        y0 = data_range(frame[spec.y].to_numpy(), spec.logy)
        self.source = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
        fig = figure(width=spec.width, height=spec.height, title=text.canvas(spec.title) or None,
                     x_axis_type="log" if spec.logx else "linear", y_axis_type="log" if spec.logy else "linear",
                     x_range=Range1d(*x0), y_range=Range1d(*y0),
                     tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom")
        fig.xaxis.axis_label = text.canvas(spec.xlabel or spec.x)
        fig.yaxis.axis_label = text.canvas(spec.ylabel or spec.y)
        self.mapper = EqHistColorMapper(palette=palette_for(spec), nan_color=(0, 0, 0, 0))
        image = fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                          color_mapper=self.mapper, global_alpha=spec.alpha)
        self.value_name = f"mean {spec.color_by}" if spec.color_by and spec.kind in ("scatter", "line") else "rows"
        fig.add_tools(HoverTool(renderers=[image], tooltips=[  # labels are set as text: no escaping needed
            (spec.xlabel or spec.x, "$x{0.[000]e}"), (spec.ylabel or spec.y, "$y{0.[000]e}"),
            (self.value_name, "@image{0,0.[000]}")]))
        if spec.color_by and spec.kind in ("scatter", "line"):
            fig.add_layout(ColorBar(color_mapper=self.mapper, title=text.canvas(spec.color_by)), "right")
        fig.on_event(RangesUpdate, self._on_ranges)
        self.figure = fig
        self.last: Aggregate | None = None
        self._pending = None
        self.render(x0, y0)

    def canvas_size(self) -> tuple[int, int]:
        if self.bins:
            return self.bins
        return max(50, self.spec.width - _MARGIN_X), max(50, self.spec.height - _MARGIN_Y)

    def render(self, x_range, y_range) -> Aggregate:
        """Aggregate the given ranges and push the image to the browser."""
        agg = aggregate(self.frame, self.spec, x_range, y_range, *self.canvas_size())
        (xa, xb), (ya, yb) = agg.x_range, agg.y_range
        self.source.data = {"image": [agg.image], "x": [xa], "y": [ya], "dw": [xb - xa], "dh": [yb - ya]}
        self.last = agg
        if self.on_update:
            self.on_update(agg)
        return agg

    def _on_ranges(self, event: RangesUpdate) -> None:
        if None in (event.x0, event.x1, event.y0, event.y1):
            return
        self._pending = ((event.x0, event.x1), (event.y0, event.y1))
        doc = self.figure.document
        if doc is None or getattr(doc, "session_context", None) is None:
            self._flush()
        else:  # wheel zooms fire bursts of events: aggregate only the latest range
            doc.add_next_tick_callback(self._flush)

    def _flush(self) -> None:
        if self._pending is None:
            return
        ranges, self._pending = self._pending, None
        (xa, xb), (ya, yb) = ranges
        if self.spec.logx and xa <= 0:
            xa = xb / 1e6
        if self.spec.logy and ya <= 0:
            ya = yb / 1e6
        if xb > xa and yb > ya:
            self.render((xa, xb), (ya, yb))


def histogram(frame: pd.DataFrame, spec):
    """A histogram of all rows of ``spec.x`` that re-bins the visible range on zoom and pan."""
    import holoviews as hv
    histogram_bins(frame, spec)  # fail now, readably, rather than inside the first render
    return hv.DynamicMap(lambda x_range: histogram_bins(frame, spec, x_range),
                         streams=[hv.streams.RangeX()])


def histogram_bins(frame: pd.DataFrame, spec, x_range=None):
    """``spec.bins`` bins over ``x_range`` (default: all the data), log-spaced on a log x axis."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  registers the backend .opts() validates against
    values = frame[spec.x].to_numpy()
    values = values[np.isfinite(values)]
    if spec.logx:
        values = values[values > 0]
    if values.size == 0:
        raise ValueError(f"Column '{spec.x}' has no values to count" + (" above zero" if spec.logx else "") + ".")
    lo, hi = float(values.min()), float(values.max())
    if x_range is not None and x_range[1] > x_range[0]:
        lo, hi = max(lo, float(x_range[0])), min(hi, float(x_range[1]))
        if spec.logx and lo <= 0:
            lo = hi / 1e6
        if hi <= lo:  # zoomed into a gap between values
            lo, hi = float(x_range[0]), float(x_range[1])
    if hi == lo:
        hi = lo + (abs(lo) or 1.0) * 1e-6
    edges = np.geomspace(lo, hi, spec.bins + 1) if spec.logx else np.linspace(lo, hi, spec.bins + 1)
    counts, edges = np.histogram(values, bins=edges)
    return hv.Histogram((edges, counts), kdims=[spec.x], vdims=["rows"]).opts(
        color=spec.color, alpha=spec.alpha, width=spec.width, height=spec.height, logx=spec.logx,
        logy=spec.logy, title=text.holoviews_title(spec.title), xlabel=text.canvas(spec.xlabel or spec.x),
        ylabel=text.canvas(spec.ylabel or "rows"),
        tools=["hover"], framewise=False, backend="bokeh")


def standard_plot(frame: pd.DataFrame, spec):
    """Every row as a Bokeh glyph, via hvPlot (scatter or line)."""
    import hvplot.pandas  # noqa: F401  registers .hvplot
    common = dict(x=spec.x, y=spec.y, width=spec.width, height=spec.height, logx=spec.logx, logy=spec.logy,
                  title=text.holoviews_title(spec.title), xlabel=text.canvas(spec.xlabel or spec.x),
                  ylabel=text.canvas(spec.ylabel or spec.y), alpha=spec.alpha, responsive=False)
    if spec.kind == "line":
        opts = dict(color=spec.color, line_width=max(1.0, spec.size / 2))
        if spec.color_by:
            return frame.hvplot.scatter(c=spec.color_by, cmap="viridis", marker="circle", size=spec.size,
                                        clabel=text.canvas(spec.color_by), **common)
        return frame.hvplot.line(**common, **opts)
    colour = (dict(c=spec.color_by, cmap="viridis", colorbar=True, clabel=text.canvas(spec.color_by)) if spec.color_by
              else dict(color=spec.color))
    return frame.hvplot.scatter(marker=spec.marker, size=spec.size, hover_cols=[], **colour, **common)

"""Draw a prepared table as the settings of :func:`panel_apps.settings.plot_settings` describe.

Two modes, never a silent sample:

* **standard** — every row becomes a Bokeh glyph, built with hvPlot (full Bokeh interactivity);
* **rasterized** — Datashader aggregates all rows on the server into an image the size of the plot;
  every zoom or pan (Bokeh ``RangesUpdate``) re-aggregates the new range. Log axes are binned in
  log space by Datashader itself (``x_axis_type='log'``), because HoloViews' ``rasterize`` ignores
  them (holoviews#2195). The image keeps the raw counts/means so hover shows values; colours are
  mapped with Bokeh's equal-histogram mapper (what Datashader's ``eq_hist`` does on the server).

Histograms bin all rows with numpy and re-bin the visible range on zoom; 2-D histograms are a rasterized view with ``bins`` x ``bins``
pixels. Rows that a log axis cannot show (values <= 0) are counted and reported, not dropped quietly.

Every function here takes the settings dict, never the spec: the notebook exporter writes code
from the same dict, so the plot on screen and the exported code agree by construction.
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
from bokeh.plotting import figure

from . import text
from .settings import PALETTE_STEPS, RASTERIZED, STANDARD, hvplot_keywords

__all__ = ["RASTERIZED", "STANDARD", "Aggregate", "RasterFigure", "aggregate", "choose_mode", "histogram",
           "histogram_bins", "log_hidden_rows", "palette", "shade_image", "standard_plot", "start_warm_up"]
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


def log_hidden_rows(frame: pd.DataFrame, settings: dict) -> int:
    """Rows a log axis cannot show (value <= 0 or not finite on a log axis)."""
    hidden = np.zeros(len(frame), dtype=bool)
    opts = settings["options"]
    if opts["logx"] and settings["x"] in frame:
        hidden |= ~(frame[settings["x"]].to_numpy() > 0)
    if opts["logy"] and settings["y"] is not None and settings["y"] in frame:
        hidden |= ~(frame[settings["y"]].to_numpy() > 0)
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


def aggregate(frame: pd.DataFrame, settings: dict, x_range, y_range, width: int, height: int) -> Aggregate:
    """Aggregate all rows of ``frame`` that fall in the ranges into a ``width`` x ``height`` image."""
    with _DATASHADER:
        return _aggregate(frame, settings, x_range, y_range, width, height)


def _aggregate(frame: pd.DataFrame, settings: dict, x_range, y_range, width: int, height: int) -> Aggregate:
    opts = settings["options"]
    canvas = ds.Canvas(plot_width=max(1, int(width)), plot_height=max(1, int(height)),
                       x_range=tuple(x_range), y_range=tuple(y_range),
                       x_axis_type="log" if opts["logx"] else "linear", y_axis_type="log" if opts["logy"] else "linear")
    mean = settings["aggregator"] == "mean"
    glyph = canvas.line if settings["method"] == "line" else canvas.points
    frame = _as_xyc(frame, settings["x"], settings["y"], settings["c"] if mean else None)
    agg = glyph(frame, "x", "y", agg=ds.mean("c") if mean else ds.count())
    counts = agg if not mean else glyph(frame, "x", "y", agg=ds.count())
    rows = int(counts.values.sum()) if settings["method"] != "line" else _rows_inside(frame, x_range, y_range)
    image = agg.values.astype(np.float32)
    if settings["spread"]:
        image = tf.spread(agg.astype(np.float32), px=settings["spread"], how="max" if mean else "add").values
    if not mean:
        image[image == 0] = np.nan
    return Aggregate(image, tuple(map(float, x_range)), tuple(map(float, y_range)), rows,
                     settings["hover"]["value"] if settings["hover"] else "rows")


def _as_xyc(frame: pd.DataFrame, x: str, y: str, colour: str | None) -> pd.DataFrame:
    """The plotted columns under fixed names, as float64 (no copy for float64 columns).

    Datashader compiles a numba kernel per column *name* and dtype (~0.4 s each on this machine);
    fixed names and one dtype let the start-up warm-up cover every plot a student can make.
    """
    cols = {"x": x, "y": y, **({"c": colour} if colour else {})}
    return pd.DataFrame({k: frame[v].to_numpy(dtype=np.float64, copy=False) for k, v in cols.items()}, copy=False)


def shade_image(image: np.ndarray, settings: dict):
    """An RGB PIL image of an aggregate, coloured like the browser view (eq_hist, white background)."""
    import xarray as xr
    opts = settings["options"]
    arr = xr.DataArray(np.nan_to_num(image, nan=0.0), dims=("y", "x"))
    with _DATASHADER:
        shaded = tf.shade(arr, cmap=palette(opts["cmap"]), how=opts["cnorm"],
                          min_alpha=int(255 * 0.4 * opts["alpha"]) + 40)
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


def palette(cmap) -> list[str]:
    """The colours of a colour map (a name or a list), resolved as HoloViews resolves it for the notebook."""
    from holoviews.plotting.util import process_cmap
    return process_cmap(cmap, PALETTE_STEPS)


class RasterFigure:
    """A Bokeh figure whose image is re-aggregated on the server after every zoom or pan.

    Built from the settings of a rasterized view: size, axes (log axes are binned in log space),
    title, labels, colour map and its normalisation, bins of a 2-D histogram, hover labels.
    ``on_update(aggregate)`` is called after each new frame (the app shows what is in view).
    """

    def __init__(self, frame: pd.DataFrame, settings: dict, on_update: Callable[[Aggregate], None] | None = None):
        self.frame, self.settings, self.on_update = frame, settings, on_update
        opts = settings["options"]
        self.logx, self.logy = opts["logx"], opts["logy"]
        self.bins = (settings["bins"], settings["bins"]) if settings["bins"] else None
        x0 = data_range(frame[settings["x"]].to_numpy(), self.logx)
        y0 = data_range(frame[settings["y"]].to_numpy(), self.logy)
        self.source = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
        fig = figure(width=opts["width"], height=opts["height"], title=text.shown_title(opts["title"]) or None,
                     x_axis_type="log" if self.logx else "linear", y_axis_type="log" if self.logy else "linear",
                     x_range=Range1d(*x0), y_range=Range1d(*y0),
                     tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom")
        fig.xaxis.axis_label = opts["xlabel"]
        fig.yaxis.axis_label = opts["ylabel"]
        if opts["cnorm"] != "eq_hist":
            raise ValueError(f"Unsupported colour normalisation {opts['cnorm']!r}.")
        self.mapper = EqHistColorMapper(palette=palette(opts["cmap"]), nan_color=(0, 0, 0, 0))
        image = fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                          color_mapper=self.mapper, global_alpha=opts["alpha"])
        hover = settings["hover"]
        self.value_name = hover["value"]
        if "hover" in opts["tools"]:
            fig.add_tools(HoverTool(renderers=[image], tooltips=[  # labels are set as text: no escaping needed
                (hover["x"], "$x{0.[000]e}"), (hover["y"], "$y{0.[000]e}"), (hover["value"], "@image{0,0.[000]}")]))
        if opts["colorbar"]:
            fig.add_layout(ColorBar(color_mapper=self.mapper, title=opts.get("clabel")), "right")
        fig.on_event(RangesUpdate, self._on_ranges)
        self.figure = fig
        self.last: Aggregate | None = None
        self._pending = None
        self.render(x0, y0)

    def canvas_size(self) -> tuple[int, int]:
        """Pixels of the aggregate: the bins of a 2-D histogram, else the plot's inner size."""
        if self.bins:
            return self.bins
        opts = self.settings["options"]
        return max(50, opts["width"] - _MARGIN_X), max(50, opts["height"] - _MARGIN_Y)

    def render(self, x_range, y_range) -> Aggregate:
        """Aggregate the given ranges and push the image to the browser."""
        agg = aggregate(self.frame, self.settings, x_range, y_range, *self.canvas_size())
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
        if self.logx and xa <= 0:
            xa = xb / 1e6
        if self.logy and ya <= 0:
            ya = yb / 1e6
        if xb > xa and yb > ya:
            self.render((xa, xb), (ya, yb))


def histogram(frame: pd.DataFrame, settings: dict):
    """A histogram of all rows of the settings' ``x`` that re-bins the visible range on zoom and pan."""
    import holoviews as hv
    histogram_bins(frame, settings)  # fail now, readably, rather than inside the first render
    return hv.DynamicMap(lambda x_range: histogram_bins(frame, settings, x_range),
                         streams=[hv.streams.RangeX()])


def histogram_bins(frame: pd.DataFrame, settings: dict, x_range=None):
    """``bins`` bins over ``x_range`` (default: all the data), log-spaced on a log x axis.

    On a log axis the bins span the values above zero (the notebook's ``bin_range`` says the same).
    """
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  registers the backend .opts() validates against
    x, bins, opts = settings["x"], settings["bins"], settings["options"]
    logx = opts["logx"]
    values = frame[x].to_numpy()
    values = values[np.isfinite(values)]
    if logx:
        values = values[values > 0]
    if values.size == 0:
        raise ValueError(f"Column '{x}' has no values to count" + (" above zero" if logx else "") + ".")
    lo, hi = float(values.min()), float(values.max())
    if x_range is not None and x_range[1] > x_range[0]:
        lo, hi = max(lo, float(x_range[0])), min(hi, float(x_range[1]))
        if logx and lo <= 0:
            lo = hi / 1e6
        if hi <= lo:  # zoomed into a gap between values
            lo, hi = float(x_range[0]), float(x_range[1])
    if hi == lo:
        hi = lo + (abs(lo) or 1.0) * 1e-6
    edges = np.geomspace(lo, hi, bins + 1) if logx else np.linspace(lo, hi, bins + 1)
    counts, edges = np.histogram(values, bins=edges)
    return hv.Histogram((edges, counts), kdims=[x], vdims=["rows"]).opts(**opts, backend="bokeh")


def standard_plot(frame: pd.DataFrame, settings: dict):
    """Every row as a Bokeh glyph: the ``hvplot.<method>`` call the settings describe."""
    import hvplot.pandas  # noqa: F401  registers .hvplot
    return getattr(frame.hvplot, settings["method"])(**hvplot_keywords(settings))

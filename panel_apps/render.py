"""Draw a prepared table as the settings of :func:`panel_apps.settings.plot_settings` describe.

Two modes, never a silent sample:

* **standard** — every row becomes a Bokeh glyph, built with hvPlot (full Bokeh interactivity);
* **rasterized** — all rows are aggregated on the server into an image the size of the plot
  (:mod:`panel_apps.aggregate`: Datashader, or its numpy twin while Datashader's kernels are not
  compiled yet); every zoom or pan (Bokeh ``RangesUpdate``) re-aggregates the new range. Log axes
  are binned in log space, because HoloViews' ``rasterize`` ignores them (holoviews#2195). The
  browser gets the frame coloured on the server (:mod:`panel_apps.shading`, equal-histogram) and
  only paints it; the raw counts/means travel beside the colours when hover is on, so hover shows
  values; the colour bar's ticks follow each frame.
  Markers keep their size (in pixels) and shape: each row's pixel is spread over the marker.

Axis ranges come from the cache's column statistics when the table carries them
(``frame.attrs["column_stats"]``), so the first frame of millions of rows makes no pass over them.
Histograms bin all rows with numpy and re-bin the visible range on zoom; 2-D histograms are a rasterized view with ``bins`` x ``bins``
pixels. Rows that a log axis cannot show (values <= 0) are counted and reported, not dropped quietly.

Every function here takes the settings dict, never the spec: the notebook exporter writes code
from the same dict, so the plot on screen and the exported code agree by construction.
Datashader and HoloViews are imported when first needed, not with this module.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from bokeh.events import RangesUpdate
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJSHover,
    FixedTicker,
    HoverTool,
    LinearColorMapper,
    Range1d,
)
from bokeh.plotting import figure

from . import aggregate as engine
from . import shading, text
from .settings import PALETTE_STEPS, RASTERIZED, STANDARD, hvplot_keywords

__all__ = ["RASTERIZED", "STANDARD", "Aggregate", "RasterFigure", "aggregate", "choose_mode", "finish", "grid_of",
           "histogram", "histogram_bins", "log_hidden_rows", "padded", "palette", "shade_image", "colour_ramp", "standard_plot",
           "start_warm_up"]
_MARGIN_X, _MARGIN_Y = 70, 60  # room Bokeh takes for axes/title, so one pixel is one bin
_COLOUR_BAR_WIDTH = 90  # the colour bar and its labels, right of the plot
LOD_MS = 0  # ms after a wheel event until a zoom's ranges go to the server (Bokeh: 500, then 300 more)


def hover_values(image: np.ndarray, settings: dict) -> np.ndarray:
    """The numbers the hover shows, in as few bytes as they need (they travel with every frame):
    counts as the smallest unsigned integers that hold them (0 where no row falls), means as
    float32 (NaN where no row falls)."""
    if settings["aggregator"] == "mean":
        return image.astype(np.float32, copy=False)
    counts = np.nan_to_num(image, nan=0.0)
    top = float(counts.max(initial=0))
    kind = next(t for t in (np.uint8, np.uint16, np.uint32, np.float64) if t is np.float64 or top <= np.iinfo(t).max)
    return counts.astype(kind)


def choose_mode(spec, n_rows: int, threshold: int) -> str:
    """The mode a plot is drawn in: 'standard' or 'rasterized' (histograms count as standard)."""
    if spec.kind == "hist":
        return STANDARD
    if spec.kind == "hist2d":
        return RASTERIZED
    if spec.mode == "auto":
        return RASTERIZED if n_rows > threshold else STANDARD
    return spec.mode


def log_hidden_rows(frame: pd.DataFrame, settings: dict) -> int:
    """Rows a log axis cannot show (value <= 0 or not finite on a log axis)."""
    opts = settings["options"]
    stats = frame.attrs.get("column_stats", {})
    if all(not opts[f"log{a}"] or settings[a] is None or (settings[a] in stats and stats[settings[a]].lo > 0
                                                          and stats[settings[a]].not_finite == 0)
           for a in ("x", "y")):
        return 0  # known from the cache's statistics: no pass over the rows
    hidden = np.zeros(len(frame), dtype=bool)
    if opts["logx"] and settings["x"] in frame:
        hidden |= ~(frame[settings["x"]].to_numpy() > 0)
    if opts["logy"] and settings["y"] is not None and settings["y"] in frame:
        hidden |= ~(frame[settings["y"]].to_numpy() > 0)
    return int(hidden.sum())


def column_range(frame: pd.DataFrame, column: str, log: bool) -> tuple[float, float]:
    """The padded extent of ``column``: from the cache's statistics when the table has them."""
    stats = frame.attrs.get("column_stats", {}).get(column)
    if stats is not None:
        lo, hi = (stats.lo_positive if log else stats.lo), stats.hi
        if math.isnan(lo) or math.isnan(hi) or (log and hi <= 0):
            raise ValueError("no finite values" + (" above zero for the log axis" if log else ""))
        return padded(lo, hi, log)
    return data_range(frame[column].to_numpy(), log)


def data_range(values: np.ndarray, log: bool) -> tuple[float, float]:
    """Finite (and, for log axes, positive) extent of ``values``, padded so edge points show."""
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(values) & (values > 0) if log else np.isfinite(values)
        if not keep.any():
            raise ValueError("no finite values" + (" above zero for the log axis" if log else ""))
        lo = float(np.min(values, where=keep, initial=np.inf))
        hi = float(np.max(values, where=keep, initial=-np.inf))
    return padded(lo, hi, log)


def padded(lo: float, hi: float, log: bool) -> tuple[float, float]:
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
    """Aggregate all rows of ``frame`` that fall in the ranges into a ``width`` x ``height`` image.

    Never waits for a compiler: see :mod:`panel_apps.aggregate`.
    """
    grid = grid_of(settings, x_range, y_range, width, height)
    mean = settings["aggregator"] == "mean"
    x, y = _floats(frame, settings["x"]), _floats(frame, settings["y"])
    c = _floats(frame, settings["c"]) if mean else None
    line = settings["method"] == "line"
    counts, means = (engine.lines if line else engine.points)(x, y, grid, c)
    rows = int(counts.sum()) if not line else _rows_inside(x, y, x_range, y_range)
    return finish(counts, means, rows, settings, x_range, y_range)


def grid_of(settings: dict, x_range, y_range, width: int, height: int) -> engine.Grid:
    """Where the pixels of a frame are, from the settings' log axes."""
    opts = settings["options"]
    return engine.Grid(max(1, int(width)), max(1, int(height)), tuple(map(float, x_range)), tuple(map(float, y_range)),
                       bool(opts["logx"]), bool(opts["logy"]))


def finish(counts: np.ndarray, means: np.ndarray | None, rows: int, settings: dict, x_range, y_range) -> Aggregate:
    """The frame shown from counts (and means) however they were aggregated (here or on Dask workers):
    marker spread, empty pixels transparent."""
    mean = settings["aggregator"] == "mean"
    image = means if mean else counts
    if settings["spread"]:
        image = engine.spread(image, engine.marker_mask(settings.get("marker", "circle"), settings["spread"]),
                              "max" if mean else "add")
    image = image.astype(np.float32)
    if not mean:
        image[image == 0] = np.nan
    return Aggregate(image, tuple(map(float, x_range)), tuple(map(float, y_range)), rows,
                     settings["hover"]["value"] if settings["hover"] else "rows")


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The column as float64 values: a view of the cache's mapping for cached columns (no copy)."""
    return frame[column].to_numpy(dtype=np.float64, copy=False)


def shade_image(image: np.ndarray, settings: dict):
    """An RGB PIL image of an aggregate coloured as the browser shows it: the palette entries of
    :func:`shading.shade` (eq_hist by rank), the plot's alpha over white, empty pixels white; the
    lowest y at the bottom."""
    from PIL import Image
    return Image.fromarray(palette_rgb(settings)[shading.shade(image).index[::-1]], "RGB")


def colour_ramp(settings: dict, width: int, height: int):
    """The colour bar's colours as an RGB PIL image: the lowest value's at the bottom, the highest's at the top."""
    from PIL import Image
    entries = 1 + np.minimum((np.linspace(0.0, 1.0, height) * shading.COLOURS).astype(np.intp), shading.COLOURS - 1)
    return Image.fromarray(palette_rgb(settings)[np.repeat(entries[::-1, None], width, axis=1)], "RGB")


def palette_rgb(settings: dict) -> np.ndarray:
    """The screen's palette as RGB rows (uint8): entry 0 (no row) white, entries 1..255 the colour
    map blended with white at the plot's alpha, as the browser paints them on the white page."""
    from PIL import ImageColor
    opts = settings["options"]
    colours = np.array([ImageColor.getrgb(c)[:3] for c in palette(opts["cmap"], shading.COLOURS)], dtype=np.float64)
    alpha = float(opts["alpha"])
    return np.vstack([[255.0, 255.0, 255.0], colours * alpha + 255.0 * (1 - alpha)]).round().astype(np.uint8)


def start_warm_up() -> None:
    """Compile Datashader's kernels in a background thread, once per process (see :mod:`panel_apps.aggregate`)."""
    engine.start_warm_up()


def _rows_inside(x: np.ndarray, y: np.ndarray, x_range, y_range) -> int:
    """Rows inside the view (a line's pixel counts say how many segments cross, not rows)."""
    inside = 0
    for start in range(0, len(x), engine.CHUNK_ROWS):
        xs, ys = x[start:start + engine.CHUNK_ROWS], y[start:start + engine.CHUNK_ROWS]
        inside += int(((xs >= x_range[0]) & (xs <= x_range[1]) & (ys >= y_range[0]) & (ys <= y_range[1])).sum())
    return inside


def palette(cmap, steps: int = PALETTE_STEPS) -> list[str]:
    """The colours of a colour map (a name or a list), resolved as HoloViews resolves it for the notebook."""
    from holoviews.plotting.util import process_cmap
    return process_cmap(cmap, steps)


class RasterFigure:
    """A Bokeh figure whose image is re-aggregated on the server after every zoom or pan.

    Built from the settings of a rasterized view: size, axes (log axes are binned in log space),
    title, labels, colour map and its normalisation, bins of a 2-D histogram, hover labels.
    ``on_update(aggregate)`` is called after each new frame (the app shows what is in view).
    """

    def __init__(self, frame: pd.DataFrame | None, settings: dict, on_update: Callable[[Aggregate], None] | None = None,
                 *, aggregator: Callable[..., Aggregate] | None = None, extent=None):
        """``aggregator(frame, settings, x_range, y_range, width, height)`` makes each frame (default:
        :func:`aggregate`, in this process); ``extent`` ``(x_range, y_range)`` is the first view when the
        table is not at hand (aggregated elsewhere), else it comes from the table."""
        self.frame, self.settings, self.on_update = frame, settings, on_update
        self.aggregator = aggregator or aggregate
        opts = settings["options"]
        self.logx, self.logy = opts["logx"], opts["logy"]
        self.bins = (settings["bins"], settings["bins"]) if settings["bins"] else None
        x0, y0 = extent if extent is not None else (column_range(frame, settings["x"], self.logx),
                                                     column_range(frame, settings["y"], self.logy))
        self.hover = "hover" in opts["tools"]
        # the frame's colours (uint32 RGBA, shaded here) and, for the hover, its numbers
        self.source = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": [],
                                        **({"value": []} if self.hover else {})})
        fig = figure(width=opts["width"], height=opts["height"], title=text.shown_title(opts["title"]) or None,
                     x_axis_type="log" if self.logx else "linear", y_axis_type="log" if self.logy else "linear",
                     # the browser's ranges are not echoed back property by property: the server
                     # learns a zoom from its RangesUpdate event (one message instead of three)
                     x_range=Range1d(*x0, syncable=False), y_range=Range1d(*y0, syncable=False),
                     tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom",
                     # BokehJS reports a wheel zoom's new ranges only once the plot leaves its
                     # interactive (level-of-detail) state, lod_timeout ms after the last wheel
                     # event (default 500): with 0 the ranges go at the first paint after each
                     # wheel notch (a spin sends several; the server draws only the latest)
                     lod_timeout=LOD_MS, lod_interval=LOD_MS)
        fig.xaxis.axis_label = opts["xlabel"]
        fig.yaxis.axis_label = opts["ylabel"]
        if opts["cnorm"] != "eq_hist":
            raise ValueError(f"Unsupported colour normalisation {opts['cnorm']!r}.")
        # the picture holds palette entries 1..255 (0: no row, transparent), chosen here by rank
        self.mapper = LinearColorMapper(palette=palette(opts["cmap"], shading.COLOURS), low=0.5,
                                        high=shading.COLOURS + 0.5, low_color=(0, 0, 0, 0))
        image = fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                          color_mapper=self.mapper, global_alpha=opts["alpha"])
        hover = settings["hover"]
        self.value_name = hover["value"]
        if self.hover:
            # an empty pixel holds no row: '0' rows, or '–' for a mean, never 'NaN'
            empty = "'–'" if settings["aggregator"] == "mean" else "'0'"
            value = CustomJSHover(code=f"return Number.isFinite(value) ? value.toLocaleString('en', "
                                       f"{{maximumSignificantDigits: 6}}) : {empty};")
            fig.add_tools(HoverTool(renderers=[image], formatters={"@value": value}, tooltips=[
                # labels are set as text: no escaping needed
                (hover["x"], "$x{0.[000]e}"), (hover["y"], "$y{0.[000]e}"), (hover["value"], "@value{custom}")]))
        self.colour_bar = None
        if opts["colorbar"]:  # the palette from the lowest value to the highest, ticks at their ranks
            self.colour_bar = ColorBar(color_mapper=self.mapper, title=opts.get("clabel"), ticker=FixedTicker(ticks=[]),
                                       major_label_overrides={})
            fig.add_layout(self.colour_bar, "right")
        fig.on_event(RangesUpdate, self._on_ranges)
        self.figure = fig
        self.last: Aggregate | None = None
        self._pending = None
        self._zoomed = False
        self.render(x0, y0)

    def canvas_size(self) -> tuple[int, int]:
        """Pixels of the aggregate: the bins of a 2-D histogram, else the plot's inner size."""
        if self.bins:
            return self.bins
        opts = self.settings["options"]
        bar = _COLOUR_BAR_WIDTH if opts["colorbar"] else 0
        return max(50, opts["width"] - _MARGIN_X - bar), max(50, opts["height"] - _MARGIN_Y)

    def show_rows(self, frame: pd.DataFrame) -> Aggregate:
        """Draw ``frame`` instead (more rows of a file being converted); the view keeps the
        student's zoom, else follows the data's new extent."""
        self.frame = frame
        if not self._zoomed:
            x0 = column_range(frame, self.settings["x"], self.logx)
            y0 = column_range(frame, self.settings["y"], self.logy)
            self.figure.x_range.update(start=x0[0], end=x0[1])
            self.figure.y_range.update(start=y0[0], end=y0[1])
            self._zoomed = False
            return self.render(x0, y0)
        return self.render(self.last.x_range, self.last.y_range)

    def render(self, x_range, y_range) -> Aggregate:
        """Aggregate the given ranges and push the image to the browser."""
        agg = self.aggregator(self.frame, self.settings, x_range, y_range, *self.canvas_size())
        (xa, xb), (ya, yb) = agg.x_range, agg.y_range
        shaded = shading.shade(agg.image, bar_pixels=self.canvas_size()[1])
        picture = {"image": [shaded.index], "x": [xa], "y": [ya], "dw": [xb - xa], "dh": [yb - ya]}
        self.last = agg
        doc = self._session_document()
        if doc is None or (self.hover and len(self.source.data["value"]) == 0):  # not served, or the first frame
            self.source.data.update({**picture, **({"value": [hover_values(agg.image, self.settings)]}
                                                   if self.hover else {})})
            self._after_frame(agg, shaded, hover=False)
        else:
            # only the picture's columns: its message is all a zoom waits for. The hover's numbers
            # (as many bytes as the picture, or twice), the colour bar's labels and what the app
            # says of the view follow in the next turn of the server's loop: through the hub's
            # two proxies they delayed each zoom by ~10 ms
            self.source.data.update(picture)
            doc.add_next_tick_callback(partial(self._after_frame, agg, shaded))
        return agg

    def _after_frame(self, agg: Aggregate, shaded, hover: bool = True) -> None:
        if agg is not self.last:  # a newer frame came first: its own call follows
            return
        if hover and self.hover:
            self.source.data.update({"value": [hover_values(agg.image, self.settings)]})
        ticks = [0.5 + t * shading.COLOURS for t in shaded.ticks]  # rank -> place on the mapper's scale
        if self.colour_bar is not None and list(self.colour_bar.ticker.ticks) != ticks:
            self.colour_bar.major_label_overrides = dict(zip(ticks, shaded.labels))  # labels first
            self.colour_bar.ticker.ticks = ticks
        if self.on_update:
            self.on_update(agg)

    def _session_document(self):
        """The figure's document when a Bokeh server session shows it, else None."""
        doc = self.figure.document
        return doc if doc is not None and getattr(doc, "session_context", None) is not None else None

    def _on_ranges(self, event: RangesUpdate) -> None:
        if None in (event.x0, event.x1, event.y0, event.y1):
            return
        self._pending = ((event.x0, event.x1), (event.y0, event.y1))
        self._zoomed = True
        doc = self._session_document()
        if doc is None:
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
    import holoviews.plotting.bokeh  # registers the backend .opts() validates against
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

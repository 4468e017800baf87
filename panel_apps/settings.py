"""One description of a plot, for the app that draws it and for the notebook that reproduces it.

:func:`plot_settings` turns a :class:`~panel_apps.spec.PlotSpec` and the mode the app drew in
into a plain ``dict``: the hvPlot method, the plotted columns, how rows become the picture
(bins, server-side aggregation) and the look (the keyword arguments hvPlot and HoloViews'
``.opts()`` take). :mod:`panel_apps.render` draws from this dict and :mod:`panel_apps.export`
writes it as code with ``repr()``; neither reads the spec's look on its own, so what is drawn
and what is exported cannot drift apart (``tests/test_panel_settings.py`` checks it).

Text a student typed enters the settings already made safe for where HoloViews shows it
(:func:`panel_apps.text.holoviews_title`, :func:`panel_apps.text.canvas`), so the notebook shows
titles and labels exactly as the app does.
"""
from __future__ import annotations

from . import text

STANDARD, RASTERIZED = "standard", "rasterized"
COLOUR_MAP = "viridis"  # for a column mapped to colour
PALETTE_STEPS = 256


class Gradient(list):
    """The colours from ``start`` to ``end`` in ``steps`` shades (a list HoloViews and Bokeh take).

    Its ``repr()`` is the HoloViews call that makes the same list, so the notebook carries one
    readable line instead of 256 colours.
    """

    def __init__(self, start: str, end: str, steps: int = PALETTE_STEPS):
        from holoviews.plotting.util import linear_gradient
        super().__init__(linear_gradient(start, end, steps))
        self.start, self.end, self.steps = start, end, steps

    def __repr__(self) -> str:
        return f"hv.plotting.util.linear_gradient({self.start!r}, {self.end!r}, {self.steps!r})"


def shades_of(colour: str) -> Gradient:
    """Light-to-full shades of ``colour`` (``#rrggbb``): a single-colour plot's colour map."""
    light = "#" + "".join(f"{int(255 - (255 - int(colour[i:i + 2], 16)) * 0.25):02x}" for i in (1, 3, 5))
    return Gradient(light, colour)


def plot_settings(spec, mode: str) -> dict:
    """The plot ``spec`` describes, drawn in ``mode`` ('standard' or 'rasterized'), as one dict.

    Keys:

    * ``method`` — ``"scatter"``, ``"line"``, ``"hist"`` (hvPlot methods) or ``"hist2d"``;
    * ``x``, ``y`` — the plotted columns (``y`` is None for histograms); ``c`` — the column mapped
      to colour, or None;
    * ``bins`` — bins per axis for histograms, else None;
    * ``rasterize`` — True when all rows are aggregated on the server into an image (Datashader);
      ``aggregator`` — then what each pixel holds: ``"count"`` of rows or ``"mean"`` of ``c``;
    * ``spread`` — the marker size in pixels a rasterized point is widened to (0: one pixel),
      ``marker`` — the shape it is widened with (the app's own view; hvPlot has no fixed spread,
      so the notebook shows single pixels);
    * ``hover`` — the hover labels of a rasterized view: x, y and the pixel value, as text;
    * ``options`` — the look: keyword arguments given unchanged to hvPlot or ``.opts()``.

    Histograms are always drawn as such and 2-D histograms always rasterized, whatever ``mode``.
    """
    kind = spec.kind
    rasterize = kind == "hist2d" or (kind != "hist" and mode == RASTERIZED)
    colour_by = spec.color_by if kind in ("scatter", "line") and spec.color_by else None
    ylabel = spec.ylabel or (spec.y if kind != "hist" else "rows")
    look = dict(width=spec.width, height=spec.height, title=text.holoviews_title(spec.title),
                xlabel=text.canvas(spec.xlabel or spec.x), ylabel=text.canvas(ylabel), alpha=spec.alpha,
                logx=spec.logx, logy=spec.logy)
    settings = dict(method=kind, x=spec.x, y=spec.y if kind != "hist" else None, c=colour_by, bins=None,
                    rasterize=rasterize, aggregator=None, spread=0, hover=None, options=look)
    if kind == "hist":
        settings.update(bins=spec.bins, options=dict(color=spec.color, **look, tools=["hover"], framewise=False))
    elif rasterize:
        colour = dict(cmap=COLOUR_MAP, colorbar=True, clabel=text.canvas(colour_by)) if colour_by \
            else dict(cmap=shades_of(spec.color), colorbar=True, clabel="rows")
        settings.update(aggregator="mean" if colour_by else "count",
                        bins=spec.bins if kind == "hist2d" else None,
                        spread=int(spec.size) if kind == "scatter" and spec.size > 1 else 0,
                        marker=spec.marker if kind == "scatter" else "circle",
                        hover=dict(x=spec.xlabel or spec.x, y=spec.ylabel or spec.y,
                                   value=f"mean {colour_by}" if colour_by else "rows"),
                        options=dict(**colour, cnorm="eq_hist", tools=["hover"], **look))
    elif kind == "line" and not colour_by:
        settings["options"] = dict(color=spec.color, line_width=max(1.0, spec.size / 2), responsive=False, **look)
    else:  # scatter, or a line coloured by a column: Bokeh colours a line with one colour only, so points
        colour = dict(cmap=COLOUR_MAP, colorbar=True, clabel=text.canvas(colour_by)) if colour_by \
            else dict(color=spec.color)
        settings.update(method="scatter", options=dict(  # hvPlot's size is an area: the square of the pixels
            marker=spec.marker if kind == "scatter" else "circle", size=spec.size ** 2, hover_cols=[], **colour,
            responsive=False, **look))
    return settings


def hvplot_keywords(settings: dict) -> dict:
    """The keyword arguments of the ``hvplot.<method>`` call the settings describe (not histograms)."""
    call = {"x": settings["x"], "y": settings["y"]}
    if settings["c"]:
        call["c"] = settings["c"]
    if settings["rasterize"]:
        call.update(rasterize=True, aggregator=settings["aggregator"])
    return {**call, **settings["options"]}

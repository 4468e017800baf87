"""The plot specification: everything a student chose, as one ``param.Parameterized`` object.

The app generates its widgets from these parameters (``pn.Param``), the renderer reads them,
"Save configuration" writes them as JSON and "Open as notebook" turns them into hvPlot code.
Column selectors start empty; :meth:`PlotSpec.set_columns` fills them once a file is previewed.
"""
from __future__ import annotations

import json

import param

KINDS = ["scatter", "line", "hist", "hist2d"]
MODES = ["auto", "standard", "rasterized"]
MARKERS = ["circle", "square", "triangle", "diamond", "inverted_triangle", "cross", "x", "star", "hex"]
SPEC_VERSION = 1


class PlotSpec(param.Parameterized):
    """What to plot and how; JSON-serializable (see :meth:`to_json` / :meth:`from_json`)."""

    # --- data source (relative to one allowed root; resolved again through paths on load)
    root = param.String(default="", doc="Allowed folder the file lives in.")
    path = param.String(default="", doc="File path relative to the folder.")
    reader = param.Dict(default={}, doc="Text reader options (delimiter, header, comment, skiprows) or dataset/tree name.")
    rename = param.Dict(default={}, doc="Column renames, original name -> new name.")
    derived = param.Dict(default={}, doc="Derived columns, new name -> formula (safe expression).")
    filters = param.List(default=[], item_type=dict, doc="Row filters: [{'column','min','max'}]; None = open.")

    # --- the plot
    kind = param.Selector(default="scatter", objects=KINDS, doc="Plot kind.")
    x = param.Selector(default=None, objects=[], check_on_set=False, allow_None=True, doc="Column on the x axis.")
    y = param.Selector(default=None, objects=[], check_on_set=False, allow_None=True, doc="Column on the y axis (not used by histograms).")
    color_by = param.Selector(default="", objects=[""], check_on_set=False, label="Colour by", doc="Column mapped to colour (optional).")
    marker = param.Selector(default="circle", objects=MARKERS, doc="Marker type (standard mode).")
    size = param.Number(default=4, bounds=(1, 40), step=1, doc="Marker size in pixels (spreads points when rasterized).")
    color = param.Color(default="#1f77b4", label="Colour", doc="Marker/line/bar colour.")
    alpha = param.Magnitude(default=0.7, doc="Opacity.")
    bins = param.Integer(default=100, bounds=(2, 2000), doc="Bins per axis for histograms.")
    width = param.Integer(default=800, bounds=(200, 3000), doc="Plot width in pixels.")
    height = param.Integer(default=500, bounds=(150, 3000), doc="Plot height in pixels.")
    title = param.String(default="", doc="Plot title.")
    xlabel = param.String(default="", label="X label", doc="X axis label (default: column name).")
    ylabel = param.String(default="", label="Y label", doc="Y axis label (default: column name).")
    logx = param.Boolean(default=False, label="Log x", doc="Logarithmic x axis.")
    logy = param.Boolean(default=False, label="Log y", doc="Logarithmic y axis.")
    mode = param.Selector(default="auto", objects=MODES,
                          doc="auto: rasterize above the admin threshold; standard: every point as a Bokeh glyph; "
                              "rasterized: Datashader on the server.")

    PLOT_PARAMS = ("kind", "x", "y", "color_by", "marker", "size", "color", "alpha", "bins", "width", "height",
                   "title", "xlabel", "ylabel", "logx", "logy", "mode")

    def set_columns(self, columns: list[str]) -> None:
        """Offer ``columns`` in the column selectors, keeping current choices that still exist."""
        columns = list(columns)
        x = self.x if self.x in columns else (columns[0] if columns else None)
        y = self.y if self.y in columns else (columns[1] if len(columns) > 1 else x)
        colour = self.color_by if self.color_by in columns else ""
        # choices first, then the values: a rendered Select whose value is not among new options
        # jumps to the first option and pushes it back here, so the values must come last
        self.param.x.objects = columns
        self.param.y.objects = columns
        self.param.color_by.objects = [""] + columns
        self.param.update(x=x, y=y, color_by=colour)

    def needs_y(self) -> bool:
        return self.kind != "hist"

    def used_columns(self) -> list[str]:
        """Columns the plot reads (after renames and derived columns)."""
        cols = [self.x] + ([self.y] if self.needs_y() else [])
        if self.color_by and self.kind in ("scatter", "line"):
            cols.append(self.color_by)
        cols += [f["column"] for f in self.filters]
        return list(dict.fromkeys(c for c in cols if c))

    def to_dict(self) -> dict:
        """Plain, JSON-ready values of every parameter except ``name``."""
        data = json.loads(self.param.serialize_parameters(subset=[p for p in self.param if p != "name"]))
        return {"version": SPEC_VERSION, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> "PlotSpec":
        """A spec from :meth:`to_json` output; unknown keys are ignored, bad values raise ValueError."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"This is not a saved plot configuration (invalid JSON: {exc.msg}).") from None
        if not isinstance(data, dict) or data.get("version") != SPEC_VERSION:
            raise ValueError("This is not a saved plot configuration of this app (missing or unknown version).")
        spec = cls()
        spec.update_from_dict(data)
        return spec

    def update_from_dict(self, data: dict) -> None:
        """Set parameters from a :meth:`to_dict` mapping, all at once (one re-render)."""
        known = {k: v for k, v in data.items() if k in self.param and k != "name"}
        try:
            values = self.param.deserialize_parameters(json.dumps(known))
            for col in ("x", "y", "color_by"):
                if col in values and values[col] is not None:
                    objs = getattr(self.param, col).objects
                    if values[col] not in objs:
                        objs.append(values[col])
            self.param.update(**values)
        except Exception as exc:  # param raises ValueError/TypeError with technical text
            raise ValueError(f"The saved configuration has an invalid value: {exc}") from None

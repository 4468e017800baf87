"""The plot specification: everything a student chose, as one ``param.Parameterized`` object.

The app generates its widgets from these parameters (``pn.Param``), "Save configuration" writes
them as JSON, and :func:`panel_apps.settings.plot_settings` turns them into the one description of
the plot that both the renderer and "Open as notebook" use.
Column selectors start empty; :meth:`PlotSpec.set_columns` fills them once a file is previewed.

What a configuration may contain is decided here, once: :meth:`PlotSpec.check` applies the rules
(names are identifiers, renames unique, formulas parse against the columns before them, filters
name a column and hold numbers, reader options have their types) and both the app's buttons and
:meth:`PlotSpec.from_json` call it, so a hand-edited saved file can hold nothing a student could
not have typed. Each :class:`SpecError` names the field that broke a rule.
"""
from __future__ import annotations

import json
import keyword
import math
import unicodedata
from copy import deepcopy
from dataclasses import dataclass

import param

from .expressions import FormulaError, parse
from .loaders import TEXT_DELIMITERS

KINDS = ["scatter", "line", "hist", "hist2d"]
MODES = ["auto", "standard", "rasterized"]
MARKERS = ["circle", "square", "triangle", "diamond", "inverted_triangle", "cross", "x", "star", "hex"]
SPEC_VERSION = 1
MAX_NAME_LENGTH = 100
READER_OPTIONS = ("delimiter", "header", "names", "comment", "skiprows", "skip_bad_lines", "dataset", "tree")


class SpecError(ValueError):
    """A configuration value breaks a rule; :attr:`field` is the configuration key concerned."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FileColumns:
    """The columns a file offers: all of them in file order, and those holding numbers."""

    names: tuple[str, ...]
    numeric: tuple[str, ...]

    @property
    def text(self) -> tuple[str, ...]:
        return tuple(c for c in self.names if c not in self.numeric)


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

    # ------------------------------------------------------------- the rules, for widgets and saved files
    def check(self, columns: FileColumns | None = None, **candidate) -> dict:
        """Check the configuration (with ``candidate`` values replacing the current ones).

        Without ``columns`` only what can be known without the file is checked (types, names,
        formula syntax); with them, every column a rename, formula, filter or axis names must
        exist. Returns the checked values of the fields in ``candidate``; raises :class:`SpecError`.
        """
        values = {k: candidate.get(k, getattr(self, k)) for k in
                  ("reader", "rename", "derived", "filters", "x", "y", "color_by")}
        check_reader(values["reader"])
        finals = check_rename(values["rename"], columns)
        numeric = None if columns is None else [finals[c] for c in columns.numeric]
        text = () if columns is None else [finals[c] for c in columns.text]
        check_derived(values["derived"], numeric, text, finals=None if columns is None else list(finals.values()))
        available = None if numeric is None else numeric + list(values["derived"])
        check_filters(values["filters"], available)
        for field in ("x", "y", "color_by"):
            check_column_choice(field, values[field], available)
        return {k: values[k] for k in candidate}

    def available_columns(self, columns: FileColumns) -> list[str]:
        """Numeric columns after renames, then derived ones: what the column selectors offer."""
        return [self.rename.get(c) or c for c in columns.numeric] + list(self.derived)

    def snapshot(self) -> "PlotSpec":
        """A detached copy, for work in another thread while the student keeps changing the plot."""
        copy = PlotSpec()
        copy.param.update(**{k: deepcopy(getattr(self, k)) for k in self.param if k != "name"})
        return copy

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
        try:
            spec.check()
        except SpecError as exc:
            raise ValueError(f"The saved configuration has an invalid value for '{exc.field}': {exc}") from None
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


# ----------------------------------------------------------------- the rules themselves
def check_name(field: str, what: str, name) -> str:
    """``name`` if it can be a column name in formulas and notebook code, else :class:`SpecError`."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) \
            or unicodedata.normalize("NFKC", name) != name or len(name) > MAX_NAME_LENGTH:
        raise SpecError(field, f"{what} {name!r} is not allowed: use letters, digits and '_' (not first), "
                               f"at most {MAX_NAME_LENGTH} characters, and no Python keyword.")
    return name


def check_rename(rename, columns: FileColumns | None) -> dict[str, str]:
    """The final name of every file column (all of them when ``columns`` is known)."""
    if not isinstance(rename, dict):
        raise SpecError("rename", "Renames must map column names to new names.")
    for old, new in rename.items():
        check_name("rename", f"The new name of column {old!r},", new)
        if columns is not None and old not in columns.names:
            raise SpecError("rename", f"There is no column {old!r} to rename in this file.")
    names = list(columns.names) if columns is not None else list(rename)
    finals = {c: rename.get(c) or c for c in names}
    seen: dict[str, str] = {}
    for old, new in finals.items():
        if new in seen:
            raise SpecError("rename", f"Columns {seen[new]!r} and {old!r} would have the same name {new!r}; "
                                      "choose different names.")
        seen[new] = old
    return finals


def check_derived(derived, numeric: list[str] | None, text=(), finals: list[str] | None = None) -> None:
    """Derived columns: identifier names, new ones, formulas over the columns before them."""
    if not isinstance(derived, dict):
        raise SpecError("derived", "Derived columns must map new names to formulas.")
    earlier = list(numeric) if numeric is not None else None
    for name, formula in derived.items():
        check_name("derived", "New column name", name)
        if finals is not None and name in finals:
            raise SpecError("derived", f"{name!r} is already a column of the file; give the new column another name.")
        if not isinstance(formula, str):
            raise SpecError("derived", f"The formula of column {name!r} must be text.")
        try:
            parse(formula, earlier, text)
        except FormulaError as exc:
            raise SpecError("derived", f"Formula of new column {name!r}: {exc}") from None
        if earlier is not None:
            earlier.append(name)


def check_filters(filters, available: list[str] | None) -> None:
    """Filters: ``{"column", "min", "max"}`` with a known column and finite numbers (or None)."""
    if not isinstance(filters, list):
        raise SpecError("filters", "Filters must be a list.")
    for f in filters:
        if not isinstance(f, dict) or not isinstance(f.get("column"), str) or set(f) - {"column", "min", "max"}:
            raise SpecError("filters", "Each filter needs a column name and a min and/or max, nothing else.")
        column = f["column"]
        if available is not None and column not in available:
            raise SpecError("filters", f"Filter: there is no column {column!r} to filter on.")
        for bound in ("min", "max"):
            value = f.get(bound)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise SpecError("filters", f"Filter on {column!r}: {bound} must be a finite number or empty, "
                                           f"not {value!r}.")


def check_column_choice(field: str, value, available: list[str] | None) -> None:
    """x / y / colour: a column name (or nothing), one that exists once the file is known."""
    if value in (None, ""):
        return
    if not isinstance(value, str):
        raise SpecError(field, f"'{field}' must be a column name, not {value!r}.")
    if available is not None and value not in available:
        raise SpecError(field, f"'{field}': there is no column {value!r} in this file.")


def check_reader(reader) -> dict:
    """Reader options: the text layout the app can produce, or an HDF5 dataset / ROOT tree name."""
    if not isinstance(reader, dict):
        raise SpecError("reader", "Reader options must be a mapping.")
    for key, value in reader.items():
        if key not in READER_OPTIONS:
            raise SpecError("reader", f"Unknown reader option {key!r}; known: {', '.join(READER_OPTIONS)}.")
        if key == "delimiter" and value not in TEXT_DELIMITERS:
            raise SpecError("reader", f"Reader option 'delimiter' must be one of "
                                      f"{', '.join(repr(d) for d in TEXT_DELIMITERS)}, not {value!r}.")
        if key in ("header", "skip_bad_lines") and not isinstance(value, bool):
            raise SpecError("reader", f"Reader option '{key}' must be true or false, not {value!r}.")
        if key == "names" and not (isinstance(value, list) and all(isinstance(n, str) for n in value)
                                   and len(set(value)) == len(value)):
            raise SpecError("reader", "Reader option 'names' must be a list of different column names.")
        if key == "comment" and value is not None and not (isinstance(value, str) and len(value) == 1
                                                           and value.isprintable() and not value.isspace()):
            raise SpecError("reader", f"Reader option 'comment' must be one character or empty, not {value!r}.")
        if key == "skiprows" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise SpecError("reader", f"Reader option 'skiprows' must be a whole number of at least 0, "
                                      f"not {value!r}.")
        if key in ("dataset", "tree") and not isinstance(value, str):
            raise SpecError("reader", f"Reader option {key!r} must be a name, not {value!r}.")
    return reader

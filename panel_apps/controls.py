"""The app's controls by topic: each is a ``param.Parameterized`` the widgets are generated from.

* :class:`FileChoice` — "1. Choose a file": folder, file or typed path, separator, header row,
  table of an HDF5/ROOT file, and the Preview button;
* :class:`ColumnNames` — a text field per number column of the previewed file, to rename it;
* :class:`Extras` — what the student types for a derived column or a row filter;
* :class:`Exports` — whether there is a plot to export, "Open as notebook", an uploaded
  configuration (the PNG and configuration downloads call the app back).

Buttons are ``param.Event`` parameters; :class:`~panel_apps.app.PlotApp` depends on them. The
plot itself is :class:`~panel_apps.spec.PlotSpec`, whose widgets are generated with ``pn.Param``.
Labels of fields named after columns are set as text by Bokeh, so markup in a name shows as typed.
"""
from __future__ import annotations

from typing import Callable

import panel as pn
import param

DELIMITERS = {"auto": "auto", "whitespace": None, "comma": ",", "tab": "\t", "semicolon": ";"}
MAX_RENAME_FIELDS = 64  # a file with thousands of columns must not make thousands of text fields


def checkbox(parameter: param.Parameter) -> pn.widgets.CheckBoxGroup:
    """A checkbox for a Boolean parameter whose label text toggles it too.

    Bokeh's own Checkbox shows its label beside the box, not in a ``<label>``: a click on the text
    does nothing and the box has no accessible name. A one-option CheckBoxGroup is a real
    ``<label>``; it is kept in step with the parameter both ways.
    """
    owner, name, label = parameter.owner, parameter.name, parameter.label
    box = pn.widgets.CheckBoxGroup(options=[label], value=[label] if getattr(owner, name) else [], inline=True)
    box.param.watch(lambda event: setattr(owner, name, label in event.new), "value")
    owner.param.watch(lambda event: setattr(box, "value", [label] if event.new else []), name)
    return box


class FileChoice(pn.viewable.Viewer):
    """Which file to open and how to read it; the student's overrides of what is sniffed."""

    root = param.Selector(default=None, objects=[], label="Folder", doc="Allowed folder the file is in.")
    file = param.Selector(default="", objects=[""], label="File", doc="A data file found in the folder.")
    path = param.String(default="", label="…or type a path inside the folder",
                        doc="Path relative to the folder (follows the chosen file).")
    delimiter = param.Selector(default="auto", objects=list(DELIMITERS), label="Separator",
                               doc="Column separator of a text file; auto: sniffed.")
    header = param.Selector(default="auto", objects=["auto", "yes", "no"], label="Header row",
                            doc="Whether a text file's first row names the columns; auto: sniffed.")
    skip_bad_lines = param.Boolean(default=False, label="Skip bad lines",
                                   doc="Skip (and count) lines with too many values or text in a number column.")
    tables = param.List(default=[], item_type=str, doc="Tables (HDF5) or trees (ROOT) in the previewed file.")
    table = param.Selector(default=None, objects=[], allow_None=True, label="Table / tree",
                           doc="Which of the file's tables or trees to read.")
    refresh = param.Event(label="↻", doc="List the folder's files again.")
    preview = param.Event(label="Preview", doc="Open the file and show its first rows.")

    def __init__(self, roots: dict[str, str], **params):
        super().__init__(**params)
        self.param.root.objects = dict(roots)  # shown by name ('Home', a data folder's name), values are paths
        self.root = next(iter(roots.values()))

    def folder_name(self, root: str) -> str:
        """The name the folder selector shows for ``root``."""
        return next((name for name, path in self.param.root.names.items() if path == root), str(root))

    def offer_files(self, files: list[str]) -> None:
        """Offer ``files`` (paths inside the folder) in the file selector."""
        self.param.file.objects = [""] + list(files)
        if self.file not in self.param.file.objects:
            self.file = ""

    @param.depends("file", watch=True)
    def _path_follows_file(self) -> None:
        self.path = self.file or ""

    @param.depends("tables", watch=True)
    def _offer_tables(self) -> None:
        if not self.tables:  # the selector is hidden; a rendered Select given no options loops in Panel 1.9
            return
        self.param.table.objects = list(self.tables)
        if self.table not in self.tables:
            self.table = self.tables[0]

    def __panel__(self) -> pn.viewable.Viewable:
        select = pn.widgets.Select.from_param
        return pn.Column(
            select(self.param.root),
            pn.Row(select(self.param.file, width=250), pn.widgets.Button.from_param(self.param.refresh, width=40)),
            pn.widgets.TextInput.from_param(self.param.path, placeholder="data/run1.txt"),
            pn.Row(select(self.param.delimiter, width=140), select(self.param.header, width=140)),
            checkbox(self.param.skip_bad_lines),
            select(self.param.table, visible=self.param.tables.rx.bool()),
            pn.widgets.Button.from_param(self.param.preview, color="primary"),
        )


class ColumnNames(pn.viewable.Viewer):
    """A text field per number column of the previewed file (``column_<i>``, labelled by the name).

    Made for each previewed file with :meth:`of`; :meth:`renames` says what the student changed.
    """

    apply = param.Event(label="Apply column names", doc="Use the typed names from now on.")

    @classmethod
    def of(cls, columns: list[str]) -> "ColumnNames":
        """Fields for the first :data:`MAX_RENAME_FIELDS` of ``columns``, each holding the current name."""
        fields = {f"column_{i}": param.String(default=c, label=c, doc=f"New name of column {c!r}.")
                  for i, c in enumerate(columns[:MAX_RENAME_FIELDS])}
        # a class per file: parameters are declared on a class, and each session has its own
        return param.parameterized_class("FileColumnNames", fields, bases=cls)()

    def fields(self) -> list[str]:
        """The parameter names of the text fields, in column order."""
        return [p for p in self.param if p.startswith("column_")]

    def renames(self) -> dict[str, str]:
        """Original name -> typed name, for the fields whose text differs from the column's name."""
        typed = {self.param[p].label: getattr(self, p).strip() for p in self.fields()}
        return {old: new for old, new in typed.items() if new and new != old}

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(pn.FlexBox(*[pn.widgets.TextInput.from_param(self.param[p], width=150)
                                      for p in self.fields()]),
                         pn.widgets.Button.from_param(self.param.apply))


class Extras(pn.viewable.Viewer):
    """'Derived columns and filters': what is being typed, and the list of those in use."""

    column_name = param.String(default="", label="New column name", doc="Name of the derived column.")
    formula = param.String(default="", label="Formula", doc="Formula over the columns, e.g. sqrt(q1**2 + q2**2).")
    add_column = param.Event(label="Add column")
    filter_column = param.Selector(default=None, objects=[], allow_None=True, label="Filter column")
    filter_min = param.String(default="", label="min", doc="Lowest value kept (empty: no limit).")
    filter_max = param.String(default="", label="max", doc="Highest value kept (empty: no limit).")
    add_filter = param.Event(label="Add filter")
    clear = param.Event(label="Clear filters and columns")
    in_use = param.String(default="", doc="HTML list of the derived columns and filters in use (panel_apps.text).")
    error = param.String(default="", doc="HTML sentence on the last formula or filter that failed, shown beside them.")

    def offer_columns(self, columns: list[str]) -> None:
        """Offer ``columns`` to filter on, keeping the chosen one if it is still there."""
        self.param.filter_column.objects = list(columns)
        if self.filter_column not in columns:
            self.filter_column = columns[0] if columns else None

    def __panel__(self) -> pn.viewable.Viewable:
        text = pn.widgets.TextInput.from_param
        button = pn.widgets.Button.from_param
        return pn.Column(
            text(self.param.column_name, placeholder="r"),
            text(self.param.formula, placeholder="sqrt(q1**2 + q2**2)"),
            button(self.param.add_column),
            pn.pane.HTML(self.param.error, visible=self.param.error.rx.bool(), css_classes=["nh-field-error"],
                         styles={"color": "#721c24", "background": "#f8d7da", "padding": "0 8px"}),
            pn.widgets.Select.from_param(self.param.filter_column),
            pn.Row(text(self.param.filter_min, placeholder="none", width=100),
                   text(self.param.filter_max, placeholder="none", width=100)),
            button(self.param.add_filter),
            button(self.param.clear),
            pn.pane.HTML(self.param.in_use, css_classes=["nh-extras"]),
        )


class Exports(pn.viewable.Viewer):
    """'Save and export': enabled once a plot is drawn; the downloads call the app for their file."""

    ready = param.Boolean(default=False, doc="A plot is drawn: there is something to export.")
    notebook = param.Event(label="Open as notebook", doc="Write a notebook reproducing the plot.")
    configuration = param.Bytes(default=None, label="Load configuration",
                                doc="A saved configuration the student uploaded.")

    def __init__(self, png_file: Callable, config_file: Callable, **params):
        super().__init__(**params)
        self._png_file, self._config_file = png_file, config_file

    def __panel__(self) -> pn.viewable.Viewable:
        not_ready = self.param.ready.rx.not_()
        return pn.Column(
            pn.widgets.FileDownload(callback=self._png_file, filename="plot.png", label="Download PNG",
                                    color="primary", disabled=not_ready),
            pn.widgets.FileDownload(callback=self._config_file, filename="plot-config.json",
                                    label="Save configuration", disabled=not_ready),
            pn.widgets.FileInput.from_param(self.param.configuration, accept=".json"),
            pn.widgets.Button.from_param(self.param.notebook, disabled=not_ready),
        )

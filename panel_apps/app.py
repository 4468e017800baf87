"""The no-code plotting app: pick a file, see what is in it, get an interactive plot.

:class:`PlotApp` is a Panel ``Viewer``. Its state lives in ``param.Parameterized`` objects by
topic — :class:`~panel_apps.controls.FileChoice` (which file, how to read it),
:class:`~panel_apps.spec.PlotSpec` (the plot), :class:`~panel_apps.controls.ColumnNames`,
:class:`~panel_apps.controls.Extras` (derived columns and filters) and
:class:`~panel_apps.controls.Exports` — and what is on screen in the app's own parameters. Widgets
are generated from those parameters; buttons are ``param.Event`` parameters the app's actions
depend on, and any change of the plot's parameters redraws it. What is drawn comes from
:func:`panel_apps.settings.plot_settings`, the same settings "Open as notebook" writes as code.

Every action shows its failure as a sentence and the app stays usable: a formula's or filter's
beside it, in the "Derived columns and filters" card (which opens), also when the plot fails
because of one (a formula overflows, the filters leave no row); the others in the red area at the top.
A text file seen for the first time is plotted from its first rows while it is converted (a
"first look", labelled with the rows read so far), refined as rows arrive, exact at the end.
Preparing a plot (reading columns, formulas, filters) runs in a worker thread with an admin time
limit, off the event loop, while the plot area shows that it is loading.

Serve it with ``python -m panel_apps.launcher`` (what jupyter-server-proxy runs) or
``panel serve panel_apps/app.py``.
"""
from __future__ import annotations

import asyncio
import io
import logging
from functools import partial
from pathlib import Path

import panel as pn
import param

from panel_apps import render, text
from panel_apps.cluster import COMPUTE_CHOICES, draw_on_cluster
from panel_apps.config import PlotAppConfig
from panel_apps.controls import DELIMITERS, ColumnNames, Exports, Extras, FileChoice, checkbox
from panel_apps.dataset import DataSource
from panel_apps.expressions import FormulaError
from panel_apps.loaders import LoadError
from panel_apps.paths import AllowedRoots, OpenedFile, PathRefused
from panel_apps.settings import RASTERIZED, STANDARD, plot_settings
from panel_apps.spec import PlotSpec, check_reader

log = logging.getLogger(__name__)
USER_ERRORS = (LoadError, PathRefused, FormulaError, ValueError, KeyError, OSError)
REDRAWN_BY = PlotSpec.PLOT_PARAMS + ("derived", "filters", "rename")  # spec parameters the plot shows
ERROR_STYLE = {"background": "#f8d7da", "color": "#721c24", "border": "1px solid #f5c6cb", "border-radius": "4px",
               "padding": "0 12px"}


class FilteredOut(ValueError):
    """The filters leave no row to plot (said beside the filter fields)."""


class PlotApp(pn.viewable.Viewer):
    """One browser session of the app: the page (``__panel__``) and what its buttons do."""

    files = param.ClassSelector(class_=FileChoice, constant=True, doc="Which file, and how to read it.")
    spec = param.ClassSelector(class_=PlotSpec, constant=True, doc="The plot.")
    extras = param.ClassSelector(class_=Extras, constant=True, doc="Derived columns and filters.")
    exports = param.ClassSelector(class_=Exports, constant=True, doc="Save and export.")
    renames = param.ClassSelector(class_=ColumnNames, default=None, allow_None=True,
                                  doc="The previewed file's rename fields.")

    # what is on screen; HTML is made with panel_apps.text, so nothing typed or read runs as markup
    status = param.String(default="<p>Choose a file and press Preview.</p>", doc="HTML status line.")
    error = param.String(default="", doc="HTML sentence on the last action that failed; shown when not empty.")
    summary = param.String(default="", doc="HTML: the previewed file's format, rows and column types.")
    preview_rows = param.DataFrame(default=None, allow_None=True, doc="The first rows of the previewed file.")
    can_load = param.Boolean(default=False, doc="A file is previewed and not being converted.")
    load_and_plot = param.Event(label="Load and plot", doc="Convert the file if needed and draw the plot.")
    converting = param.Boolean(default=False, doc="A text file is being converted (the progress bar shows).")
    progress = param.Integer(default=0, bounds=(0, 100), doc="Percent of the file converted.")
    notice = param.String(default="", doc="A warning on the plot, e.g. rows a log axis cannot show.")
    mode_text = param.String(default="", doc="Markdown: how the plot is drawn, and of how many rows.")
    view_text = param.String(default="", doc="Markdown: ranges and rows of a rasterized view.")
    drawing = param.Boolean(default=False, doc="A plot is being prepared: the plot area shows it is loading.")
    compute = param.Selector(default="auto", objects=COMPUTE_CHOICES, label="Compute on",
                             doc="Where big rasterized plots are aggregated: the user's Dask cluster or this server.")

    def __init__(self, config: PlotAppConfig | None = None, **params):
        config = config or PlotAppConfig()
        roots = AllowedRoots.of(config.all_roots())
        super().__init__(files=FileChoice(folder_names(roots.roots, Path(config.home))), spec=PlotSpec(), extras=Extras(),
                         exports=Exports(png_file=self.png_file, config_file=self.config_file), **params)
        self.config, self.roots = config, roots
        self.source: DataSource | None = None
        self.frame = None  # the plotted table, and the choices it was drawn with
        self.drawn: PlotSpec | None = None
        self.mode: str | None = None
        self.raster: render.RasterFigure | None = None
        self._first_look_of = None  # which file and choices the first-look figure shows
        self.range_stream = None
        self.cluster_view = None  # the plot's frames come from the Dask cluster (panel_apps.cluster)
        self.cluster_note = ""  # why a plot asked of the Dask cluster is drawn here instead
        self._plots_started = 0  # replots run concurrently: only the latest one draws
        self._plots_settled = 0  # ... and exports wait until it has (see _plot_pending)
        self.plot_area = pn.Column(css_classes=["nh-plot"], loading=self.param.drawing)
        self._page = self._layout()
        self.list_files()

    # ----------------------------------------------------------------- the page
    def __panel__(self) -> pn.viewable.Viewable:
        return self._page

    def _layout(self) -> pn.viewable.Viewable:
        log_axes = ("logx", "logy")  # checkboxes whose label text is clickable (controls.checkbox)
        spec_widgets = pn.Column(pn.Param(
            self.spec, parameters=[p for p in PlotSpec.PLOT_PARAMS if p not in log_axes + ("mode",)], show_name=False,
            sizing_mode="stretch_width",
            widgets={"size": pn.widgets.IntSlider, "alpha": {"type": pn.widgets.FloatSlider, "step": 0.05},
                     "color": pn.widgets.ColorPicker, "width": {"type": pn.widgets.IntInput, "step": 50},
                     "height": {"type": pn.widgets.IntInput, "step": 50}, "bins": pn.widgets.IntInput}),
            pn.Row(*(checkbox(self.spec.param[p]) for p in log_axes)),
            pn.Param(self.spec, parameters=["mode"], show_name=False, sizing_mode="stretch_width"),
            sizing_mode="stretch_width")
        # opens by itself when a formula or filter fails, so the sentence beside it is seen
        self._extras_card = pn.Card(self.extras, title="Derived columns and filters", collapsed=True)
        sidebar = pn.Column(
            pn.Card(self.files, title="1. Choose a file", collapsible=False),
            pn.Card(spec_widgets, pn.widgets.RadioButtonGroup.from_param(self.param.compute, name="Compute on"),
                    title="3. Plot", collapsible=False),
            self._extras_card,
            pn.Card(self.exports, title="Save and export", collapsible=False),
            width=340)
        # panes showing file names, column names or typed text are HTML panes fed by panel_apps.text
        preview = pn.Card(
            pn.pane.HTML(self.param.summary, css_classes=["nh-types"], sizing_mode="stretch_width"),
            pn.pane.DataFrame(self.param.preview_rows, max_rows=10, escape=True, sizing_mode="stretch_width",
                              css_classes=["nh-preview"]),
            self._rename_fields,
            title="2. What is in the file", sizing_mode="stretch_width")
        main = pn.Column(
            pn.pane.HTML(self.param.error, visible=self.param.error.rx.bool(), css_classes=["nh-error"],
                         sizing_mode="stretch_width", styles=ERROR_STYLE),
            pn.pane.HTML(self.param.status, css_classes=["nh-status"], sizing_mode="stretch_width"),
            pn.Row(pn.widgets.Button.from_param(self.param.load_and_plot, color="success",
                                                disabled=self.param.can_load.rx.not_()),
                   pn.indicators.Progress(value=self.param.progress, max=100, width=300,
                                          visible=self.param.converting)),
            pn.pane.Alert(self.param.notice, alert_type="warning", visible=self.param.notice.rx.bool(),
                          css_classes=["nh-notice"]),
            pn.pane.Markdown(self.param.mode_text, css_classes=["nh-mode"]),
            pn.pane.Markdown(self.param.view_text, css_classes=["nh-view"]),
            self.plot_area, preview, sizing_mode="stretch_width")
        return pn.Row(sidebar, main, sizing_mode="stretch_width")

    @param.depends("renames")
    def _rename_fields(self):
        return self.renames if self.renames is not None else pn.Spacer(height=0)

    # ----------------------------------------------------------------- error handling
    def _guard(self, action, *args):
        """Run ``action``; show user errors in the error area instead of breaking the page."""
        self.error = ""  # before: an error a watcher shows during the action must stay
        try:
            return action(*args)
        except Exception as exc:
            self._report(exc)
            return None

    async def _guard_async(self, action, *args):
        """:meth:`_guard` for coroutine actions."""
        self.error = ""
        try:
            return await action(*args)
        except Exception as exc:
            self._report(exc)
            return None

    def _report(self, exc: Exception) -> None:
        if isinstance(exc, USER_ERRORS):
            self._show_error(exc)
        elif isinstance(exc, MemoryError):
            self._show_error("The server ran out of memory for this plot; filter rows or use a smaller file.")
        else:  # a bug: still keep the app usable, and log the traceback
            log.exception("plot app action failed", exc_info=exc)
            self._show_error(f"Something went wrong ({type(exc).__name__}: {exc}).")

    def _show_error(self, exc) -> None:
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        if isinstance(exc, OSError) and not isinstance(exc, LoadError):
            message = f"The file could not be read: {exc.strerror or exc}."
        self.error = text.paragraph("{}", message)

    # ----------------------------------------------------------------- choosing and previewing
    @param.depends("files.root", "files.refresh", watch=True)
    def list_files(self) -> None:
        """List the data files of the chosen folder (choosing a folder, the ↻ button)."""
        self._guard(self._list_files)

    def _list_files(self) -> None:
        root = self.files.root
        files = self.roots.list_files(root)
        self.files.offer_files(files)
        shown = self.files.folder_name(root)
        self.status = text.paragraph("{:,} data files in {}.", len(files), shown) if files else \
            text.paragraph("No data files found in {}; type a path instead.", shown)

    @param.depends("files.preview", watch=True)
    def preview(self) -> None:
        """'Preview': open the chosen file and show its columns and first rows."""
        self._guard(self._preview)

    def _preview(self) -> None:
        files = self.files
        opened = self.roots.open(files.root, files.path)
        try:
            options = self._reader_options(opened)
        except BaseException:
            opened.close()
            raise
        self._open(opened, options)
        # the new file's bookkeeping: nothing to redraw, its columns come with 'Load and plot'
        with param.parameterized.discard_events(self.spec):
            self.spec.param.update(root=files.root, path=files.path.strip(), rename={}, derived={}, filters=[])
        self._describe_extras()

    def _reader_options(self, opened: OpenedFile) -> dict | None:
        """None to sniff everything, else the student's overrides (separator, header, table)."""
        same_file = self.source is not None and self.source.path == opened.real
        choice = self.files.table if same_file and self.files.tables else None
        if choice:
            return {"dataset": choice} if self.source.format == "hdf5" else {"tree": choice}
        if self.files.delimiter == "auto" and self.files.header == "auto" and not self.files.skip_bad_lines:
            return None
        from panel_apps.loaders import detect_format, sniff_text
        if detect_format(opened) != "text":
            return None
        opts = sniff_text(opened).to_dict()
        if self.files.delimiter != "auto":
            opts["delimiter"] = DELIMITERS[self.files.delimiter]
        if self.files.header != "auto":
            opts["header"] = self.files.header == "yes"
            opts["names"] = [] if opts["header"] else opts["names"]
        opts["skip_bad_lines"] = bool(self.files.skip_bad_lines)
        return check_reader(opts)  # the rules a saved configuration's reader options obey

    def _open(self, opened: OpenedFile, options: dict | None) -> None:
        """Show the preview of the opened file; this app then owns (and later closes) it."""
        self.can_load = False
        source = DataSource(opened, options, max_read_bytes=self.config.max_read_bytes)
        previous, self.source, self.frame = self.source, source, None
        self._plots_started += 1  # a replot of the previous file still running must not draw
        self._plots_settled = self._plots_started
        self.drawing = False
        if previous is not None:
            previous.close()
        self.preview_rows = source.preview.frame
        rows = f"{source.total_rows:,} rows" if source.total_rows is not None else "rows counted when loaded"
        non_numeric = [c for c in source.preview.frame.columns if c not in source.numeric_columns]
        types = ", ".join(text.html_format("<strong>{}</strong> {}", c, t) for c, t in source.preview.dtypes.items())
        unusable = text.html_format("<br>(Not numbers, cannot be plotted: {})", ", ".join(non_numeric)) if non_numeric else ""
        self.summary = f"<p>{text.html_format('{} file, {}. Columns: ', source.format, rows)}{types}{unusable}</p>"
        if not source.numeric_columns:
            raise LoadError(f"'{opened.name}' has no numeric columns to plot.")
        self.files.tables = list(source.preview.choices)
        renames = ColumnNames.of(source.numeric_columns)
        renames.param.watch(lambda event: self.apply_renames(), "apply")
        self.renames = renames
        self.spec.reader = dict(source.options)
        self.can_load = True
        self.status = text.paragraph("Preview of {}: check the columns, rename them if you like, then press "
                                     "'Load and plot'.", opened.name)

    def apply_renames(self) -> None:
        """'Apply column names': offer the columns under the names typed in the rename fields."""
        self._guard(self._apply_renames)

    def _apply_renames(self) -> None:
        renames = self.renames.renames() if self.renames is not None else {}
        self.spec.check(self.source.file_columns(), rename=renames)  # the rules saved files obey too
        self.spec.rename = renames
        self._offer_columns()

    def _offer_columns(self) -> None:
        columns = self.source.available_columns(self.spec)
        self.spec.set_columns(columns)
        self.extras.offer_columns(columns)

    # ----------------------------------------------------------------- loading (in a thread)
    @param.depends("load_and_plot", watch=True)
    async def load(self) -> None:
        """'Load and plot': convert the file in a worker thread if needed (plotting its first rows
        meanwhile), then draw the plot."""
        if self.source is None:
            self._show_error("Press Preview first.")
            return
        if self._guard(self._offer_columns) is None and self.error:
            return
        if not await self._prepare_source():
            return
        await self._replot()  # the replots the new columns scheduled are superseded by this one

    async def _prepare_source(self) -> bool:
        """Convert the chosen file in a worker thread, with the progress bar and first looks; False on failure."""
        self.can_load = False
        self.converting, self.progress = True, 0
        self.status = text.paragraph("Converting the file to a fast columnar cache (only the first time)…")
        source, latest = self.source, {}

        def progress(fraction: float, rows: int) -> None:  # runs in the worker thread
            latest["progress"] = (fraction, rows)

        def on_rows(view) -> None:  # the rows converted so far (worker thread)
            latest["view"] = view

        work = asyncio.ensure_future(asyncio.to_thread(source.prepare, self.config.user_cache_dir(), progress, on_rows))
        try:
            while not work.done():
                await asyncio.wait([work], timeout=0.25)
                if "progress" in latest:
                    fraction, rows = latest["progress"]
                    self.progress = int(100 * fraction)
                    self.status = text.paragraph("Converting… {:,} rows so far.", rows)
                view = latest.pop("view", None)
                if view is not None and not work.done() and source is self.source:
                    await self._first_look(source, view)
            work.result()
        except USER_ERRORS as exc:
            self._show_error(exc)
            return False
        finally:
            self.converting = False
            self.can_load = True
        self.error = ""
        return True

    async def _first_look(self, source: DataSource, view) -> None:
        """Draw the rows converted so far, labelled as such (rasterized kinds only)."""
        spec = self.spec.snapshot()
        if spec.kind == "hist" or spec.mode == STANDARD or spec.x is None or spec.y is None:
            return
        try:
            frame = await asyncio.to_thread(source.table, spec, view)
            if len(frame) == 0 or source is not self.source:
                return
            settings = plot_settings(spec, RASTERIZED)
            if self.raster is not None and self._first_look_of == (id(source), spec.to_json()):
                await asyncio.to_thread(self.raster.show_rows, frame)
            else:
                self.raster = render.RasterFigure(frame, settings, on_update=self._show_view)
                self._first_look_of = (id(source), spec.to_json())
                self.plot_area.objects = [pn.pane.Bokeh(self.raster.figure)]
            self.mode_text = (f"**First look** (rasterized, the first {len(frame):,} rows read so far; "
                              "refined as the file is converted)")
        except Exception:  # a first look that cannot be drawn is no news: the full plot follows
            log.debug("first look failed", exc_info=True)

    # ----------------------------------------------------------------- plotting
    @param.depends(*(f"spec.{name}" for name in REDRAWN_BY), watch=True)
    def _redraw(self) -> None:
        # take the replot's ticket now (exports see at once that a new plot is on its way) and draw
        # later: the replot is a coroutine scheduled on the session's event loop (run to completion
        # at once when there is none). Of several changes in a row only the last one draws.
        if self.source is not None and self.source.ready:
            param.parameterized.async_executor(partial(self._replot, self._plot_ticket()))

    def _plot_ticket(self) -> int:
        self._plots_started += 1
        self.drawing = True
        return self._plots_started

    async def _replot(self, ticket: int | None = None) -> None:
        """Prepare the plotted table off the event loop and draw it, unless a newer change came meanwhile."""
        ticket = ticket or self._plot_ticket()
        spec = self.spec.snapshot()
        try:
            if ticket != self._plots_started or spec.x is None or (spec.needs_y() and spec.y is None):
                return  # superseded before it began, or nothing to plot yet
            self.error = self.extras.error = ""  # the latest change speaks for the plot now
            if await draw_on_cluster(self, spec, ticket):  # drawn by the Dask cluster (or superseded)
                return
            frame = await self._prepare_table(self.source, spec)
            if ticket == self._plots_started:  # else the student changed the plot meanwhile: the newer one draws
                self._draw(frame, spec)
        except Exception as exc:
            if ticket != self._plots_started:  # an outdated replot's failure (e.g. its file was closed) is no news
                pass
            elif isinstance(exc, (FormulaError, FilteredOut)):  # caused by a formula or filter: said beside it
                self._show_beside_fields(exc)
            else:
                self._report(exc)
        finally:
            self._plots_settled = max(self._plots_settled, ticket)
            self.drawing = self._plot_pending()

    def _plot_pending(self) -> bool:
        """True while the latest change of the plot is still being prepared or drawn."""
        return self._plots_settled < self._plots_started

    async def _prepare_table(self, source: DataSource, spec: PlotSpec):
        """The plotted table, built in a worker thread (formulas, reading columns) within the admin's limit.

        A Python thread cannot be stopped: after the limit the work finishes in the background
        (formulas are bounded, see :mod:`panel_apps.expressions`) while the student gets a sentence.
        """
        limit = self.config.formula_timeout
        try:
            return await asyncio.wait_for(asyncio.to_thread(source.table, spec), timeout=limit)
        except asyncio.TimeoutError:
            raise ValueError(f"Preparing the plot took longer than {limit:g} s, the limit set by your admin; "
                             "use simpler formulas or filter rows.") from None

    def _draw(self, frame, spec: PlotSpec) -> None:
        n = len(frame)
        if n == 0:
            raise FilteredOut("No rows left to plot: the filters exclude every row.")
        mode = render.choose_mode(spec, n, self.config.rasterize_threshold)
        if mode == STANDARD and spec.kind in ("scatter", "line") and n > self.config.standard_max_rows:
            raise ValueError(f"Standard mode would send all {n:,} points to your browser (limit "
                             f"{self.config.standard_max_rows:,}). Choose 'rasterized' or 'auto', or add a filter.")
        settings = plot_settings(spec, mode)  # what is drawn below, and what 'Open as notebook' writes
        hidden = render.log_hidden_rows(frame, settings)
        self.notice = " ".join(t for t in (self.cluster_note, f"{hidden:,} of {n:,} rows have values ≤ 0 and cannot "
                                           "be shown on a log axis." if hidden else "") if t)
        self.frame, self.drawn, self.mode, self.raster, self.range_stream = frame, spec, mode, None, None
        self.cluster_view = None
        self.view_text = ""
        if settings["method"] == "hist":
            self.mode_text = f"**Histogram** (all {n:,} rows binned)"
            pane = pn.pane.HoloViews(render.histogram(frame, settings), backend="bokeh")
        elif settings["rasterize"]:
            self.raster = render.RasterFigure(frame, settings, on_update=self._show_view)
            label = "2-D histogram, " if settings["method"] == "hist2d" else ""
            self.mode_text = f"**Rasterized** ({label}Datashader, {n:,} rows)"
            pane = pn.pane.Bokeh(self.raster.figure)
        else:
            import holoviews as hv
            obj = render.standard_plot(frame, settings)
            self.range_stream = hv.streams.RangeXY(source=obj)
            self.mode_text = f"**Standard** (Bokeh glyphs, {n:,} rows)"
            pane = pn.pane.HoloViews(obj, backend="bokeh")
        self.plot_area.objects = [pane]
        self._first_look_of = None
        self.exports.ready = True
        skipped = self.source.skipped_lines
        self.status = text.paragraph("Plotted {} of {}.", spec.kind, self.source.path.name) + (
            text.paragraph("{:,} bad lines were skipped (reader option 'Skip bad lines').", skipped) if skipped else "")
        if settings["rasterize"]:
            render.start_warm_up()  # Datashader compiles for the next frames; this one did not wait for it

    def show_raster(self, spec: PlotSpec, settings: dict, raster: render.RasterFigure, view) -> None:
        """Show a rasterized figure whose frames come from elsewhere (the Dask cluster: ``view``)."""
        self.frame, self.drawn, self.mode, self.raster, self.range_stream = None, spec, RASTERIZED, raster, None
        self.cluster_view, self.view_text, self._first_look_of = view, "", None
        self.plot_area.objects = [pn.pane.Bokeh(raster.figure)]
        self.exports.ready = True
        self.status = text.paragraph("Plotted {} of {}.", spec.kind, self.source.path.name)

    @param.depends("compute", watch=True)
    def _compute_changed(self) -> None:
        self._redraw()

    def _show_view(self, agg: render.Aggregate) -> None:
        (x0, x1), (y0, y1) = agg.x_range, agg.y_range
        self.view_text = (f"View: x {x0:.6g} … {x1:.6g}, y {y0:.6g} … {y1:.6g} · "
                          f"rows in view: {agg.rows_in_view:,}")

    # ----------------------------------------------------------------- derived columns and filters
    def _guard_field(self, action) -> None:
        """Like :meth:`_guard`, with the error shown beside the fields of derived columns and filters."""
        self.extras.error = ""
        self.error = ""
        try:
            action()
        except USER_ERRORS as exc:
            self._show_beside_fields(exc)

    def _show_beside_fields(self, exc: Exception) -> None:
        """Show the sentence beside the formula and filter fields (their card opens), not at the top."""
        self._show_error(exc)
        self.extras.error, self.error = self.error, ""
        self._extras_card.collapsed = False

    @param.depends("extras.add_column", watch=True)
    def add_column(self) -> None:
        """'Add column': a derived column from the typed name and formula."""
        self._guard_field(self._add_column)

    def _add_column(self) -> None:
        name, formula = self.extras.column_name.strip(), self.extras.formula.strip()
        derived = {**self.spec.derived, name: formula}
        self.spec.check(self.source.file_columns(), derived=derived)  # readable error before anything runs
        self.spec.derived = derived
        self._offer_columns()
        self._describe_extras()

    @param.depends("extras.add_filter", watch=True)
    def add_filter(self) -> None:
        """'Add filter': keep only rows whose chosen column lies within the typed min and max."""
        self._guard_field(self._add_filter)

    def _add_filter(self) -> None:
        lo, hi = (self._number(v) for v in (self.extras.filter_min, self.extras.filter_max))
        if lo is None and hi is None:
            raise ValueError("Give a minimum, a maximum or both for the filter.")
        filters = [*self.spec.filters, {"column": self.extras.filter_column, "min": lo, "max": hi}]
        self.spec.check(self.source.file_columns(), filters=filters)
        self.spec.filters = filters
        self._describe_extras()

    @staticmethod
    def _number(typed: str):
        typed = (typed or "").strip()
        if not typed:
            return None
        try:
            return float(typed)
        except ValueError:
            raise ValueError(f"'{typed}' is not a number.") from None

    @param.depends("extras.clear", watch=True)
    def clear_extras(self) -> None:
        """'Clear filters and columns'."""
        self.extras.error = ""
        self._guard(self._clear_extras)

    def _clear_extras(self) -> None:
        self.spec.param.update(derived={}, filters=[])
        self._offer_columns()
        self._describe_extras()

    def _describe_extras(self) -> None:
        items = [text.html_format("<li>{} = <code>{}</code></li>", k, v) for k, v in self.spec.derived.items()]
        items += [text.html_format("<li>{} in [{}, {}]</li>", f["column"], "−∞" if f["min"] is None else f["min"],
                                   "∞" if f["max"] is None else f["max"]) for f in self.spec.filters]
        self.extras.in_use = f"<ul>{''.join(items)}</ul>" if items else ""

    # ----------------------------------------------------------------- export, save, load
    def current_ranges(self):
        """(x_range, y_range) on screen, or (None, None) for the full extent."""
        if self.raster is not None and self.raster.last is not None:
            return self.raster.last.x_range, self.raster.last.y_range
        if self.range_stream is not None and self.range_stream.x_range is not None:
            return self.range_stream.x_range, self.range_stream.y_range
        return None, None

    def png_file(self):
        """'Download PNG': the view on screen, drawn on the server from all rows (None: see the error area)."""
        if self.frame is None and self.cluster_view is None:
            self._show_error("Make a plot first.")
            return None
        if self._plot_pending():  # the frame on hand belongs to the previous choices
            self._show_error("The plot is still being drawn; press 'Download PNG' again in a moment.")
            return None
        from panel_apps.export import view_png
        aggregator = self.cluster_view.aggregate if self.cluster_view is not None else render.aggregate
        png = self._guard(partial(view_png, aggregator=aggregator), self.frame, plot_settings(self.drawn, RASTERIZED),
                          *self.current_ranges())
        return io.BytesIO(png) if png else None

    def config_file(self):
        """'Save configuration': the plot's choices as JSON."""
        return io.StringIO(self.spec.to_json())

    @param.depends("exports.notebook", watch=True)
    async def export_notebook(self) -> None:
        """'Open as notebook': after the plot on screen has caught up with the latest change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.formula_timeout + 5
        while self._plot_pending() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self.write_notebook()

    def write_notebook(self) -> None:
        """Write the notebook reproducing the plot on screen and link it in the status line."""
        self._guard(self._write_notebook)

    def _write_notebook(self) -> None:
        from panel_apps.export import write_notebook
        target = write_notebook(self.spec, self.source.path, self.source.format, self.source.options,
                                list(self.source.preview.frame.columns), Path(self.config.home), self.mode,
                                numeric=self.source.numeric_columns)
        rel = target.relative_to(Path(self.config.home)) if target.is_relative_to(Path(self.config.home)) else target
        self.status = (text.html_format("<p>Notebook written to ~/{}. Open it in JupyterLab: ", rel)
                       + text.link(rel, f"../lab/tree/{rel}") + " (opens in a new tab).</p>")

    @param.depends("exports.configuration", watch=True)
    async def _configuration_uploaded(self) -> None:
        await self.load_configuration(self.exports.configuration)

    async def load_configuration(self, saved_json: bytes | str | None) -> None:
        """'Load configuration': reopen the saved file (converting it in a thread if needed), redraw the plot."""
        if not saved_json:
            return
        saved = self._guard(PlotSpec.from_json, saved_json)
        opened = saved and self._guard(self.roots.open, saved.root, saved.path)
        if not opened:
            return
        self.files.root = saved.root  # one after the other: listing the folder's files resets the path
        self.files.path = saved.path
        if self._guard(self._open, opened, saved.reader) is None and self.error:
            return
        if self._guard(saved.check, self.source.file_columns()) is None:
            return  # the saved choices do not fit this file (the error says which)
        if not await self._prepare_source():
            return
        values = saved.to_dict()
        self._guard(self.spec.update_from_dict, {k: v for k, v in values.items() if k not in ("x", "y", "color_by")})
        self._guard(self._offer_columns)
        self._guard(self.spec.update_from_dict, {k: values[k] for k in ("x", "y", "color_by")})
        self._describe_extras()
        await self._replot()  # the replots the changes above scheduled are superseded by this one


def create_app(config: PlotAppConfig | None = None) -> PlotApp:
    """A fresh app for one browser session (``panel_apps.launcher`` serves it)."""
    pn.extension(notifications=False)
    return PlotApp(config)


def folder_names(roots, home: Path) -> dict[str, str]:
    """The folder selector's choices: 'Home' for the home folder, data folders by their name."""
    names: dict[str, str] = {}
    for root in roots:
        name = "Home" if Path(root) == home else (Path(root).name or str(root))
        label, n = name, 1
        while label in names:
            n += 1
            label = f"{name} ({n})"
        names[label] = str(root)
    return names


if pn.state.served:  # `panel serve panel_apps/app.py`
    create_app().servable(title="Plot data")

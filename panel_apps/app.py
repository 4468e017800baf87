"""The no-code plotting app: pick a file, see what is in it, get an interactive plot.

State lives in :class:`~panel_apps.spec.PlotSpec` (what to plot) and :class:`PlotApp` (which
file, what is on screen); the plot widgets are generated from the spec with ``pn.Param``.
Every user action runs inside :meth:`PlotApp._guard`, so a bad file or formula ends up as a
sentence in the red error area and the app stays usable. Preparing a plot (reading columns,
formulas, filters) runs in a worker thread with an admin time limit, off the event loop.

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
from panel_apps.config import PlotAppConfig
from panel_apps.dataset import DataSource
from panel_apps.export import view_png, write_notebook
from panel_apps.expressions import FormulaError
from panel_apps.loaders import LoadError
from panel_apps.paths import AllowedRoots, OpenedFile, PathRefused
from panel_apps.settings import plot_settings
from panel_apps.spec import PlotSpec, check_reader

log = logging.getLogger(__name__)
USER_ERRORS = (LoadError, PathRefused, FormulaError, ValueError, KeyError, OSError)
DELIMITERS = {"auto": "auto", "whitespace": None, "comma": ",", "tab": "\t", "semicolon": ";"}
MAX_RENAME_FIELDS = 64
ERROR_STYLE = {"background": "#f8d7da", "color": "#721c24", "border": "1px solid #f5c6cb", "border-radius": "4px",
               "padding": "0 12px"}


class PlotApp(param.Parameterized):
    """One browser session of the app."""

    status = param.String(default="<p>Choose a file and press Preview.</p>", doc="HTML: user text via panel_apps.text.")

    def __init__(self, config: PlotAppConfig | None = None, **params):
        super().__init__(**params)
        self.config = config or PlotAppConfig()
        self.roots = AllowedRoots.of(self.config.all_roots())
        self.spec = PlotSpec()
        self.source: DataSource | None = None
        self.frame = None
        self.raster: render.RasterFigure | None = None
        self.range_stream = None
        self.mode = None
        self._quiet = False
        self._plots_started = 0  # replots run concurrently: only the latest one draws
        self._plots_settled = 0  # ... and exports wait until it has (see _plot_pending)
        self._build_widgets()
        self.spec.param.watch(self._on_spec_change, list(PlotSpec.PLOT_PARAMS) + ["derived", "filters", "rename"])

    # ----------------------------------------------------------------- widgets and layout
    def _build_widgets(self) -> None:
        root_names = [str(r) for r in self.roots.roots]
        self.root_select = pn.widgets.Select(label="Folder", options=root_names, value=root_names[0])
        self.file_select = pn.widgets.Select(label="File", options=[], width=250)
        self.path_input = pn.widgets.TextInput(label="…or type a path inside the folder", placeholder="data/run1.txt")
        self.delimiter = pn.widgets.Select(label="Separator", options=list(DELIMITERS), value="auto", width=140)
        self.header = pn.widgets.Select(label="Header row", options=["auto", "yes", "no"], value="auto", width=140)
        self.table_choice = pn.widgets.Select(label="Table / tree", options=[], visible=False)
        self.preview_button = pn.widgets.Button(label="Preview", color="primary")
        self.refresh_button = pn.widgets.Button(label="↻", width=40)
        self.preview_pane = pn.pane.DataFrame(None, max_rows=10, escape=True, sizing_mode="stretch_width",
                                              css_classes=["nh-preview"])
        # panes that show file names, column names or typed text are HTML panes fed by panel_apps.text
        self.types_pane = pn.pane.HTML("", css_classes=["nh-types"], sizing_mode="stretch_width")
        self.rename_box = pn.Column()
        self.rename_button = pn.widgets.Button(label="Apply column names", visible=False)
        self.load_button = pn.widgets.Button(label="Load and plot", color="success", disabled=True)
        self.progress = pn.indicators.Progress(value=0, max=100, visible=False, width=300)
        self.error = pn.pane.HTML("", visible=False, css_classes=["nh-error"], sizing_mode="stretch_width",
                                  styles=ERROR_STYLE)
        self.notice = pn.pane.Alert("", alert_type="warning", visible=False, css_classes=["nh-notice"])
        self.mode_indicator = pn.pane.Markdown("", css_classes=["nh-mode"])
        self.view_info = pn.pane.Markdown("", css_classes=["nh-view"])
        self.status_pane = pn.pane.HTML(self.param.status, css_classes=["nh-status"], sizing_mode="stretch_width")
        self.plot_area = pn.Column(css_classes=["nh-plot"])
        self.derived_name = pn.widgets.TextInput(label="New column name", placeholder="r")
        self.derived_formula = pn.widgets.TextInput(label="Formula", placeholder="sqrt(q1**2 + q2**2)")
        self.derived_button = pn.widgets.Button(label="Add column")
        self.filter_column = pn.widgets.Select(label="Filter column", options=[])
        self.filter_min = pn.widgets.TextInput(label="min", placeholder="none", width=100)
        self.filter_max = pn.widgets.TextInput(label="max", placeholder="none", width=100)
        self.filter_button = pn.widgets.Button(label="Add filter")
        self.clear_button = pn.widgets.Button(label="Clear filters and columns")
        self.extras_pane = pn.pane.HTML("", css_classes=["nh-extras"])
        self.png_download = pn.widgets.FileDownload(callback=self._png_file, filename="plot.png",
                                                    label="Download PNG", color="primary", disabled=True)
        self.config_download = pn.widgets.FileDownload(callback=self._config_file, filename="plot-config.json",
                                                       label="Save configuration", disabled=True)
        self.config_upload = pn.widgets.FileInput(accept=".json", label="Load configuration")
        self.notebook_button = pn.widgets.Button(label="Open as notebook", disabled=True)
        self.spec_widgets = pn.Param(
            self.spec, parameters=list(PlotSpec.PLOT_PARAMS), show_name=False, sizing_mode="stretch_width",
            widgets={"size": pn.widgets.IntSlider, "alpha": {"type": pn.widgets.FloatSlider, "step": 0.05},
                     "color": pn.widgets.ColorPicker, "width": {"type": pn.widgets.IntInput, "step": 50},
                     "height": {"type": pn.widgets.IntInput, "step": 50}, "bins": pn.widgets.IntInput})

        self.root_select.param.watch(lambda e: self._guard(self._list_files), "value")
        self.refresh_button.on_click(lambda e: self._guard(self._list_files))
        self.file_select.param.watch(lambda e: setattr(self.path_input, "value", e.new or ""), "value")
        self.preview_button.on_click(lambda e: self._guard(self._preview))
        self.rename_button.on_click(lambda e: self._guard(self._apply_renames))
        self.load_button.on_click(self._load)
        self.derived_button.on_click(lambda e: self._guard(self._add_derived))
        self.filter_button.on_click(lambda e: self._guard(self._add_filter))
        self.clear_button.on_click(lambda e: self._guard(self._clear_extras))
        self.notebook_button.on_click(self._export_notebook)
        self.config_upload.param.watch(self._load_config, "value")
        self._guard(self._list_files)

    def view(self) -> pn.viewable.Viewable:
        """The whole page."""
        choose = pn.Card(self.root_select, pn.Row(self.file_select, self.refresh_button), self.path_input,
                         pn.Row(self.delimiter, self.header), self.table_choice, self.preview_button,
                         title="1. Choose a file", collapsible=False)
        extras = pn.Card(self.derived_name, self.derived_formula, self.derived_button,
                         self.filter_column, pn.Row(self.filter_min, self.filter_max), self.filter_button,
                         self.clear_button, self.extras_pane, title="Derived columns and filters", collapsed=True)
        output = pn.Card(self.png_download, self.config_download, self.config_upload, self.notebook_button,
                         title="Save and export", collapsible=False)
        sidebar = pn.Column(choose, pn.Card(self.spec_widgets, title="3. Plot", collapsible=False), extras, output,
                            width=340)
        preview = pn.Card(self.types_pane, self.preview_pane, self.rename_box, self.rename_button,
                          title="2. What is in the file", sizing_mode="stretch_width")
        main = pn.Column(self.error, self.status_pane, pn.Row(self.load_button, self.progress), self.notice,
                         self.mode_indicator, self.view_info, self.plot_area, preview, sizing_mode="stretch_width")
        return pn.Row(sidebar, main, sizing_mode="stretch_width")

    # ----------------------------------------------------------------- error handling
    def _guard(self, action, *args):
        """Run ``action``; show user errors in the error area instead of breaking the page."""
        self.error.visible = False  # before: an error a watcher shows during the action must stay
        try:
            return action(*args)
        except Exception as exc:
            self._report(exc)
            return None

    async def _guard_async(self, action, *args):
        """:meth:`_guard` for coroutine actions."""
        self.error.visible = False
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
        self.error.object = text.paragraph("{}", message)
        self.error.visible = True

    # ----------------------------------------------------------------- choosing and previewing
    def _list_files(self) -> None:
        files = self.roots.list_files(self.root_select.value)
        self.file_select.options = [""] + files
        self.status = text.paragraph("{:,} data files in {}.", len(files), self.root_select.value) if files else \
            text.paragraph("No data files found in {}; type a path instead.", self.root_select.value)

    def _reader_options(self, opened: OpenedFile) -> dict | None:
        """None to sniff everything, else the student's overrides (separator, header, table)."""
        same_file = self.source is not None and self.source.path == opened.real
        choice = self.table_choice.value if same_file and self.table_choice.visible else None
        if choice:
            return {"dataset": choice} if self.source.format == "hdf5" else {"tree": choice}
        if self.delimiter.value == "auto" and self.header.value == "auto":
            return None
        from panel_apps.loaders import detect_format, sniff_text
        if detect_format(opened) != "text":
            return None
        opts = sniff_text(opened).to_dict()
        if self.delimiter.value != "auto":
            opts["delimiter"] = DELIMITERS[self.delimiter.value]
        if self.header.value != "auto":
            opts["header"] = self.header.value == "yes"
            opts["names"] = [] if opts["header"] else opts["names"]
        return check_reader(opts)  # the rules a saved configuration's reader options obey

    def _preview(self) -> None:
        opened = self.roots.open(self.root_select.value, self.path_input.value)
        try:
            options = self._reader_options(opened)
        except BaseException:
            opened.close()
            raise
        self._open(opened, options)
        self.spec.param.update(root=self.root_select.value, path=self.path_input.value.strip(), rename={},
                               derived={}, filters=[])

    def _open(self, opened: OpenedFile, options: dict | None) -> None:
        """Show the preview of the opened file; this app then owns (and later closes) it."""
        self.load_button.disabled = True
        source = DataSource(opened, options, max_read_bytes=self.config.max_read_bytes)
        previous, self.source, self.frame = self.source, source, None
        self._plots_started += 1  # a replot of the previous file still running must not draw
        self._plots_settled = self._plots_started
        if previous is not None:
            previous.close()
        self.preview_pane.object = source.preview.frame
        rows = f"{source.total_rows:,} rows" if source.total_rows is not None else "rows counted when loaded"
        non_numeric = [c for c in source.preview.frame.columns if c not in source.numeric_columns]
        types = ", ".join(text.html_format("<strong>{}</strong> {}", c, t) for c, t in source.preview.dtypes.items())
        unusable = text.html_format("<br>(Not numbers, cannot be plotted: {})", ", ".join(non_numeric)) if non_numeric else ""
        self.types_pane.object = f"<p>{text.html_format('{} file, {}. Columns: ', source.format, rows)}{types}{unusable}</p>"
        if not source.numeric_columns:
            raise LoadError(f"'{opened.name}' has no numeric columns to plot.")
        self.table_choice.options = source.preview.choices
        self.table_choice.visible = bool(source.preview.choices)
        self.rename_box.objects = [pn.widgets.TextInput(label=c, value=c, width=150)
                                   for c in source.numeric_columns[:MAX_RENAME_FIELDS]]
        self.rename_box.objects = [pn.FlexBox(*self.rename_box.objects)]
        self.rename_button.visible = True
        self.spec.reader = dict(source.options)
        self.load_button.disabled = False
        self.status = text.paragraph("Preview of {}: check the columns, rename them if you like, then press "
                                     "'Load and plot'.", opened.name)

    def _apply_renames(self) -> None:
        fields = self.rename_box.objects[0].objects if self.rename_box.objects else []
        renames = {w.label: w.value.strip() for w in fields if w.value.strip() and w.value.strip() != w.label}
        self.spec.check(self.source.file_columns(), rename=renames)  # the rules saved files obey too
        self.spec.rename = renames
        self._offer_columns()

    def _offer_columns(self) -> None:
        columns = self.source.available_columns(self.spec)
        self.spec.set_columns(columns)
        self.filter_column.options = columns

    # ----------------------------------------------------------------- loading (in a thread)
    async def _load(self, event=None) -> None:
        if self.source is None:
            self._show_error("Press Preview first.")
            return
        if not await self._prepare_source():
            return
        self._quiet = True
        try:
            self._offer_columns()
        finally:
            self._quiet = False
        await self._guard_async(self._replot)

    async def _prepare_source(self) -> bool:
        """Convert the chosen file in a worker thread, with the progress bar; False on failure."""
        self.load_button.disabled = True
        self.progress.visible, self.progress.value = True, 0
        self.status = text.paragraph("Converting the file to a fast columnar cache (only the first time)…")

        def progress(fraction: float, rows: int) -> None:  # runs in the worker thread
            self.progress.value = int(100 * fraction)
            self.status = text.paragraph("Converting… {:,} rows so far.", rows)

        try:
            await asyncio.to_thread(self.source.prepare, self.config.user_cache_dir(), progress)
        except USER_ERRORS as exc:
            self._show_error(exc)
            return False
        finally:
            self.progress.visible = False
            self.load_button.disabled = False
        self.error.visible = False
        return True

    # ----------------------------------------------------------------- plotting
    def _on_spec_change(self, *events) -> None:
        # decide now (``_quiet`` is about this change) and take the replot's ticket now (exports
        # see at once that a new plot is on its way); draw later: the replot is a coroutine
        # scheduled on the session's event loop (run to completion at once when there is none)
        if not self._quiet and self.source is not None and self.source.ready:
            param.parameterized.async_executor(partial(self._guard_async, self._replot, self._plot_ticket()))

    def _plot_ticket(self) -> int:
        self._plots_started += 1
        return self._plots_started

    async def _replot(self, ticket: int | None = None) -> None:
        ticket = ticket or self._plot_ticket()
        spec = self.spec
        try:
            if ticket != self._plots_started or spec.x is None or (spec.needs_y() and spec.y is None):
                return  # superseded before it began, or nothing to plot yet
            try:
                frame = await self._prepare_table(self.source, spec.snapshot())
            except Exception:
                if ticket == self._plots_started:
                    raise
                return  # outdated (e.g. its file was closed meanwhile): the newer replot reports
            if ticket != self._plots_started:
                return  # the student changed the plot meanwhile: the newer replot draws
            self._draw(frame)
        finally:
            self._plots_settled = max(self._plots_settled, ticket)

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

    def _draw(self, frame) -> None:
        spec = self.spec
        n = len(frame)
        if n == 0:
            raise ValueError("No rows left to plot: the filters exclude every row.")
        mode = render.choose_mode(spec, n, self.config.rasterize_threshold)
        if mode == render.STANDARD and spec.kind in ("scatter", "line") and n > self.config.standard_max_rows:
            raise ValueError(f"Standard mode would send all {n:,} points to your browser (limit "
                             f"{self.config.standard_max_rows:,}). Choose 'rasterized' or 'auto', or add a filter.")
        settings = plot_settings(spec, mode)  # what is drawn below, and what 'Open as notebook' writes
        hidden = render.log_hidden_rows(frame, settings)
        self.notice.object = (f"{hidden:,} of {n:,} rows have values ≤ 0 and cannot be shown on a log axis."
                              if hidden else "")
        self.notice.visible = bool(hidden)
        self.frame, self.mode, self.raster, self.range_stream = frame, mode, None, None
        if spec.kind == "hist":
            obj = render.histogram(frame, settings)
            self.mode_indicator.object = f"**Histogram** (all {n:,} rows binned)"
            pane = pn.pane.HoloViews(obj, backend="bokeh")
            self.view_info.object = ""
        elif mode == render.RASTERIZED:
            self.raster = render.RasterFigure(frame, settings, on_update=self._show_view)
            label = "2-D histogram, " if spec.kind == "hist2d" else ""
            self.mode_indicator.object = f"**Rasterized** ({label}Datashader, {n:,} rows)"
            pane = pn.pane.Bokeh(self.raster.figure)
        else:
            import holoviews as hv
            obj = render.standard_plot(frame, settings)
            self.range_stream = hv.streams.RangeXY(source=obj)
            self.mode_indicator.object = f"**Standard** (Bokeh glyphs, {n:,} rows)"
            self.view_info.object = ""
            pane = pn.pane.HoloViews(obj, backend="bokeh")
        self.plot_area.objects = [pane]
        for w in (self.png_download, self.config_download, self.notebook_button):
            w.disabled = False
        self.status = text.paragraph("Plotted {} of {}.", spec.kind, self.source.path.name)

    def _show_view(self, agg: render.Aggregate) -> None:
        (x0, x1), (y0, y1) = agg.x_range, agg.y_range
        self.view_info.object = (f"View: x {x0:.6g} … {x1:.6g}, y {y0:.6g} … {y1:.6g} · "
                                 f"rows in view: {agg.rows_in_view:,}")

    # ----------------------------------------------------------------- derived columns and filters
    def _add_derived(self) -> None:
        name, formula = self.derived_name.value.strip(), self.derived_formula.value.strip()
        derived = {**self.spec.derived, name: formula}
        self.spec.check(self.source.file_columns(), derived=derived)  # readable error before anything runs
        self.spec.derived = derived
        self._offer_columns()
        self._describe_extras()

    def _add_filter(self) -> None:
        lo, hi = (self._number(w.value) for w in (self.filter_min, self.filter_max))
        if lo is None and hi is None:
            raise ValueError("Give a minimum, a maximum or both for the filter.")
        filters = [*self.spec.filters, {"column": self.filter_column.value, "min": lo, "max": hi}]
        self.spec.check(self.source.file_columns(), filters=filters)
        self.spec.filters = filters
        self._describe_extras()

    @staticmethod
    def _number(text: str):
        text = (text or "").strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"'{text}' is not a number.") from None

    def _clear_extras(self) -> None:
        self.spec.param.update(derived={}, filters=[])
        self._offer_columns()
        self._describe_extras()

    def _describe_extras(self) -> None:
        items = [text.html_format("<li>{} = <code>{}</code></li>", k, v) for k, v in self.spec.derived.items()]
        items += [text.html_format("<li>{} in [{}, {}]</li>", f["column"], "−∞" if f["min"] is None else f["min"],
                                   "∞" if f["max"] is None else f["max"]) for f in self.spec.filters]
        self.extras_pane.object = f"<ul>{''.join(items)}</ul>" if items else ""

    # ----------------------------------------------------------------- export, save, load
    def current_ranges(self):
        """(x_range, y_range) on screen, or (None, None) for the full extent."""
        if self.raster is not None and self.raster.last is not None:
            return self.raster.last.x_range, self.raster.last.y_range
        if self.range_stream is not None and self.range_stream.x_range is not None:
            return self.range_stream.x_range, self.range_stream.y_range
        return None, None

    def _png_file(self):
        if self.frame is None:
            self._show_error("Make a plot first.")
            return None
        if self._plot_pending():  # the frame on hand belongs to the previous choices
            self._show_error("The plot is still being drawn; press 'Download PNG' again in a moment.")
            return None
        png = self._guard(view_png, self.frame, plot_settings(self.spec, render.RASTERIZED), *self.current_ranges())
        return io.BytesIO(png) if png else None

    def _config_file(self):
        return io.StringIO(self.spec.to_json())

    async def _export_notebook(self, event=None) -> None:
        """'Open as notebook': after the plot on screen has caught up with the latest change."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.formula_timeout + 5
        while self._plot_pending() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self._guard(self._write_notebook)

    def _write_notebook(self) -> None:
        target = write_notebook(self.spec, self.source.path, self.source.format, self.source.options,
                                list(self.source.preview.frame.columns), Path(self.config.home), self.mode,
                                numeric=self.source.numeric_columns)
        rel = target.relative_to(Path(self.config.home)) if target.is_relative_to(Path(self.config.home)) else target
        self.status = (text.html_format("<p>Notebook written to ~/{}. Open it in JupyterLab: ", rel)
                       + text.link(rel, f"../lab/tree/{rel}") + " (opens in a new tab).</p>")

    async def _load_config(self, event) -> None:
        """Reopen the saved file (converting it in a thread if needed) and redraw the saved plot."""
        if not event.new:
            return
        saved = self._guard(PlotSpec.from_json, event.new)
        opened = saved and self._guard(self.roots.open, saved.root, saved.path)
        if not opened:
            return
        self.root_select.value, self.path_input.value = saved.root, saved.path
        self._quiet = True
        try:
            if self._guard(self._open, opened, saved.reader) is None and self.error.visible:
                return
            if self._guard(saved.check, self.source.file_columns()) is None:
                return  # the saved choices do not fit this file (the error says which)
            await self._prepare_source()
            values = saved.to_dict()
            self._guard(self.spec.update_from_dict, {k: v for k, v in values.items() if k not in ("x", "y", "color_by")})
            self._guard(self._offer_columns)
            self._guard(self.spec.update_from_dict, {k: values[k] for k in ("x", "y", "color_by")})
        finally:
            self._quiet = False
        self._describe_extras()
        if self.source.ready:
            await self._guard_async(self._replot)


def create_app(config: PlotAppConfig | None = None) -> pn.viewable.Viewable:
    """A fresh app for one browser session."""
    pn.extension(notifications=False)
    return PlotApp(config).view()


if pn.state.served:  # `panel serve panel_apps/app.py`
    render.start_warm_up()
    create_app().servable(title="Plot data")

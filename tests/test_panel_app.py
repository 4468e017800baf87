"""The app keeps working after every kind of bad input, and registers itself with the Jupyter server."""
from __future__ import annotations

import asyncio
from pathlib import Path

import panel as pn
import pytest

from panel_apps.app import PlotApp
from panel_apps.config import PlotAppConfig
from panel_apps.sample_data import main as sample_data
from panel_apps.serverproxy import setup_plot_app
from tests.panel_page import click, error_text, pane, type_in, widget

PATH = "…or type a path inside the folder"


@pytest.fixture
def app(tmp_path):
    sample_data(["--out", str(tmp_path / "good.txt"), "--rows", "400"])
    (tmp_path / "garbage.dat").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "ragged.txt").write_text("1 2\n3 4 5\n")
    (tmp_path / "words.csv").write_text("name,kind\na,b\nc,d\n")
    (tmp_path / "zero.csv").write_text("t,q\n")
    return PlotApp(PlotAppConfig(home=str(tmp_path), data_roots=[], rasterize_threshold=100, standard_max_rows=300))


def _plot(app: PlotApp, name: str) -> None:
    type_in(app, PATH, name)
    click(app, "Preview")
    assert not error_text(app), app.error
    asyncio.run(app.load())


@pytest.mark.parametrize("name, message", [
    ("garbage.dat", "binary data"),
    ("empty.txt", "empty"),
    ("ragged.txt", "line 2 has 3 values"),
    ("words.csv", "no numeric columns"),
    ("zero.csv", "zero data rows"),
    ("missing.txt", "does not exist"),
    ("../etc/passwd", "uses '..'"),
])
def test_bad_input_gives_a_message_and_the_app_stays_usable(app, name, message):
    type_in(app, PATH, name)
    click(app, "Preview")
    assert message in error_text(app)
    _plot(app, "good.txt")
    assert not error_text(app)
    assert app.mode_text == "**Rasterized** (Datashader, 400 rows)"


def test_file_deleted_while_plotting(app, tmp_path):
    _plot(app, "good.txt")
    (tmp_path / "good.txt").unlink()
    type_in(app, "Kind", "hist")
    assert "deleted or moved" in error_text(app)
    sample_data(["--out", str(tmp_path / "other.txt"), "--rows", "50"])
    _plot(app, "other.txt")
    assert app.mode_text == "**Histogram** (all 50 rows binned)"  # the chosen kind is kept


def test_filters_that_exclude_everything_and_bad_formulas_are_explained(app):
    _plot(app, "good.txt")
    type_in(app, "Filter column", "t")
    type_in(app, "min", "1e9")
    click(app, "Add filter")
    assert "filters exclude every row" in error_text(app)
    click(app, "Clear filters and columns")
    assert not error_text(app)
    type_in(app, "New column name", "r")
    type_in(app, "Formula", "__import__('os')")
    click(app, "Add column")
    assert "not an allowed function" in error_text(app)
    type_in(app, "Formula", "sqrt(q1**2 + q2**2)")
    click(app, "Add column")
    type_in(app, "Y", "r")
    assert not error_text(app) and app.frame.columns.tolist() == ["t", "r"]


def test_standard_mode_is_refused_above_the_admin_limit_instead_of_freezing_the_browser(app):
    _plot(app, "good.txt")
    type_in(app, "Mode", "standard")
    assert "limit 300" in error_text(app)


def test_renamed_columns_are_offered_for_plotting(app):
    type_in(app, PATH, "good.txt")
    click(app, "Preview")
    type_in(app, "q1", "charge1")  # the rename field of column q1
    click(app, "Apply column names")
    asyncio.run(app.load())
    assert "charge1" in app.spec.param.y.objects and app.spec.y == "charge1"
    assert app.frame.columns.tolist() == ["t", "charge1"]


def test_the_app_is_registered_with_jupyter_server_proxy():
    entry = setup_plot_app()
    # a private Unix socket, never a TCP port another local account could reach
    assert entry["unix_socket"] is True and "{unix_socket}" in entry["command"]
    assert "{port}" not in entry["command"] and "{base_url}nebulahub-plot" in entry["command"]
    assert entry["absolute_url"] is True
    assert entry["launcher_entry"]["title"] == "Plot data"
    assert Path(entry["launcher_entry"]["icon_path"]).read_text().startswith("<svg")


@pytest.mark.parametrize("kind, mode", [("scatter", "rasterized"), ("scatter", "standard"), ("line", "standard"),
                                        ("hist", "standard"), ("hist2d", "rasterized")])
def test_exported_notebook_code_is_valid_python_for_every_kind(tmp_path, kind, mode):
    import ast

    import nbformat

    from panel_apps.export import write_notebook
    from panel_apps.spec import PlotSpec
    spec = PlotSpec(kind=kind, logx=True, logy=kind != "hist")
    spec.set_columns(["t", "charge", "r"])
    spec.param.update(rename={"q1": "charge"}, derived={"r": "sqrt(charge**2 + t**2)"}, y="r",
                      filters=[{"column": "t", "min": 0.0, "max": 2.5}], color_by="t" if kind == "scatter" else "")
    path = write_notebook(spec, tmp_path / "data.txt", "text", {"delimiter": None, "names": ["t", "q1"]},
                          ["t", "q1"], tmp_path, mode)
    assert path.parent == tmp_path / "nebulahub-plots"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            ast.parse(cell.source)
    code = "\n".join(c.source for c in nb.cells)
    assert "df['r'] = np.sqrt(" in code and "df.rename(columns={'q1': 'charge'})" in code
    assert ("rasterize=True" in code) == (mode == "rasterized" and kind != "hist2d")
    assert write_notebook(spec, tmp_path / "data.txt", "text", {}, ["t", "q1"], tmp_path, mode) != path  # no overwrite


def test_student_overrides_the_sniffed_separator_and_header(app, tmp_path):
    (tmp_path / "semi.txt").write_text("100;200\n1;2\n3;4\n")
    type_in(app, PATH, "semi.txt")
    click(app, "Preview")
    assert len(app.source.preview.frame) == 3 and app.source.options["delimiter"] == ";"
    type_in(app, "Separator", "semicolon")
    type_in(app, "Header row", "yes")  # the first row names the columns
    click(app, "Preview")
    assert not error_text(app), app.error
    assert list(app.source.preview.frame.columns) == ["100", "200"] and len(app.source.preview.frame) == 2


def test_hdf5_table_choice_is_offered(app, tmp_path):
    import h5py
    import numpy as np
    with h5py.File(tmp_path / "two.h5", "w") as h5:
        h5["first"] = np.ones((5, 2))
        h5["second"] = np.arange(12.0).reshape(4, 3)
    assert not widget(app, "Table / tree").visible  # a text file has no tables to choose from
    type_in(app, PATH, "two.h5")
    click(app, "Preview")
    tables = widget(app, "Table / tree")
    assert tables.visible and list(tables.options) == ["/first", "/second"]
    tables.value = "/second"
    click(app, "Preview")
    assert app.source.total_rows == 4
    _plot(app, "good.txt")  # a text file after an HDF5 one: sniffed again, not given the table choice
    assert app.spec.x == "t"


def test_the_buttons_and_a_saved_configuration_follow_the_same_rules(app):
    import json

    from panel_apps.spec import PlotSpec
    _plot(app, "good.txt")
    typed_in, saved = [], []
    for fields, button, config in [
            ({"New column name": "r 2", "Formula": "t"}, "Add column", {"derived": {"r 2": "t"}}),
            ({"New column name": "r", "Formula": "t # x"}, "Add column", {"derived": {"r": "t # x"}}),
            ({"Filter column": "t", "min": "inf"}, "Add filter",
             {"filters": [{"column": "t", "min": float("inf"), "max": None}]})]:
        for label, value in fields.items():
            type_in(app, label, value)
        click(app, button)
        with pytest.raises(ValueError) as loaded:
            PlotSpec.from_json(json.dumps({"version": 1, **config}))
        typed_in.append(error_text(app))
        saved.append(str(loaded.value))
    assert all(t and t in s for t, s in zip(typed_in, saved)), (typed_in, saved)
    assert app.spec.derived == {} and app.spec.filters == []


def test_a_saved_configuration_that_does_not_fit_the_file_is_refused_with_the_field(app, tmp_path):
    import json
    config = {"version": 1, "root": str(tmp_path), "path": "good.txt", "reader": {}, "kind": "scatter",
              "x": "t", "y": "energy"}
    asyncio.run(app.load_configuration(json.dumps(config).encode()))
    assert "no column 'energy'" in error_text(app)
    _plot(app, "good.txt")  # still usable
    assert not error_text(app)


def test_formulas_that_would_freeze_the_server_give_a_sentence_and_the_app_stays_usable(app, tmp_path):
    import json
    import time
    _plot(app, "good.txt")
    for formula, message in [("9**9**9", "too large"), ("7**7**8", "too large"), ("q1 + 1 / 0", "divides by zero")]:
        type_in(app, "New column name", "r")
        type_in(app, "Formula", formula)
        click(app, "Add column")
        assert not error_text(app), app.error
        start = time.monotonic()
        type_in(app, "Y", "r")
        assert message in error_text(app)
        assert time.monotonic() - start < 5
        click(app, "Clear filters and columns")
        assert not error_text(app) and app.spec.y == "q1" and len(app.frame) == 400  # usable again
    (tmp_path / "mixed.csv").write_text("t,name,q\n" + "".join(f"{i},word{i},{i * 2}\n" for i in range(50)))
    config = {"version": 1, "root": str(tmp_path), "path": "mixed.csv", "kind": "scatter", "x": "t", "y": "s",
              "derived": {"s": "name * 100000000"}}
    asyncio.run(app.load_configuration(json.dumps(config).encode()))
    assert "holds text" in error_text(app)
    _plot(app, "good.txt")
    assert not error_text(app)


def test_plot_preparation_runs_off_the_event_loop_within_the_admin_time_limit(tmp_path, monkeypatch):
    import time

    from panel_apps.dataset import DataSource
    sample_data(["--out", str(tmp_path / "good.txt"), "--rows", "400"])
    app = PlotApp(PlotAppConfig(home=str(tmp_path), data_roots=[], formula_timeout=0.5))
    _plot(app, "good.txt")
    real_table = DataSource.table

    def slow_table(self, spec):  # a formula over many rows on a busy server
        time.sleep(3)
        return real_table(self, spec)

    monkeypatch.setattr(DataSource, "table", slow_table)

    async def student_changes_the_y_column():
        loop, ticks = asyncio.get_running_loop(), 0
        start = loop.time()
        type_in(app, "Y", "q2")
        assert pane(app, "nh-plot").loading  # the plot area shows that a plot is being prepared
        while not app.error and loop.time() - start < 5:
            await asyncio.sleep(0.05)  # other sessions' work: runs only if the loop is free
            ticks += 1
        return ticks, loop.time() - start

    ticks, elapsed = asyncio.run(student_changes_the_y_column())
    assert "longer than 0.5 s" in error_text(app)
    assert elapsed < 2.5 and ticks >= 3  # blocked, the loop would not tick for 3 s
    assert not pane(app, "nh-plot").loading
    monkeypatch.setattr(DataSource, "table", real_table)
    type_in(app, "Y", "q3")
    assert not error_text(app) and app.frame.columns.tolist() == ["t", "q3"]


def test_admin_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("NEBULAHUB_FORMULA_TIMEOUT", "3.5")
    assert PlotAppConfig().formula_timeout == 3.5
    monkeypatch.delenv("NEBULAHUB_FORMULA_TIMEOUT")
    assert PlotAppConfig().formula_timeout == 20


def test_exports_right_after_a_change_wait_for_the_new_plot_or_say_so(app, monkeypatch):
    import time

    from panel_apps.dataset import DataSource
    _plot(app, "good.txt")
    real_table = DataSource.table

    def slow_table(self, spec):
        time.sleep(0.5)
        return real_table(self, spec)

    monkeypatch.setattr(DataSource, "table", slow_table)

    async def student_changes_the_marker_and_exports_at_once():
        type_in(app, "Marker", "diamond")
        assert app.png_file() is None  # the frame on hand is the previous plot's
        assert "still being drawn" in error_text(app)
        await app.export_notebook()
        return app.status

    status = asyncio.run(student_changes_the_marker_and_exports_at_once())
    assert "Notebook written to ~/nebulahub-plots/" in status  # not overwritten by the late 'Plotted'
    assert app.png_file() is not None


def test_buttons_are_enabled_once_there_is_something_to_do(app):
    load = widget(app, "Load and plot", pn.widgets.Button)
    exports = [widget(app, label) for label in ("Download PNG", "Save configuration", "Open as notebook")]
    assert load.disabled and all(w.disabled for w in exports)
    type_in(app, PATH, "good.txt")
    click(app, "Preview")
    assert not load.disabled and all(w.disabled for w in exports)  # previewed: nothing to export yet
    click(app, "Load and plot")  # outside an event loop the click runs to its end at once
    assert app.mode_text == "**Rasterized** (Datashader, 400 rows)" and not pane(app, "nh-plot").loading
    assert not load.disabled and not any(w.disabled for w in exports)
    assert pane(app, "nh-plot").objects and not error_text(app)


def test_create_app_serves_the_page_as_a_viewer(tmp_path):
    from panel_apps.app import create_app
    app = create_app(PlotAppConfig(home=str(tmp_path), data_roots=[]))
    assert isinstance(app, pn.viewable.Viewer) and app.__panel__() is app.__panel__()
    assert isinstance(pn.panel(app), pn.viewable.Viewable)


def test_column_pickers_offer_the_columns_in_the_files_order(app, tmp_path):
    (tmp_path / "order.csv").write_text("zeta,alpha,q10,q2,beta\n" + "".join(f"{i},{i + 1},{i},{i},{i}\n" for i in range(50)))
    _plot(app, "order.csv")
    file_order = ["zeta", "alpha", "q10", "q2", "beta"]
    for label in ("X", "Y", "Filter column"):
        assert widget(app, label, pn.widgets.Select).values == file_order, label
    assert widget(app, "Colour by", pn.widgets.Select).values == [""] + file_order
    assert [app.renames.param[p].label for p in app.renames.fields()] == file_order  # the rename fields too
    type_in(app, "New column name", "r")
    type_in(app, "Formula", "gamma + 1")
    click(app, "Add column")
    assert "Columns: zeta, alpha, q10, q2, beta." in error_text(app)


def test_a_filter_that_leaves_no_row_is_explained_beside_the_filters_whose_card_opens(app):
    from tests.panel_page import field_error_text
    _plot(app, "good.txt")
    card = next(c for c in app.__panel__().select(pn.Card) if c.title == "Derived columns and filters")
    assert card.collapsed
    type_in(app, "Filter column", "t")
    type_in(app, "min", "1e9")
    click(app, "Add filter")
    assert "filters exclude every row" in field_error_text(app) and not app.error  # beside, not at the top
    assert not card.collapsed

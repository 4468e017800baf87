"""The app keeps working after every kind of bad input, and registers itself with the Jupyter server."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from panel_apps.app import PlotApp
from panel_apps.config import PlotAppConfig
from panel_apps.sample_data import main as sample_data
from panel_apps.serverproxy import setup_plot_app


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
    app.path_input.value = name
    app._guard(app._preview)
    assert not app.error.visible, app.error.object
    asyncio.run(app._load())


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
    app.path_input.value = name
    app._guard(app._preview)
    assert app.error.visible and message in app.error.object
    _plot(app, "good.txt")
    assert not app.error.visible
    assert app.mode_indicator.object == "**Rasterized** (Datashader, 400 rows)"


def test_file_deleted_while_plotting(app, tmp_path):
    _plot(app, "good.txt")
    (tmp_path / "good.txt").unlink()
    app.spec.kind = "hist"
    assert app.error.visible and "deleted or moved" in app.error.object
    sample_data(["--out", str(tmp_path / "other.txt"), "--rows", "50"])
    _plot(app, "other.txt")
    assert app.mode_indicator.object == "**Histogram** (all 50 rows binned)"  # the chosen kind is kept


def test_filters_that_exclude_everything_and_bad_formulas_are_explained(app):
    _plot(app, "good.txt")
    app.filter_column.value, app.filter_min.value = "t", "1e9"
    app._guard(app._add_filter)
    assert "filters exclude every row" in app.error.object
    app._guard(app._clear_extras)
    assert not app.error.visible
    app.derived_name.value, app.derived_formula.value = "r", "__import__('os')"
    app._guard(app._add_derived)
    assert "not an allowed function" in app.error.object
    app.derived_formula.value = "sqrt(q1**2 + q2**2)"
    app._guard(app._add_derived)
    app.spec.y = "r"
    assert not app.error.visible and app.frame.columns.tolist() == ["t", "r"]


def test_standard_mode_is_refused_above_the_admin_limit_instead_of_freezing_the_browser(app):
    _plot(app, "good.txt")
    app.spec.mode = "standard"
    assert app.error.visible and "limit 300" in app.error.object


def test_renamed_columns_are_offered_for_plotting(app):
    app.path_input.value = "good.txt"
    app._guard(app._preview)
    app.rename_box.objects[0].objects[1].value = "charge1"
    app._guard(app._apply_renames)
    asyncio.run(app._load())
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
    app.path_input.value = "semi.txt"
    app._guard(app._preview)
    assert len(app.source.preview.frame) == 3 and app.source.options["delimiter"] == ";"
    app.delimiter.value, app.header.value = "semicolon", "yes"  # the first row names the columns
    app._guard(app._preview)
    assert not app.error.visible, app.error.object
    assert list(app.source.preview.frame.columns) == ["100", "200"] and len(app.source.preview.frame) == 2


def test_hdf5_table_choice_is_offered(app, tmp_path):
    import h5py
    import numpy as np
    with h5py.File(tmp_path / "two.h5", "w") as h5:
        h5["first"] = np.ones((5, 2))
        h5["second"] = np.arange(12.0).reshape(4, 3)
    app.path_input.value = "two.h5"
    app._guard(app._preview)
    assert app.table_choice.visible and app.table_choice.options == ["/first", "/second"]
    app.table_choice.value = "/second"
    app._guard(app._preview)
    assert app.source.total_rows == 4
    _plot(app, "good.txt")  # a text file after an HDF5 one: sniffed again, not given the table choice
    assert app.spec.x == "t"


def test_the_buttons_and_a_saved_configuration_follow_the_same_rules(app):
    import json

    from panel_apps.spec import PlotSpec
    _plot(app, "good.txt")
    typed_in, saved = [], []
    for widgets, config in [({"derived_name": "r 2", "derived_formula": "t"}, {"derived": {"r 2": "t"}}),
                            ({"derived_name": "r", "derived_formula": "t # x"}, {"derived": {"r": "t # x"}}),
                            ({"filter_column": "t", "filter_min": "inf"},
                             {"filters": [{"column": "t", "min": float("inf"), "max": None}]})]:
        for name, value in widgets.items():
            getattr(app, name).value = value
        with pytest.raises(ValueError) as typed:
            (app._add_derived if "derived_name" in widgets else app._add_filter)()
        with pytest.raises(ValueError) as loaded:
            PlotSpec.from_json(json.dumps({"version": 1, **config}))
        typed_in.append(str(typed.value))
        saved.append(str(loaded.value))
    assert all(t in s for t, s in zip(typed_in, saved)), (typed_in, saved)
    assert app.spec.derived == {} and app.spec.filters == []


def test_a_saved_configuration_that_does_not_fit_the_file_is_refused_with_the_field(app, tmp_path):
    import json
    from types import SimpleNamespace
    config = {"version": 1, "root": str(tmp_path), "path": "good.txt", "reader": {}, "kind": "scatter",
              "x": "t", "y": "energy"}
    asyncio.run(app._load_config(SimpleNamespace(new=json.dumps(config).encode())))
    assert app.error.visible and "no column 'energy'" in app.error.object
    _plot(app, "good.txt")  # still usable
    assert not app.error.visible


def test_formulas_that_would_freeze_the_server_give_a_sentence_and_the_app_stays_usable(app, tmp_path):
    import json
    import time
    from types import SimpleNamespace
    _plot(app, "good.txt")
    for formula, message in [("9**9**9", "too large"), ("7**7**8", "too large"), ("q1 + 1 / 0", "divides by zero")]:
        app.derived_name.value, app.derived_formula.value = "r", formula
        app._guard(app._add_derived)
        assert not app.error.visible, app.error.object
        start = time.monotonic()
        app.spec.y = "r"
        assert app.error.visible and message in app.error.object
        assert time.monotonic() - start < 5
        app._guard(app._clear_extras)
        assert not app.error.visible and app.spec.y == "q1" and len(app.frame) == 400  # usable again
    (tmp_path / "mixed.csv").write_text("t,name,q\n" + "".join(f"{i},word{i},{i * 2}\n" for i in range(50)))
    config = {"version": 1, "root": str(tmp_path), "path": "mixed.csv", "kind": "scatter", "x": "t", "y": "s",
              "derived": {"s": "name * 100000000"}}
    asyncio.run(app._load_config(SimpleNamespace(new=json.dumps(config).encode())))
    assert app.error.visible and "holds text" in app.error.object
    _plot(app, "good.txt")
    assert not app.error.visible


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
        app.spec.y = "q2"
        while not app.error.visible and loop.time() - start < 5:
            await asyncio.sleep(0.05)  # other sessions' work: runs only if the loop is free
            ticks += 1
        return ticks, loop.time() - start

    ticks, elapsed = asyncio.run(student_changes_the_y_column())
    assert app.error.visible and "longer than 0.5 s" in app.error.object
    assert elapsed < 2.5 and ticks >= 3  # blocked, the loop would not tick for 3 s
    monkeypatch.setattr(DataSource, "table", real_table)
    app.spec.y = "q3"
    assert not app.error.visible and app.frame.columns.tolist() == ["t", "q3"]


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
        app.spec.marker = "diamond"
        assert app._png_file() is None  # the frame on hand is the previous plot's
        assert app.error.visible and "still being drawn" in app.error.object
        await app._export_notebook()
        return app.status

    status = asyncio.run(student_changes_the_marker_and_exports_at_once())
    assert "Notebook written to ~/nebulahub-plots/" in status  # not overwritten by the late 'Plotted'
    assert app._png_file() is not None

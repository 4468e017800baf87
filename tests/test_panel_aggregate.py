"""A fresh server plots at once: the first frames need no compiler and show Datashader's pixels;
plots share the mapped columns of a file instead of copying them."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from panel_apps import aggregate
from panel_apps.aggregate import Grid


@pytest.fixture(scope="module")
def rows():
    """Points all over and around the ranges: NaN, infinities, zeros, negatives, values on the edges."""
    rng = np.random.default_rng(7)
    n = 200_000
    x = np.concatenate([rng.lognormal(0.0, 2.0, n), [np.nan, 0.0, -1.0, np.inf, 1e-3, 10.0, 10.0]])
    y = np.concatenate([rng.normal(size=n), [0.0, np.nan, 1.0, 2.0, -3.0, 4.0, -np.inf]])
    c = rng.normal(size=x.size)
    c[::11] = np.nan
    return x, y, c


@pytest.mark.parametrize("logx, logy", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("mean", [False, True], ids=["count", "mean"])
def test_the_first_frame_has_exactly_datashaders_pixels(rows, logx, logy, mean):
    x, y, c = rows
    grid = Grid(301, 197, (1e-3, 10.0), (0.01 if logy else -3.0, 4.0), logx, logy)
    counts, means = aggregate.numpy_points(x, y, grid, c if mean else None)
    import datashader as ds
    frame = pd.DataFrame({"x": x, "y": y, "c": c})
    canvas = ds.Canvas(301, 197, x_range=grid.x_range, y_range=grid.y_range,
                       x_axis_type="log" if logx else "linear", y_axis_type="log" if logy else "linear")
    expected = canvas.points(frame, "x", "y", agg=ds.count("c") if mean else ds.count()).values
    assert counts.sum() > 1000 and np.array_equal(counts, expected)  # every pixel, bit for bit
    if mean:
        np.testing.assert_allclose(means, canvas.points(frame, "x", "y", agg=ds.mean("c")).values,
                                   rtol=1e-12, equal_nan=True)


def test_once_datashader_has_compiled_the_same_call_gives_the_same_pixels(rows):
    x, y, _ = rows
    grid = Grid(64, 48, (0.1, 10.0), (-3.0, 3.0), True, False)
    cold = aggregate.points(x, y, grid)[0]
    aggregate._datashader(x, y, grid, None, "points")  # what the background warm-up does
    assert aggregate.datashader_ready(aggregate.kernel_key("points", False, grid, [x, y]))
    assert np.array_equal(aggregate.points(x, y, grid)[0], cold)


@pytest.mark.parametrize("logx", [False, True])
def test_a_count_split_between_cores_has_exactly_the_pixels_of_one(rows, monkeypatch, logx):
    x, y, _ = rows
    grid = Grid(301, 197, (1e-3, 10.0), (-3.0, 4.0), logx, False)
    aggregate._datashader(x, y, grid, None, "points")  # compiled, as after the warm-up
    one = aggregate._datashader(x, y, grid, None, "points")[0]
    monkeypatch.setattr(aggregate, "PARALLEL_ROWS", 1000)
    monkeypatch.setattr(aggregate, "_threads", lambda: 3)  # uneven parts, more than this machine's cores
    split = []
    real = aggregate._parallel_counts
    monkeypatch.setattr(aggregate, "_parallel_counts", lambda *a: split.append(1) or real(*a))
    counts, means = aggregate.points(x, y, grid)
    assert split and means is None
    assert counts.sum() > 1000 and np.array_equal(counts, one)


def test_a_frame_never_waits_for_the_warm_up_compiling_another_kernel(rows):
    """The warm-up holds Datashader's lock while it compiles a kernel (up to a second): a frame
    meanwhile is aggregated with numpy, the same pixels, instead of waiting."""
    import threading
    x, y, c = rows
    grid = Grid(64, 48, (0.1, 10.0), (-3.0, 3.0), False, False)
    aggregate._datashader(x, y, grid, None, "points")
    aggregate._datashader_sums(x, y, grid, None)
    expected = aggregate.numpy_points(x, y, grid)[0]
    held, done = threading.Event(), threading.Event()

    def compiling():
        with aggregate.DATASHADER_LOCK:
            held.set()
            done.wait(30)
    warm_up = threading.Thread(target=compiling)
    warm_up.start()
    try:
        assert held.wait(10)
        assert np.array_equal(aggregate.points(x, y, grid)[0], expected)
        assert np.array_equal(aggregate.point_sums(x, y, grid)[0], expected)
        assert warm_up.is_alive()  # it returned while the lock was still held
    finally:
        done.set()
        warm_up.join()


LAZY_WARM_UP = """
import time
import numpy as np
from panel_apps import aggregate
from panel_apps.aggregate import Grid, kernel_key
x, y, c = (np.random.default_rng(1).lognormal(size=5000) for _ in range(3))
log_grid = Grid(40, 30, (0.1, 10.0), (0.1, 10.0), True, False)
key = kernel_key("points", False, log_grid, [x, y])
aggregate.points(x, y, log_grid)           # the first frame: numpy, nothing compiles beside it
time.sleep(0.5)
assert not aggregate._READY and aggregate._COMPILER is None, aggregate._READY
aggregate.start_warm_up()                  # after the first frame: its kind compiles
deadline = time.monotonic() + 120
while key not in aggregate._READY:
    assert time.monotonic() < deadline, "not compiled"
    time.sleep(0.1)
mean_grid = Grid(40, 30, (0.1, 10.0), (0.1, 10.0), False, True)
aggregate.points(x, y, mean_grid, c)       # a new kind: numpy now, compiled after
mean_key = kernel_key("points", True, mean_grid, [x, y, c])
while mean_key not in aggregate._READY:
    assert time.monotonic() < deadline, "the new kind was not compiled"
    time.sleep(0.1)
aggregate._COMPILER.join(30)
print(sorted(map(repr, aggregate._READY)))
"""


def test_only_the_kinds_of_frames_asked_for_are_compiled_one_after_the_other():
    """After the first frame the warm-up compiles that frame's kind, then each new kind after its
    first (numpy) frame; not the 32 kinds up front (which held Datashader's lock for ~30 s)."""
    out = subprocess.run([sys.executable, "-c", LAZY_WARM_UP], capture_output=True, text=True, timeout=300,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(sorted(["('points', False, True, False, False)",
                                             "('points', True, False, True, False)"]))


def test_a_fresh_app_process_draws_its_first_frame_without_compiling():
    from panel_apps.prepare import first_frame_check
    report = first_frame_check(rows=20_000)
    assert report["rows"] == 20_000
    assert not report["numba"] and not report["datashader"], report  # nothing to compile was even loaded


@pytest.mark.parametrize("marker, size, footprint", [("circle", 1, 1), ("square", 5, 25), ("square", 4, 9),
                                                     ("diamond", 5, 13), ("cross", 7, 13), ("x", 7, 13)])
def test_a_rasterized_marker_covers_its_size_in_pixels_and_its_shape(marker, size, footprint):
    from panel_apps import render
    from panel_apps.settings import RASTERIZED, plot_settings
    from panel_apps.spec import PlotSpec
    spec = PlotSpec(kind="scatter", marker=marker, size=size, width=270, height=260)
    spec.set_columns(["x", "y"])
    frame = pd.DataFrame({"x": [50.0], "y": [50.0]})
    agg = render.aggregate(frame, plot_settings(spec, RASTERIZED), (0, 100), (0, 100), 101, 101)
    covered = ~np.isnan(agg.image)
    assert covered.sum() == footprint and agg.rows_in_view == 1
    rows_, cols = np.nonzero(covered)
    assert rows_.max() - rows_.min() + 1 == cols.max() - cols.min() + 1 == (size - 1) // 2 * 2 + 1


def test_a_triangle_points_up_the_y_axis():
    mask = aggregate.marker_mask("triangle", 7)
    assert mask[0].all() and mask[-1].sum() == 1  # wide at the lowest y, a point at the top


_TWO_TABS = """
import asyncio, gc, json, os, sys, tracemalloc
from panel_apps import aggregate
from panel_apps.dataset import DataSource
from panel_apps.app import PlotApp
from panel_apps.config import PlotAppConfig
from tests.panel_page import click, error_text, type_in

def held():
    # what a tab holds: objects it keeps (numpy arrays included) + pages of the cache it mapped in
    # (the resident set size would also count what the allocator keeps of freed temporaries,
    # and the code of modules imported on the way)
    gc.collect()
    mapped, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()
            if len(head) >= 5 and "-" in head[0]:
                inside = len(head) >= 6 and head[5].startswith(sys.argv[2])
            elif inside and head[0] == "Rss:":
                mapped += int(head[1]) * 1024
    return tracemalloc.get_traced_memory()[0] + mapped

def tab(name):
    app = PlotApp(PlotAppConfig(home=sys.argv[1], data_roots=[], cache_dir=sys.argv[2], rasterize_threshold=100))
    type_in(app, "…or type a path inside the folder", name)
    click(app, "Preview")
    asyncio.run(app.load())
    assert not error_text(app), app.error
    assert app.raster is not None and app.raster.last.rows_in_view > 0
    return app

# no compiler's memory in the figures: what a tab holds is measured (a background compile started by
# the first tab would still be allocating while the others are measured)
aggregate.start_warm_up = lambda: None
warm = tab("small.txt")  # imports and first-use allocations, not what a tab costs
DataSource(os.path.join(sys.argv[1], "big.txt")).prepare(warm.config.user_cache_dir())  # converted before
tracemalloc.start()
before_page = held()
page = tab("small.txt")  # the page itself (widgets, figure, image): what any tab holds
start = held()
first = tab("big.txt")
after_first = held()
second = tab("big.txt")
after_second = held()
print(json.dumps({"page": start - before_page, "first": after_first - start, "second": after_second - after_first,
                  "rows": first.source.total_rows}))
"""


def test_two_tabs_plotting_one_file_share_its_columns(tmp_path):
    from panel_apps.sample_data import format_scientific
    rows = 2_000_000
    t = np.arange(rows) * 1e-3
    with open(tmp_path / "big.txt", "wb") as fh:
        for start in range(0, rows, 500_000):
            part = t[start:start + 500_000]
            fh.write(format_scientific(np.column_stack([part, np.sin(part), np.cos(part)])))
    (tmp_path / "small.txt").write_text("".join(f"{i} {i % 7} {i % 3}\n" for i in range(2000)))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_TWO_TABS), str(tmp_path), str(tmp_path / "cache")],
                         capture_output=True, text=True, cwd=str(Path(__file__).parents[1]))
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    plotted = rows * 2 * 8  # the two plotted float64 columns
    assert report["rows"] == rows, report
    one_column = rows * 8
    # the columns once (mapped), and less than one copy of any column on top: a tab's own figure and
    # image vary by a few MB from run to run (measured 37-42 MB here for 32 MB of columns)
    assert report["first"] - report["page"] <= plotted + 0.75 * one_column, report
    assert report["second"] - report["page"] <= 0.2 * plotted, report  # the second tab maps the same pages

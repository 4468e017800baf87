"""A student plots data in real Chromium, through the hub.

A real jupyterhub + configurable-http-proxy serves the student's server (local provider), where
jupyter-server-proxy starts the Panel app at /user/student/nebulahub-plot/ with a low rasterize
threshold; the student logs in at the hub's login page and Playwright drives the Debian Chromium.
Waits are on page content (Playwright's auto-retrying expectations), never on sleeps.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, hub_login
from tests.test_panel_render import _plot_frame

pytestmark = pytest.mark.browser

PREFIX = "/user/student/nebulahub-plot"
BIG_ROWS, THRESHOLD = 5000, 1000


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("plot-hub")


@pytest.fixture(scope="module")
def home(shared_tmp, request):
    """The student's home on their server (local provider), with the files to plot (they become
    the student account's when the server starts). Homes live where users' own Unix accounts can
    reach them, one folder per test module."""
    from panel_apps.sample_data import main as sample_data
    home = Path(shared_tmp) / f"homes-{request.module.__name__.rsplit('.', 1)[-1]}" / "student"
    sample_data(["--out", str(home / "josephson.txt"), "--rows", str(BIG_ROWS)])
    sample_data(["--out", str(home / "small" / "junction.txt"), "--rows", "300"])
    (home / "garbage.dat").write_bytes(bytes(range(256)) * 20)
    return home


@pytest.fixture(scope="module")
def hub(hub_dir, home, local_accounts):
    """A real hub + proxy; the student's server (local provider, the student's own Unix account)
    runs the app behind it."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed")
    import textwrap

    from tests.hubproc import HubProcess
    h = HubProcess(hub_dir / "hub", textwrap.dedent(f"""
        c.OpenNebulaSpawner.provider = "local"
        c.LocalProvider.home_root = "{home.parent}/{{username}}"
        c.OpenNebulaSpawner.profiles = [
            {{"slug": "student", "name": "Student", "default_url": "/nebulahub-plot/"}}]
        c.OpenNebulaSpawner.environment = {{"NEBULAHUB_RASTERIZE_THRESHOLD": "{THRESHOLD}"}}
    """) + local_accounts.config)
    h.start()
    h.create_user("student")
    assert h.spawn("student").status_code == 202
    assert h.progress("student")[-1].get("ready"), h.log()[-3000:]
    yield h
    h.stop()


@pytest.fixture(scope="module")
def app_url(hub):
    return f"{hub.url}{PREFIX}/"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def login_state(browser, hub, tmp_path_factory):
    """The student logs in once at the hub's login page; tests reuse the session cookies."""
    context = browser.new_context()
    page = context.new_page()
    hub_login(page, hub.url, "student", "test-password")
    page.wait_for_url(re.compile(r".*/(hub/(home|spawn.*)|user/student/.*)$"), timeout=60_000)
    state = str(tmp_path_factory.mktemp("login") / "state.json")
    context.storage_state(path=state)
    context.close()
    return state


def new_student_page(browser, login_state):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True,
                                  storage_state=login_state)
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


@pytest.fixture
def page(browser, app_url, login_state):
    from playwright.sync_api import expect
    expect.set_options(timeout=20_000)  # another test run may share the 2 cores: be patient, never sleep
    page = new_student_page(browser, login_state)
    page.goto(app_url)
    expect(page.locator(".nh-status p")).to_contain_text("data files in", timeout=60_000)
    assert "/user/student/nebulahub-plot/" in page.url  # served through the hub's proxy
    yield page
    page.context.close()


def _open(page, name: str):
    from playwright.sync_api import expect
    page.get_by_role("combobox", name="File").select_option(name)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".nh-preview table")).to_be_visible()
    page.get_by_role("button", name="Load and plot").click()
    expect(page.locator(".nh-status p")).to_contain_text("Plotted", timeout=30_000)


def _text(page, css: str) -> str:
    return page.locator(f"{css} p").inner_text()


def _view_numbers(text: str):
    m = re.search(r"x (\S+) … (\S+), y (\S+) … (\S+) · rows in view: ([\d,]+)", text)
    assert m, text
    x0, x1, y0, y1 = map(float, m.groups()[:4])
    return (x0, x1), (y0, y1), int(m.group(5).replace(",", ""))


def test_student_picks_a_file_sees_the_preview_and_plots_with_chosen_columns_and_marker(page):
    from playwright.sync_api import expect
    page.get_by_role("combobox", name="File").select_option("small/junction.txt")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".nh-preview table")).to_contain_text("q10")
    expect(page.locator(".nh-types p")).to_contain_text("t float64")
    page.get_by_role("button", name="Load and plot").click()
    expect(page.locator(".nh-mode p")).to_have_text("Standard (Bokeh glyphs, 300 rows)", timeout=30_000)
    page.get_by_role("combobox", name="Y", exact=True).select_option("q3")
    page.get_by_role("combobox", name="Marker").select_option("square")
    expect(page.locator(".nh-plot canvas").first).to_be_visible()
    page.wait_for_function("""() => Array.from(Bokeh.documents[0].all_models).some(m => m.type === 'Scatter'
        && (m.marker.value ?? m.marker) === 'square')""", timeout=15_000)
    labels = page.evaluate("""() => Array.from(Bokeh.documents[0].all_models)
        .filter(m => m.type === 'LinearAxis').map(m => m.axis_label)""")
    assert "q3" in labels and "t" in labels


def test_bad_file_shows_a_message_and_the_app_stays_usable(page):
    from playwright.sync_api import expect
    page.get_by_role("combobox", name="File").select_option("garbage.dat")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".nh-error")).to_contain_text("binary data")
    page.get_by_role("textbox", name="…or type a path inside the folder").fill("../../etc/passwd")
    page.get_by_role("textbox", name="…or type a path inside the folder").press("Enter")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".nh-error")).to_contain_text("uses '..'")
    _open(page, "small/junction.txt")
    expect(page.locator(".nh-error")).to_be_hidden()


def test_above_the_threshold_the_plot_is_rasterized_and_a_zoom_reaggregates_on_the_server(page):
    from playwright.sync_api import expect
    _open(page, "josephson.txt")
    expect(page.locator(".nh-mode p")).to_have_text(f"Rasterized (Datashader, {BIG_ROWS:,} rows)")
    before = _text(page, ".nh-view")
    (x0, x1), _, rows = _view_numbers(before)
    assert rows == BIG_ROWS  # every row aggregated, nothing sampled
    plot = page.locator(".nh-plot canvas").first
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
    page.mouse.wheel(0, -400)
    expect(page.locator(".nh-view p")).not_to_have_text(before, timeout=15_000)
    (z0, z1), _, zoomed_rows = _view_numbers(_text(page, ".nh-view"))
    assert x0 < z0 < z1 < x1 and 0 < zoomed_rows < BIG_ROWS
    # the image in the browser is the server's new aggregate of the zoomed range
    starts = page.evaluate("""() => Array.from(Bokeh.documents[0].all_models)
        .filter(m => m.type === 'ColumnDataSource' && 'image' in m.data).map(m => m.data.x[0])""")
    assert starts and abs(starts[0] - z0) <= abs(z1 - z0) * 1e-3


def test_histogram_and_2d_histogram_render(page):
    from playwright.sync_api import expect
    _open(page, "josephson.txt")
    page.get_by_role("combobox", name="Kind").select_option("hist")
    expect(page.locator(".nh-mode p")).to_have_text(f"Histogram (all {BIG_ROWS:,} rows binned)")
    page.wait_for_function("() => Array.from(Bokeh.documents[0].all_models).some(m => m.type === 'Quad')")
    span_js = """() => Array.from(Bokeh.documents[0].all_models)
        .filter(m => m.type === 'GlyphRenderer' && m.glyph.type === 'Quad')
        .map(r => { const d = r.data_source.data; return [d.left[0], d.right[d.right.length - 1], d.left.length]; })[0]"""
    lo, hi, nbins = page.evaluate(span_js)
    plot = page.locator(".nh-plot canvas").first
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.mouse.wheel(0, -400)  # zoom in: the server re-bins the visible range
    page.wait_for_function(f"() => {{ const s = ({span_js})(); return s && (s[1] - s[0]) < {(hi - lo) * 0.9}; }}",
                           timeout=15_000)
    zlo, zhi, znbins = page.evaluate(span_js)
    assert lo < zlo < zhi < hi and znbins == nbins  # as many bins as before, over the narrower range
    page.get_by_role("combobox", name="Kind").select_option("hist2d")
    expect(page.locator(".nh-mode p")).to_have_text(f"Rasterized (2-D histogram, Datashader, {BIG_ROWS:,} rows)")
    _, _, rows = _view_numbers(_text(page, ".nh-view"))
    assert rows == BIG_ROWS


def test_a_click_on_the_words_log_x_log_y_or_skip_bad_lines_ticks_their_box(page):
    from playwright.sync_api import expect
    _open(page, "josephson.txt")
    def drawn_with(x: str, y: str) -> str:  # a figure with these axis scales is in the page
        return (f"() => Array.from(Bokeh.documents[0].all_models).some(m => m.type === 'Figure' "
                f"&& m.x_scale.type === '{x}' && m.y_scale.type === '{y}')")
    assert page.evaluate(drawn_with("LinearScale", "LinearScale"))
    page.get_by_text("Log x", exact=True).click()
    expect(page.get_by_role("checkbox", name="Log x")).to_be_checked()
    page.wait_for_function(drawn_with("LogScale", "LinearScale"), timeout=15_000)
    page.get_by_text("Log y", exact=True).click()
    expect(page.get_by_role("checkbox", name="Log y")).to_be_checked()
    page.wait_for_function(drawn_with("LogScale", "LogScale"), timeout=15_000)
    page.get_by_text("Log x", exact=True).click()
    expect(page.get_by_role("checkbox", name="Log x")).not_to_be_checked()
    page.wait_for_function(drawn_with("LinearScale", "LogScale"), timeout=15_000)
    page.get_by_text("Skip bad lines", exact=True).click()
    expect(page.get_by_role("checkbox", name="Skip bad lines")).to_be_checked()


def test_closing_the_tab_while_the_plot_redraws_logs_no_traceback(browser, app_url, login_state, home):
    """The student closes the tab in the middle of zooming: the server's log (the single-user server,
    its jupyter-server-proxy and the app it runs, one file) says the connection closed, and shows
    no traceback."""
    import time

    from playwright.sync_api import expect
    log = max((home / ".nebulahub" / "servers").glob("*/server.log"), key=lambda f: f.stat().st_mtime)
    start = log.stat().st_size
    page = new_student_page(browser, login_state)
    page.goto(app_url)
    expect(page.locator(".nh-status p")).to_contain_text("data files in", timeout=60_000)
    _open(page, "josephson.txt")
    box = page.locator(".nh-plot canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
    for _ in range(3):  # frames are on their way to the browser when the tab closes
        page.mouse.wheel(0, -200)
    page.context.close()
    deadline = time.monotonic() + 30
    while b"WebSocket connection closed" not in log.read_bytes()[start:] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # what the close sets off (the proxy's last messages) is logged within moments
    assert b"WebSocket connection closed" in log.read_bytes()[start:]
    written = log.read_text(errors="replace")  # this tab's close, and every tab closed before it in this module
    assert "Traceback" not in written and "Uncaught exception" not in written, written[-3000:]


def test_a_bad_formula_or_a_filter_that_leaves_no_row_is_explained_beside_it(page):
    from playwright.sync_api import expect
    _open(page, "small/junction.txt")
    beside, top = page.locator(".nh-field-error"), page.locator(".nh-error")
    page.get_by_text("Derived columns and filters").click()
    page.get_by_role("textbox", name="New column name").fill("r")
    page.get_by_role("textbox", name="Formula").fill("q1 +* 2")
    page.get_by_role("button", name="Add column").click()
    expect(beside).to_contain_text("The formula is not valid")
    expect(top).to_be_hidden()
    formula = page.get_by_role("textbox", name="Formula").bounding_box()
    sentence = beside.bounding_box()
    filters = page.get_by_role("combobox", name="Filter column").bounding_box()
    assert formula["y"] < sentence["y"] < filters["y"]  # right under the formula, above the filter fields
    page.get_by_role("combobox", name="Filter column").select_option("t")
    page.get_by_role("textbox", name="min", exact=True).fill("1e9")
    page.get_by_role("textbox", name="min", exact=True).press("Enter")
    page.get_by_role("button", name="Add filter").click()
    expect(beside).to_contain_text("the filters exclude every row")
    expect(top).to_be_hidden()
    page.get_by_role("button", name="Clear filters and columns").click()
    expect(beside).to_be_hidden()


def test_png_export_downloads_a_decodable_png_of_the_plot_size(page):
    from PIL import Image
    from playwright.sync_api import expect
    _open(page, "josephson.txt")
    width = page.get_by_role("spinbutton", name="Width") if page.get_by_role("spinbutton", name="Width").count() \
        else page.get_by_role("textbox", name="Width")
    width.fill("640")
    width.press("Enter")
    expect(page.locator(".nh-view p")).to_be_visible()
    page.wait_for_function("""() => Array.from(Bokeh.documents[0].all_models)
        .some(m => m.type === 'Figure' && m.width === 640)""", timeout=15_000)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download PNG").click()
    data = Path(info.value.path()).read_bytes()
    img = Image.open(io.BytesIO(data))
    img.verify()
    assert img.format == "PNG" and img.size == (640, 500)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    left, top, right, bottom, _ = _plot_frame(img)  # a framed plot area, ticks out of its axes, on white
    assert img.getpixel((0, 0)) == (255, 255, 255) and 0 < left < right < 640 and 0 < top < bottom < 500
    assert np.asarray(img.convert("L"))[bottom + 3, left + 1:right].min() < 60


def test_saved_configuration_reloads_the_same_plot(page, browser, app_url, login_state, tmp_path):
    from playwright.sync_api import expect
    _open(page, "josephson.txt")
    page.get_by_role("combobox", name="Kind").select_option("hist2d")
    page.get_by_role("textbox", name="Title").fill("Junction 3 against time")
    page.get_by_role("textbox", name="Title").press("Enter")
    page.get_by_role("combobox", name="Y", exact=True).select_option("q3")
    expect(page.locator(".nh-mode p")).to_contain_text("2-D histogram")
    page.wait_for_function("""() => Array.from(Bokeh.documents[0].all_models)
        .some(m => m.type === 'Title' && m.text === 'Junction 3 against time')
        && Array.from(Bokeh.documents[0].all_models).some(m => m.type === 'LinearAxis' && m.axis_label === 'q3')""")
    view = _text(page, ".nh-view")
    with page.expect_download() as info:
        page.get_by_role("button", name="Save configuration").click()
    saved = tmp_path / "plot-config.json"
    info.value.save_as(saved)

    fresh = new_student_page(browser, login_state)
    fresh.goto(app_url)
    expect(fresh.locator(".nh-status p")).to_contain_text("data files in", timeout=30_000)
    fresh.locator("input[type=file]").set_input_files(str(saved))
    expect(fresh.locator(".nh-mode p")).to_contain_text("2-D histogram", timeout=30_000)
    expect(fresh.locator(".nh-view p")).to_have_text(view)
    fresh.wait_for_function("""() => Array.from(Bokeh.documents[0].all_models)
        .some(m => m.type === 'Title' && m.text === 'Junction 3 against time')""")
    fresh.context.close()


def test_exported_notebook_executes_and_draws_the_plot(page, home):
    import nbclient
    import nbformat
    from playwright.sync_api import expect
    _open(page, "josephson.txt")
    page.get_by_role("combobox", name="Marker").select_option("diamond")
    page.get_by_role("button", name="Open as notebook").click()
    # the notebook is written once the replot for the new marker has settled: on a loaded machine
    # that took longer than the default wait once in seven runs
    expect(page.locator(".nh-status p")).to_contain_text("Notebook written to ~/nebulahub-plots/",
                                                         timeout=60_000)
    name = re.search(r"~/(nebulahub-plots/\S+\.ipynb)", _text(page, ".nh-status")).group(1)
    nb = nbformat.read(home / name, as_version=4)
    assert "rasterize=True" in nb.cells[-1].source  # the app drew it rasterized: so does the notebook
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(home)}}).execute()
    outputs = nb.cells[-1].outputs
    mimes = {m for o in outputs for m in o.get("data", {})}
    assert any("holoviews" in m or m == "text/html" for m in mimes), mimes

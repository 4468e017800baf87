"""A student plots data in real Chromium: the Panel app served under a hub-like URL prefix.

The app runs as jupyter-server-proxy would start it (``python -m panel_apps.launcher --prefix
/user/<name>/nebulahub-plot``) with a low rasterize threshold, and Playwright drives the Debian
Chromium. Waits are on page content (Playwright's auto-retrying expectations), never on sleeps.
"""
from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PREFIX = "/user/student/nebulahub-plot"
BIG_ROWS, THRESHOLD = 5000, 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from panel_apps.sample_data import main as sample_data
    home = tmp_path_factory.mktemp("student-home")
    sample_data(["--out", str(home / "josephson.txt"), "--rows", str(BIG_ROWS)])
    sample_data(["--out", str(home / "small" / "junction.txt"), "--rows", "300"])
    (home / "garbage.dat").write_bytes(bytes(range(256)) * 20)
    return home


@pytest.fixture(scope="module")
def app_url(home):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed")
    port = _free_port()
    env = {**os.environ, "HOME": str(home), "NEBULAHUB_RASTERIZE_THRESHOLD": str(THRESHOLD),
           "NEBULAHUB_CACHE_DIR": str(home / ".cache" / "plot")}
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "panel_apps.launcher", "--port", str(port), "--prefix", PREFIX],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1])
    url = f"http://127.0.0.1:{port}{PREFIX}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("plot app did not start:\n" + (home / "server.log").read_text()[-3000:])
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    from playwright.sync_api import expect
    expect.set_options(timeout=20_000)  # another test run may share the 2 cores: be patient, never sleep
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(app_url)
    expect(page.locator(".nh-status p")).to_contain_text("data files in", timeout=30_000)
    yield page
    context.close()


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
    page.get_by_role("combobox", name="Kind").select_option("hist2d")
    expect(page.locator(".nh-mode p")).to_have_text(f"Rasterized (2-D histogram, Datashader, {BIG_ROWS:,} rows)")
    _, _, rows = _view_numbers(_text(page, ".nh-view"))
    assert rows == BIG_ROWS


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


def test_saved_configuration_reloads_the_same_plot(page, browser, app_url, tmp_path):
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

    fresh = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
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
    expect(page.locator(".nh-status p")).to_contain_text("Notebook written to ~/nebulahub-plots/")
    name = re.search(r"~/(nebulahub-plots/\S+\.ipynb)", _text(page, ".nh-status")).group(1)
    nb = nbformat.read(home / name, as_version=4)
    assert "rasterize=True" in nb.cells[-1].source  # the app drew it rasterized: so does the notebook
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(home)}}).execute()
    outputs = nb.cells[-1].outputs
    mimes = {m for o in outputs for m in o.get("data", {})}
    assert any("holoviews" in m or m == "text/html" for m in mimes), mimes


@pytest.fixture(scope="module")
def jupyter_server_url(home):
    """A single-user Jupyter server at /user/student/, as the hub starts it (without the hub)."""
    import signal
    port, token = _free_port(), "plot-app-test-token"
    env = {**os.environ, "HOME": str(home), "NEBULAHUB_RASTERIZE_THRESHOLD": str(THRESHOLD),
           "NEBULAHUB_CACHE_DIR": str(home / ".cache" / "plot-proxied")}
    log = open(home / "jupyter-server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_server", f"--port={port}", "--ServerApp.ip=127.0.0.1",
                             f"--ServerApp.token={token}", "--ServerApp.base_url=/user/student/", "--no-browser",
                             "--allow-root"], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}/user/student/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}api/status?token={token}", timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("jupyter server did not start:\n" + (home / "jupyter-server.log").read_text()[-3000:])
            time.sleep(0.3)
    yield f"{base}nebulahub-plot/?token={token}"
    proc.terminate()  # jupyter-server-proxy stops the Panel server it started
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_app_works_behind_jupyter_server_proxy_at_the_user_url(browser, jupyter_server_url):
    """Static files, websocket and plotting through /user/<name>/nebulahub-plot/ (the hub adds only login)."""
    from playwright.sync_api import expect
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(jupyter_server_url)  # first visit starts the Panel server through jupyter-server-proxy
    expect(page.locator(".nh-status p")).to_contain_text("data files in", timeout=60_000)
    _open(page, "josephson.txt")
    expect(page.locator(".nh-mode p")).to_have_text(f"Rasterized (Datashader, {BIG_ROWS:,} rows)")
    assert "/user/student/nebulahub-plot/" in page.url
    context.close()

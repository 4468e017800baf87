"""Zoom as the student feels it: Chromium's wheel event -> the server's new image painted.

As the student uses it (run as root): a real hub with configurable-http-proxy, the student's own
server (local provider, a throw-away Unix account) with the seed file in its home, the app behind
jupyter-server-proxy; the Debian Chromium (Playwright) logs in at the hub, plots the file and
zooms 20 times with the mouse wheel. ``--direct`` (or not root): the app served alone
(``python -m panel_apps.launcher --port``), Chromium straight to it. Each zoom is timed in the
page from the wheel event's time stamp (when Chromium dispatched it, not when the benchmark asked
for it) to the end of the task in which the plot first drew itself after a new image arrived (the
new picture painted). Run alone it prints p50/p95; ``benchmarks/bench_plot.py`` prints them next to the
server-side figure.
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOOK = """() => {
  // every image source of the document: a file plotted while it was converted had a figure
  // before this one, whose models the document may still hold; only the live one changes
  const models = Array.from(Bokeh.documents[0].all_models);
  const sources = models.filter(m => m.type === 'ColumnDataSource' && 'image' in m.data);
  window.__painted = 0;
  window.__wheel = 0;  // when Chromium dispatched the wheel event (the page's clock)
  window.addEventListener('wheel', e => { window.__wheel = e.timeStamp; window.__painted = 0; },
                          {capture: true, passive: true});
  let seen = sources.map(s => s.data);
  // painted: the end of the task in which the plot first draws itself after a new image arrived
  // (BokehJS draws in an animation frame, sometimes a frame later than the data came; the
  // message posted there runs once that frame's drawing is done); later changes of the source
  // (the hover's numbers follow the picture) do not count
  for (const view of models.filter(m => m.type === 'Figure').map(m => Bokeh.index.find_one(m)).filter(v => v)) {
    const paint = view._actual_paint.bind(view);
    view._actual_paint = (...args) => {
      const result = paint(...args);
      const now = sources.map(s => s.data);
      if (now.some((d, i) => d !== seen[i])) {
        seen = now;
        const channel = new MessageChannel();
        channel.port1.onmessage = () => { if (!window.__painted) window.__painted = performance.now(); };
        channel.port2.postMessage(0);
      }
      return result;
    };
  }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _zoom(page, app_url: str, name: str, zooms: int) -> list[float]:
    """Plot ``name`` in the app at ``app_url`` and time ``zooms`` wheel zooms (seconds each)."""
    from playwright.sync_api import expect

    page.set_default_timeout(120_000)
    expect.set_options(timeout=120_000)
    from playwright.sync_api import Error as PlaywrightError
    for _ in range(100):  # the app alone may still be starting
        try:
            page.goto(app_url)
            break
        except PlaywrightError:
            time.sleep(0.3)
    page.get_by_role("textbox", name="…or type a path inside the folder").fill(name)
    page.get_by_role("textbox", name="…or type a path inside the folder").press("Enter")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".nh-preview table")).to_be_visible()
    page.get_by_role("button", name="Load and plot").click()
    expect(page.locator(".nh-status p").first).to_contain_text("Plotted")
    time.sleep(15)  # Datashader's background compile finishes: the zooms are the student's later ones
    plot = page.locator(".nh-plot canvas").first
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
    page.evaluate(HOOK)
    times = []
    for _ in range(zooms):
        start = page.evaluate("() => performance.now()")
        page.mouse.wheel(0, -120)
        page.wait_for_function(f"() => window.__painted > {start}")
        times.append(page.evaluate("() => window.__painted - window.__wheel") / 1e3)
        page.wait_for_timeout(150)  # a student's pause between wheel notches
    return times


def _summary(times: list[float]) -> dict:
    times = sorted(times)
    return {"p50": statistics.median(times), "p95": times[round(0.95 * (len(times) - 1))], "runs": times}


def direct_zoom(text: Path, zooms: int = 20) -> dict:
    """The app served alone (``python -m panel_apps.launcher --port``), Chromium straight to it."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS
    port = _free_port()
    env = dict(os.environ, HOME=str(text.parent), NEBULAHUB_CACHE_DIR=str(text.parent / "cache"))
    server = subprocess.Popen([sys.executable, "-m", "panel_apps.launcher", "--port", str(port)], env=env,
                              cwd=str(Path(__file__).resolve().parents[1]), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            times = _zoom(page, f"http://127.0.0.1:{port}/", text.name, zooms)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    return _summary(times)


def hub_zoom(text: Path, zooms: int = 20) -> dict:
    """What the student uses: a real hub and configurable-http-proxy, the student's own server (local
    provider, their own Unix account), the app behind jupyter-server-proxy; Chromium logs in at the
    hub. Needs root (the account is created and removed here)."""
    import secrets
    import shutil
    import tempfile
    import textwrap

    from playwright.sync_api import sync_playwright

    from machines.localusers import remove_created
    from machines.serverenv import ensure_server_env
    from tests.browser import CHROMIUM, CHROMIUM_ARGS, hub_login
    from tests.hubproc import HubProcess, local_provider_config

    env_path = ensure_server_env()
    work = Path(tempfile.mkdtemp(prefix="nebulahub-bench-zoom-", dir="/var/tmp"))
    os.chmod(work, 0o711)
    registry = str(work / "created-accounts")
    home = work / "homes" / "student"
    home.mkdir(parents=True)
    shutil.copy(text, home / text.name)
    hub = HubProcess(work / "hub", local_provider_config(
        str(home.parent), env_path, f"nhb{secrets.token_hex(2)}-", registry) + textwrap.dedent("""
        c.OpenNebulaSpawner.profiles = [
            {"slug": "student", "name": "Student", "default_url": "/nebulahub-plot/"}]
    """))
    try:
        hub.start()
        hub.create_user("student")
        assert hub.spawn("student").status_code in (201, 202)
        assert hub.progress("student")[-1].get("ready"), hub.log()[-3000:]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            hub_login(page, hub.url, "student", "test-password")
            times = _zoom(page, f"{hub.url}/user/student/nebulahub-plot/", text.name, zooms)
            browser.close()
    finally:
        hub.stop()
        remove_created(registry)  # stops what the account left running, then removes it
        shutil.rmtree(work, ignore_errors=True)
    return _summary(times)


def browser_zoom(text: Path, zooms: int = 20) -> dict:
    """Through the hub when run as root (as the student uses it), else the app served alone."""
    return hub_zoom(text, zooms) if os.geteuid() == 0 else {**direct_zoom(text, zooms), "direct": True}


if __name__ == "__main__":
    from benchmarks.bench_plot import seed_file
    direct = "--direct" in sys.argv[1:]
    result = direct_zoom(seed_file()) if direct else browser_zoom(seed_file())
    where = "the app alone" if direct or result.get("direct") else "through the hub"
    print(f"zoom in Chromium ({where}), wheel -> painted: p50 {result['p50'] * 1e3:.0f} ms, "
          f"p95 {result['p95'] * 1e3:.0f} ms; each, ms: {' '.join(f'{t * 1e3:.0f}' for t in result['runs'])}")

"""Zoom as the student feels it: Chromium's wheel event -> the server's new image painted.

Starts the plot app (``python -m panel_apps.launcher --port``) with the seed file in its home,
opens it in the Debian Chromium (Playwright), plots the file and zooms 20 times with the mouse
wheel; each zoom is timed in the page from just before the wheel event to the first animation
frame after the image's data source changed (the new picture painted). Run alone it prints
p50/p95; ``benchmarks/bench_plot.py`` prints them next to the server-side figure.
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
  const cds = Array.from(Bokeh.documents[0].all_models).find(m => m.type === 'ColumnDataSource' && 'image' in m.data);
  window.__painted = 0;
  let seen = cds.data;
  const watch = () => {  // each animation frame: has a new image arrived (and so been painted)?
    if (cds.data !== seen) { seen = cds.data; window.__painted = performance.now(); }
    requestAnimationFrame(watch);
  };
  requestAnimationFrame(watch);
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_zoom(text: Path, zooms: int = 20) -> dict:
    """p50/p95 seconds from wheel to painted over ``zooms`` zooms of the plotted ``text`` file."""
    from playwright.sync_api import expect, sync_playwright

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
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            for _ in range(100):
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:
                    time.sleep(0.3)
            page.get_by_role("textbox", name="…or type a path inside the folder").fill(text.name)
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
                times.append((page.evaluate("() => window.__painted") - start) / 1e3)
                page.wait_for_timeout(150)  # a student's pause between wheel notches
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    times.sort()
    return {"p50": statistics.median(times), "p95": times[round(0.95 * (len(times) - 1))], "runs": times}


if __name__ == "__main__":
    from benchmarks.bench_plot import seed_file
    result = browser_zoom(seed_file())
    print(f"zoom in Chromium, wheel -> painted: p50 {result['p50'] * 1e3:.0f} ms, p95 {result['p95'] * 1e3:.0f} ms")

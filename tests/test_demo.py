"""`make demo` as a newcomer uses it: start, log in in a real browser, spawn, JupyterLab, stop."""
import os
import signal
import subprocess
import time

import pytest
import requests

from tests.browser import chromium_page, hub_login, start_with_profile, stop_from_hub_home
from tests.hubproc import PROJECT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = dict(os.environ, NEBULAHUB_PORT=str(port), NEBULAHUB_HUB_PORT=str(free_port()),
               NEBULAHUB_STATE_DIR=str(tmp_path / "state"))
    env.pop("NEBULAHUB_PROVIDER", None)
    log = open(tmp_path / "demo.log", "wb")
    proc = subprocess.Popen(["make", "-s", "demo"], cwd=PROJECT, stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
        try:
            if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        pytest.fail("make demo did not serve the hub in time")
    yield url, tmp_path
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    pid_file = tmp_path / "state" / "jupyterhub-proxy.pid"
    if pid_file.exists():  # a hub killed hard leaves its proxy: ours to stop
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def test_newcomer_runs_make_demo_logs_in_and_lands_in_jupyterlab(demo):
    url, tmp = demo
    log = (tmp / "demo.log").read_text()
    assert "Log in as student" in log and "nebula-demo" in log, log[-2000:]
    with chromium_page() as page:
        hub_login(page, url, "researcher", "nebula-demo")
        start_with_profile(page, "notebook")  # the spawn form offers the profiles
        page.wait_for_url("**/user/researcher/lab**", timeout=120_000)
        page.wait_for_selector("#jp-main-dock-panel, .jp-LabShell", timeout=120_000)
        assert "JupyterLab" in page.title() or page.locator(".jp-LabShell").count() == 1
        # the demo data file is in the user's home, visible in the file browser
        page.wait_for_selector("text=junctions.txt", timeout=60_000)
        stop_from_hub_home(page, url)
    servers = tmp / "state" / "servers"
    assert servers.exists() and any(servers.iterdir())
    deadline = time.monotonic() + 30
    while any((d / "server.json").exists() for d in servers.iterdir()):
        assert time.monotonic() < deadline, "the server process was not stopped"
        time.sleep(0.3)


def test_student_lands_in_the_plot_app_and_plots_the_demo_file(demo):
    from playwright.sync_api import expect

    url, tmp = demo
    with chromium_page(viewport=(1400, 1000)) as page:
        page.set_default_timeout(60_000)
        hub_login(page, url, "student", "nebula-demo")
        start_with_profile(page, "student")
        page.wait_for_url("**/user/student/nebulahub-plot/**", timeout=120_000)
        expect(page.locator(".nh-status p")).to_contain_text("data files in", timeout=90_000)
        page.get_by_role("combobox", name="File").select_option("junctions.txt")
        page.get_by_role("button", name="Preview").click()
        expect(page.locator(".nh-preview table")).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Load and plot").click()
        expect(page.locator(".nh-status p")).to_contain_text("Plotted", timeout=60_000)
        expect(page.locator(".nh-mode p")).to_contain_text("rows")
        # the app is also in the JupyterLab launcher
        page.goto(f"{url}/user/student/lab")
        expect(page.locator(".jp-LauncherCard[title='Plot data'], "
                            ".jp-LauncherCard:has-text('Plot data')").first).to_be_visible(
            timeout=90_000)
        stop_from_hub_home(page, url)

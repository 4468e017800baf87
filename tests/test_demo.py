"""`make demo` as a newcomer uses it: start, log in in a real browser, spawn, JupyterLab, stop.

And what the demo must never allow: a student's server running as root or reading what is not
theirs, the demo password serving anything but the local provider on loopback, a proxy left
behind by a failed start.
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.browser import chromium_page, hub_login, start_with_profile, stop_from_hub_home
from tests.hubproc import PROJECT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser]
CONFIG = PROJECT / "jupyterhub_config.py"


def demo_env(state: Path, shared: Path, prefix: str, **extra) -> dict:
    env = dict(os.environ, NEBULAHUB_PORT=str(free_port()), NEBULAHUB_HUB_PORT=str(free_port()),
               NEBULAHUB_STATE_DIR=str(state), NEBULAHUB_SHARED_DIR=str(shared),
               NEBULAHUB_ACCOUNT_PREFIX=prefix)
    env.update(extra)
    for name in ("NEBULAHUB_PROVIDER", "NEBULAHUB_IP", "NEBULAHUB_PROXY_API_PORT",
                 "JUPYTERHUB_CRYPT_KEY"):
        if name not in extra:
            env.pop(name, None)
    return env


def proxy_alive(state: Path) -> bool:
    try:
        pid = int((state / "jupyterhub-proxy.pid").read_text())
        return b"configurable-http-proxy" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def hub_pid(state: Path) -> int:
    """The demo's jupyterhub process (found by the state folder in its environment)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            environ = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"jupyterhub") for a in argv[:2]) and \
                f"NEBULAHUB_STATE_DIR={state}".encode() in environ:
            return int(d.name)
    raise AssertionError("the demo's hub process was not found")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, shared_tmp):
    from machines.localusers import remove_created

    tmp_path = tmp_path_factory.mktemp("demo")
    state, shared = tmp_path / "state", Path(shared_tmp) / "demo"
    prefix = f"nhd{secrets.token_hex(2)}-"
    env = demo_env(state, shared, prefix)
    port = env["NEBULAHUB_PORT"]
    # the proxy's API port is not fixed: something already on the old fixed port 8001 (or on
    # any port) does not stop the demo
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 8001))
        blocker.listen()
    except OSError:
        pass  # 8001 is busy already, which proves the same
    log = open(tmp_path / "demo.log", "wb")
    proc = subprocess.Popen(["make", "-s", "demo"], cwd=PROJECT, stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 400  # the first run builds the servers' environment
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            pytest.fail("make demo did not serve the hub in time")
        yield {"url": url, "tmp": tmp_path, "state": state, "shared": shared, "prefix": prefix}
    finally:
        blocker.close()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        leftover_proxy = proxy_alive(state)
        if leftover_proxy:  # ours to stop, but a failure: the demo must stop its proxy itself
            os.kill(int((state / "jupyterhub-proxy.pid").read_text()), signal.SIGTERM)
        remove_created(str(state / "created-accounts"))
    assert not leftover_proxy, "the demo left its proxy running"


def test_newcomer_runs_make_demo_logs_in_and_lands_in_jupyterlab(demo):
    url, tmp = demo["url"], demo["tmp"]
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
    servers = demo["shared"] / "homes" / "researcher" / ".nebulahub" / "servers"
    assert servers.exists() and any(servers.iterdir())
    deadline = time.monotonic() + 30
    while any((d / "server.json").exists() for d in servers.iterdir()):
        assert time.monotonic() < deadline, "the server process was not stopped"
        time.sleep(0.3)


def test_student_lands_in_the_plot_app_and_plots_the_demo_file(demo):
    from playwright.sync_api import expect

    url = demo["url"]
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


def terminal_run(url: str, user: str, token: str, command: str, timeout: float = 60) -> str:
    """Run ``command`` in a Jupyter terminal of the user's server (as the user would type it)
    and return what it printed."""
    import websocket

    headers = {"Authorization": f"token {token}"}
    r = requests.post(f"{url}/user/{user}/api/terminals", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    ws = websocket.create_connection(
        f"ws://{url.split('://', 1)[1]}/user/{user}/terminals/websocket/{name}",
        header=[f"Authorization: token {token}"], timeout=timeout)
    marker = f"DONE{secrets.token_hex(4)}"
    try:
        ws.send(json.dumps(["stdin", f"{command}; echo {marker[:4]}''{marker[4:]}\r"]))
        out, deadline = "", time.monotonic() + timeout
        while marker not in out:
            assert time.monotonic() < deadline, out
            kind, *rest = json.loads(ws.recv())
            if kind == "stdout":
                out += rest[0]
        return out.split(marker)[0]
    finally:
        ws.close()
        requests.delete(f"{url}/user/{user}/api/terminals/{name}", headers=headers, timeout=30)


def test_a_students_terminal_is_not_root_and_cannot_read_others_or_the_hub(demo):
    if os.geteuid() != 0:
        pytest.skip("per-user accounts need a hub running as root")
    url, state, shared = demo["url"], demo["state"], demo["shared"]
    s = requests.Session()
    s.get(f"{url}/hub/login", timeout=30)  # the login form's XSRF cookie
    r = s.post(f"{url}/hub/login", allow_redirects=False, timeout=30,
               data={"username": "student", "password": "nebula-demo",
                     "_xsrf": s.cookies.get("_xsrf")})
    assert r.status_code == 302, r.text
    token = s.post(f"{url}/hub/api/users/student/tokens",
                   headers={"Referer": f"{url}/hub/", "X-XSRFToken": s.cookies.get("_xsrf")},
                   json={"expires_in": 600}, timeout=30).json()["token"]
    auth = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + 60  # an earlier test may still be stopping the server
    while requests.get(f"{url}/hub/api/users/student", headers=auth, timeout=30).json()\
            .get("servers", {}).get("", {}).get("pending") == "stop":
        assert time.monotonic() < deadline, "the student's earlier server did not stop"
        time.sleep(0.5)
    r = requests.post(f"{url}/hub/api/users/student/server", json={"profile": "notebook"},
                      headers=auth, timeout=30)
    assert r.status_code in (201, 202), r.text
    deadline = time.monotonic() + 120
    while not requests.get(f"{url}/hub/api/users/student", timeout=30,
                           headers={"Authorization": f"token {token}"}).json()["servers"]\
            .get("", {}).get("ready"):
        assert time.monotonic() < deadline, "the student's server did not start"
        time.sleep(0.5)
    pid = hub_pid(state)
    out = terminal_run(url, "student", token, " ; ".join([
        "echo UID=$(id -u) NAME=$(id -un)",
        f"ls {shared}/homes/researcher >/dev/null 2>&1 && echo READ-HOME || echo NO-HOME",
        f"cat /proc/{pid}/environ >/dev/null 2>&1 && echo READ-ENV || echo NO-ENV",
        f"ls {state} >/dev/null 2>&1 && echo READ-STATE || echo NO-STATE",
        f"cat {state}/jupyterhub.sqlite >/dev/null 2>&1 && echo READ-DB || echo NO-DB",
        "ls ~/junctions.txt && echo OWN-HOME",
    ]))
    assert f"NAME={demo['prefix']}student" in out, out
    assert "UID=0" not in out
    for refused in ("NO-HOME", "NO-ENV", "NO-STATE", "NO-DB"):
        assert refused in out, out
    assert "OWN-HOME" in out, out
    requests.delete(f"{url}/hub/api/users/student/server", timeout=30,
                    headers={"Authorization": f"token {token}"})


def test_the_hub_database_and_secrets_are_private_files(demo):
    state = demo["state"]
    for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret", "demo-admin-password"):
        assert (state / name).stat().st_mode & 0o777 == 0o600, name
    assert state.stat().st_mode & 0o777 == 0o700


def run_config(tmp_path, **env_extra) -> subprocess.CompletedProcess:
    env = demo_env(tmp_path / "state", tmp_path / "shared", "nhx-", **env_extra)
    return subprocess.run([sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)], cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("setting", [{"NEBULAHUB_PROVIDER": "opennebula"},
                                     {"NEBULAHUB_PROVIDER": "ssh"},
                                     {"NEBULAHUB_IP": "0.0.0.0"}])
def test_demo_password_serves_only_the_local_provider_on_loopback(tmp_path, setting):
    res = run_config(tmp_path, **setting)
    assert res.returncode != 0
    assert "c.JupyterHub.authenticator_class" in res.stderr, res.stderr[-2000:]
    assert "refuses to start" in res.stderr
    assert not proxy_alive(tmp_path / "state")


def test_a_too_short_demo_password_is_refused_by_jupyterhubs_own_rule(tmp_path):
    res = run_config(tmp_path, NEBULAHUB_DEMO_PASSWORD="short")
    assert res.returncode != 0
    assert "at least 8 characters" in res.stderr + res.stdout, (res.stderr + res.stdout)[-2000:]


def test_a_failed_demo_start_leaves_no_proxy_behind(tmp_path):
    """The hub API port is taken: the proxy has started already when the hub fails."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    state = tmp_path / "state"
    env = demo_env(state, tmp_path / "shared", "nhx-",
                   NEBULAHUB_HUB_PORT=str(taken.getsockname()[1]))
    try:
        res = subprocess.run([sys.executable, "-m", "nebulahub.cli", "demo"], cwd=PROJECT,
                             env=env, capture_output=True, text=True, timeout=300)
    finally:
        taken.close()
        from machines.localusers import remove_created
        remove_created(str(state / "created-accounts"))
    assert res.returncode != 0, res.stdout[-2000:]
    assert (state / "jupyterhub-proxy.pid").exists(), "the proxy never started: wrong scenario"
    assert not proxy_alive(state), "a failed start left its proxy running"

"""The plotting app is reachable only through its owner's authenticated server.

A real hub + proxy; the student's server runs as the student's own Unix account and starts the
Panel app through jupyter-server-proxy on a private Unix socket. Another account on the machine
cannot connect to it; a websocket from a foreign page's origin or with a self-made Bokeh token is
refused; through the hub the owner gets the app and another hub user gets 403.
"""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import requests

from tests.test_panel_browser import app_url, home, hub, hub_dir  # noqa: F401  (shared fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.browser]
PREFIX = "/user/student/nebulahub-plot"


@pytest.fixture(scope="module")
def tokens(hub):
    hub.create_user("other")
    return {"student": hub.user_token("student"), "other": hub.user_token("other")}


@pytest.fixture(scope="module")
def app_process(hub, tokens):
    """(pid, socket path) of the student's running Panel app (opening it starts it)."""
    r = hub.get_via_proxy(f"{PREFIX}/", tokens["student"], timeout=120)
    assert r.status_code == 200, r.text[-2000:]
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "panel_apps.launcher" in argv and PREFIX in " ".join(argv):
            return int(d.name), argv[argv.index("--unix-socket") + 1]
    raise AssertionError("the plot app's process was not found")


def test_the_app_listens_on_a_private_unix_socket_of_the_students_account_only(app_process):
    pid, path = app_process
    owner = os.stat(f"/proc/{pid}").st_uid
    if os.geteuid() == 0:
        assert owner != 0, "the app runs as root"
    sock, folder = os.stat(path), os.stat(os.path.dirname(path))
    assert stat.S_ISSOCK(sock.st_mode)
    assert sock.st_uid == owner and sock.st_mode & 0o077 == 0, oct(sock.st_mode)
    assert folder.st_uid == owner and folder.st_mode & 0o777 == 0o700, oct(folder.st_mode)
    # and no TCP port at all
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    assert f"pid={pid}," not in listening, listening


def test_another_unix_account_cannot_connect_to_the_app(app_process, test_account):
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another account")
    _, path = app_process
    probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1]); print('CONNECTED')\n"
             "except OSError as e:\n print('REFUSED', e.errno)\n")
    res = subprocess.run(["runuser", "-u", test_account.name, "--", "/usr/bin/python3", "-c",
                          probe, path], capture_output=True, text=True, timeout=30)
    assert "REFUSED" in res.stdout and "CONNECTED" not in res.stdout, res


def test_through_the_hub_the_owner_gets_the_app_and_another_user_gets_403(hub, tokens):
    assert hub.get_via_proxy(f"{PREFIX}/", tokens["student"]).status_code == 200
    r = hub.get_via_proxy(f"{PREFIX}/", tokens["other"], allow_redirects=False)
    assert r.status_code == 403, r.status_code


def _ws(hub, headers, origin, subprotocols=None):
    import websocket

    url = f"ws://{hub.url.split('://', 1)[1]}{PREFIX}/ws"
    return websocket.create_connection(url, header=headers, origin=origin, timeout=30,
                                       subprotocols=subprotocols)


def _bokeh_token(hub, tokens) -> str:
    """A real session token, as the app's page hands one to the browser."""
    import re

    page = hub.get_via_proxy(f"{PREFIX}/", tokens["student"]).text
    m = re.search(r'"token":\s*"([^"]+)"', page) or re.search(r"token=([\w.\-]+)", page)
    assert m, page[-2000:]
    return m.group(1)


def _bokeh_accepts(ws) -> bool:
    """True once Bokeh acknowledges the session (ACK); False when the connection is closed
    without one (refused behind the proxy, which had already accepted the handshake)."""
    import websocket

    try:
        while True:
            message = ws.recv()
            if not message:
                return False
            if "ACK" in message:
                return True
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return False
    finally:
        ws.close()


def test_a_websocket_from_a_foreign_origin_is_refused(hub, tokens, app_process):
    import websocket

    auth = [f"Authorization: token {tokens['student']}"]
    token = _bokeh_token(hub, tokens)
    # a script holding the student's API token, claiming a foreign page's origin: the Jupyter
    # server lets token requests through, Bokeh refuses the origin
    assert not _bokeh_accepts(_ws(hub, auth, "http://evil.example", ["bokeh", token]))
    # a browser on a foreign page carries the student's cookie: refused at the handshake
    s = requests.Session()
    s.get(f"{hub.url}/hub/login", timeout=30)
    r = s.post(f"{hub.url}/hub/login", allow_redirects=True, timeout=60,
               data={"username": "student", "password": "test-password",
                     "_xsrf": s.cookies.get("_xsrf")})
    assert r.status_code == 200
    assert s.get(f"{hub.url}{PREFIX}/", timeout=60).status_code == 200  # the cookie works here
    cookie = "; ".join(f"{c.name}={c.value}" for c in s.cookies)
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        _ws(hub, [f"Cookie: {cookie}"], "http://evil.example", ["bokeh", token])
    assert e.value.status_code == 403
    # the same websocket from the hub's own origin is accepted (Bokeh answers with ACK)
    assert _bokeh_accepts(_ws(hub, auth, hub.url, ["bokeh", _bokeh_token(hub, tokens)]))


def test_a_self_made_bokeh_session_token_is_refused(hub, tokens, app_process):
    from bokeh.util.token import generate_jwt_token

    forged = generate_jwt_token("forged-session-id", signed=False)
    auth = [f"Authorization: token {tokens['student']}"]
    assert not _bokeh_accepts(_ws(hub, auth, hub.url, ["bokeh", forged]))
    assert _bokeh_accepts(_ws(hub, auth, hub.url, ["bokeh", _bokeh_token(hub, tokens)]))

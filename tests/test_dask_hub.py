"""The Dask dashboard through a real hub: a user's notebook kernel, in their own single-user server
(local provider: the server runs as the user's own Unix account), starts the admin-configured
cluster with ``get_cluster()``; the link it gives opens the dashboard through the hub's proxy and
the server's jupyter-server-proxy for its owner only: another user gets 403, a visitor without a
login is sent to the hub's login page. Stopping the server leaves no worker running."""
from __future__ import annotations

import json
import os
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import require_root
from tests.hubproc import HubProcess
from tests.test_dask_support import processes_of, wait_until

pytestmark = pytest.mark.integration

SETTINGS = dict(backend="local", worker_memory="256 MiB", worker_cores=1, user_max_workers=2,
                user_max_cores=4, user_max_memory="2 GiB")


@pytest.fixture(scope="module")
def hub(tmp_path_factory, shared_tmp, local_accounts):
    require_root()
    d = tmp_path_factory.mktemp("dask-hub")
    homes = Path(shared_tmp) / "dask-hub-homes"
    homes.mkdir(exist_ok=True)
    settings = Path(shared_tmp) / "dask-hub-settings.py"   # the admin's file, readable by servers
    settings.write_text("".join(f"c.DaskClusters.{k} = {v!r}\n" for k, v in SETTINGS.items()))
    os.chmod(settings, 0o644)
    h = HubProcess(d / "hub", textwrap.dedent(f"""
        c.OpenNebulaSpawner.provider = "local"
        c.LocalProvider.home_root = "{homes}/{{username}}"
        c.OpenNebulaSpawner.environment = {{"NEBULAHUB_DASK_CONFIG": "{settings}"}}
    """) + local_accounts.config)
    h.start()
    try:
        yield h
    finally:
        h.stop()


class Kernel:
    """A notebook kernel in a user's server, reached through the hub with the user's token."""

    def __init__(self, hub: HubProcess, user: str, token: str):
        self.hub, self.user, self.token = hub, user, token
        r = requests.post(f"{hub.url}/user/{user}/api/kernels", json={"name": "python3"},
                          headers={"Authorization": f"token {token}"}, timeout=60)
        assert r.status_code == 201, r.text
        self.id = r.json()["id"]
        import websocket

        self.ws = websocket.create_connection(
            f"ws://{urlsplit(hub.url).netloc}/user/{user}/api/kernels/{self.id}/channels",
            header=[f"Authorization: token {token}"], suppress_origin=True, timeout=120)
        self.session = uuid.uuid4().hex

    def run(self, code: str, timeout: float = 120) -> str:
        """Execute ``code``; what it printed (an error fails the test with the traceback)."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": self.user, "session": self.session,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        out, replied, idle = [], None, False
        deadline = time.monotonic() + timeout
        while replied is None or not idle:
            assert time.monotonic() < deadline, f"the kernel did not finish: {''.join(out)}"
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":   # not the logs on stderr
                out.append(content["text"])
            elif kind == "error":
                out.append("\n".join(content.get("traceback", [])))
            elif kind == "execute_reply":
                replied = content
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
        assert replied["status"] == "ok", "".join(out)
        return "".join(out)

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            requests.delete(f"{self.hub.url}/user/{self.user}/api/kernels/{self.id}",
                            headers={"Authorization": f"token {self.token}"}, timeout=60)


def test_the_dashboard_opens_through_the_hub_for_its_owner_only(hub, local_accounts):
    hub.create_user("dora")
    hub.create_user("otto")
    dora, otto = hub.user_token("dora"), hub.user_token("otto")
    assert hub.spawn("dora").status_code in (201, 202)
    hub.wait_server("dora", ready=True, timeout=120)
    kernel = Kernel(hub, "dora", dora)
    try:
        said = kernel.run(textwrap.dedent("""
            from dask_clusters import get_cluster
            cluster = get_cluster(1)
            cluster.wait_for_workers(1, timeout=60)
            print(cluster.client.submit(sum, [20, 22]).result())
            print(cluster.dashboard_link)
            """)).split()
        assert said[0] == "42", said
        link = said[1]
        # the link the notebook (and the plotting app) shows: through dora's server, on the hub
        assert link.startswith("/user/dora/proxy/") and link.endswith("/status"), link
        page = hub.get_via_proxy(link, dora, allow_redirects=False)
        assert page.status_code == 200 and "Dask" in page.text, (page.status_code, page.text[:300])
        plots = hub.get_via_proxy(link.replace("/status", "/individual-plots.json"), dora,
                                  allow_redirects=False)
        assert plots.status_code == 200 and "Individual Task Stream" in plots.json(), plots.text[:300]

        other = hub.get_via_proxy(link, otto, allow_redirects=False)   # another hub user
        assert other.status_code == 403, (other.status_code, other.text[:300])
        assert "Individual Task Stream" not in other.text and "bokeh" not in other.text.lower()

        visitor = requests.get(f"{hub.url}{link}", timeout=30)          # nobody logged in
        assert visitor.history and visitor.history[0].status_code == 302, visitor.history
        assert urlsplit(visitor.url).path == "/hub/login", visitor.url
        assert "bokeh" not in visitor.text.lower()
    finally:
        kernel.close()
    account = f"{local_accounts.prefix}dora"
    hub.stop_server("dora")
    wait_until(lambda: not processes_of(account), 30,
               lambda: f"nothing of dora's is left running (left: {processes_of(account)})")

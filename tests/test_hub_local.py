"""The embedded default: a real jupyterhub + configurable-http-proxy, servers via the local provider."""
import json
import os
import pwd
import subprocess
import textwrap

import pytest

from tests.hubproc import HubProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(tmp_path_factory, shared_tmp, local_accounts):
    d = tmp_path_factory.mktemp("hub-local")
    h = HubProcess(d, textwrap.dedent(f"""
        c.OpenNebulaSpawner.provider = "local"
        c.LocalProvider.home_root = "{shared_tmp}/hub-local/{{username}}"
        c.OpenNebulaSpawner.profiles = [
            {{"slug": "notebook", "name": "Notebook", "default_url": "/lab"}},
            {{"slug": "student", "name": "Student", "default_url": "/tree"}},
        ]
    """) + local_accounts.config)
    h.start()
    yield h
    h.stop()


def test_researcher_spawns_local_server_and_reaches_it_through_the_proxy(hub, local_accounts):
    hub.create_user("rita")
    token = hub.user_token("rita")
    r = hub.spawn("rita", options={"profile": "notebook"})
    assert r.status_code in (201, 202), r.text
    events = hub.progress("rita")
    messages = [e.get("message", "") for e in events]
    assert events[-1].get("ready"), messages
    assert any("Bootstrapping" in m for m in messages), messages
    assert any("Server answering" in m for m in messages), messages
    percents = [e["progress"] for e in events if "progress" in e]
    assert percents == sorted(percents), percents

    r = hub.get_via_proxy("/user/rita/api/status", token)
    assert r.status_code == 200, r.text
    assert "started" in r.json()

    model = hub.server_model("rita")
    state = model["state"]
    pid_file = os.path.join(state["workdir"], "server.json")
    assert os.stat(os.path.join(state["workdir"], "token")).st_mode & 0o777 == 0o600
    # the server runs as the user's own account, never as root (when the hub is root)
    pid = json.load(open(pid_file))["pid"]
    uid = os.stat(f"/proc/{pid}").st_uid
    if os.geteuid() == 0:
        assert uid != 0
        assert pwd.getpwuid(uid).pw_name == f"{local_accounts.prefix}rita"
        home = os.path.dirname(os.path.dirname(os.path.dirname(state["workdir"])))
        assert os.stat(home).st_uid == uid and os.stat(home).st_mode & 0o777 == 0o700
    hub.stop_server("rita")
    assert not os.path.exists(pid_file)
    # the server process is gone: nothing listens on its port any more
    out = subprocess.run(["ss", "-ltn", f"sport = :{state['server_port']}"],
                         capture_output=True, text=True).stdout
    assert f":{state['server_port']} " not in out


def test_bad_profile_names_the_field(hub):
    hub.create_user("sam")
    r = hub.spawn("sam", options={"profile": "gpu-monster"})
    assert r.status_code == 400, r.text
    assert "profile" in r.json()["message"]
    assert hub.server_model("sam") is None


def test_unknown_option_names_the_field(hub):
    hub.create_user("uma")
    r = hub.spawn("uma", options={"profile": "notebook", "colour": "red"})
    assert r.status_code == 400, r.text
    assert "colour" in r.json()["message"]

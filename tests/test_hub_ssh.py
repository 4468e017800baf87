"""The ssh provider end to end: a real hub serving on namespace hosts with real sshd.

Covers the VISPA-style path shared by every remote provider: SSH with pinned host keys, an
optional ProxyJump bastion, the bootstrap sent over the channel, and both tunnels.
"""
import os
import re
import subprocess

import pytest

from spawner.keys import UserKeyStore
from tests.hubproc import HubProcess

pytestmark = pytest.mark.integration


def write_key(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (path.parent / (path.name + ".pub")).read_text().strip()


@pytest.fixture(scope="module")
def env(nethosts, vm_python_env, tmp_path_factory):
    d = tmp_path_factory.mktemp("hub-ssh")
    admin_pub = write_key(d / "hub_key")
    keys = UserKeyStore(str(d / "user-keys"))
    fixed = nethosts.add_host("fixed1", authorized_keys=[admin_pub])
    bastion = nethosts.add_bastion("gw1", authorized_keys=[keys.public_line("bea")])
    own = nethosts.add_host("own1", behind=bastion, authorized_keys=[keys.public_line("bea")])
    hub = HubProcess(d, f"""
        c.OpenNebulaSpawner.provider = "ssh"
        c.OpenNebulaSpawner.python_env = "{vm_python_env}"
        c.OpenNebulaSpawner.ssh_timeout = 20
        c.OpenNebulaSpawner.profiles = [{{"slug": "notebook", "name": "Notebook"}}]
        c.SshProvider.host = "{nethosts.ssh_user}@{fixed.ip}"
        c.SshProvider.key_file = "{d}/hub_key"
        c.SshProvider.allow_user_resources = True
        c.SshProvider.user_key_dir = "{d}/user-keys"
    """)
    hub.start()
    yield {"hub": hub, "fixed": fixed, "bastion": bastion, "own": own, "net": nethosts}
    hub.stop()
    for h in (own, bastion, fixed):
        h.destroy()


def server_processes(host, workdir):
    """(pid, argv) of processes in the host's namespace started from the server's work dir."""
    out = []
    for pid in host.pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(b"jupyterhub-singleuser" in a for a in argv):
            out.append((pid, argv))
    return out


def test_server_on_a_fixed_ssh_host_listens_on_loopback_only_and_keeps_the_token_out_of_argv(env):
    hub, host = env["hub"], env["fixed"]
    hub.create_user("ray")
    token = hub.user_token("ray")
    assert hub.spawn("ray").status_code == 202
    events = hub.progress("ray")
    assert events[-1].get("ready"), events
    messages = [e["message"] for e in events]
    for phase in ("Waiting for SSH", "SSH reachable", "Bootstrapping", "Server answering"):
        assert any(phase in m for m in messages), (phase, messages)

    r = hub.get_via_proxy("/user/ray/api/status", token)
    assert r.status_code == 200, r.text

    state = hub.server_model("ray")["state"]
    assert state["host_keys"][f"{host.ip}:22"] == host.host_key_line
    # the server listens on the host's loopback only
    listening = host.run("ss", "-ltnH", f"sport = :{state['server_port']}").stdout.decode()
    assert re.search(rf"127\.0\.0\.1:{state['server_port']}\b", listening), listening
    assert f"0.0.0.0:{state['server_port']}" not in listening
    # the API token: in a 0600 file owned by the login user, in no argv, in no hub log line
    token_file = state["workdir"].replace("~", f"/home/{host.user}") + "/token"
    st = os.stat(token_file)
    assert st.st_mode & 0o777 == 0o600
    secret = open(token_file).read().strip()
    assert len(secret) > 20
    procs = server_processes(host, state["workdir"])
    assert procs, "no jupyterhub-singleuser process on the host"
    for pid in host.pids():
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        assert secret.encode() not in argv, f"token in argv of pid {pid}"
    assert secret not in hub.log()

    hub.stop_server("ray")
    assert server_processes(host, state["workdir"]) == []
    assert not os.path.exists(token_file)


def test_user_serves_on_own_machine_behind_a_bastion(env):
    hub, own, bastion, net = env["hub"], env["own"], env["bastion"], env["net"]
    assert not net.gateway_reaches(own) if hasattr(net, "gateway_reaches") else True
    hub.create_user("bea")
    token = hub.user_token("bea")
    options = {"profile": "notebook", "resource_host": own.ip, "resource_user": own.user,
               "resource_jump": f"{bastion.user}@{bastion.ip}"}
    assert hub.spawn("bea", options=options).status_code == 202, hub.log()[-2000:]
    events = hub.progress("bea")
    assert events[-1].get("ready"), events
    assert hub.get_via_proxy("/user/bea/api/status", token).status_code == 200
    state = hub.server_model("bea")["state"]
    assert set(state["host_keys"]) == {f"{bastion.ip}:22", f"{own.ip}:22"}
    hub.stop_server("bea")


def test_own_machine_fields_are_validated_by_name(env):
    hub = env["hub"]
    hub.create_user("val")
    r = hub.spawn("val", options={"resource_host": "-oProxyCommand=evil"})
    assert r.status_code == 400 and "resource_host" in r.json()["message"], r.text
    r = hub.spawn("val", options={"resource_host": "10.213.0.9", "resource_port": "ssh"})
    assert r.status_code == 400 and "resource_port" in r.json()["message"], r.text
    r = hub.spawn("val", options={"resource_jump": "x@y"})
    assert r.status_code == 400 and "resource_jump" in r.json()["message"], r.text


def test_a_user_cannot_reach_another_users_server(env):
    hub = env["hub"]
    hub.create_user("amy")
    hub.create_user("bob")
    amy_token = hub.user_token("amy")
    bob_token = hub.user_token("bob")
    assert hub.spawn("bob").status_code == 202
    assert hub.progress("bob")[-1].get("ready")
    assert hub.get_via_proxy("/user/bob/api/contents", bob_token).status_code == 200
    r = hub.get_via_proxy("/user/bob/api/contents", amy_token, allow_redirects=False)
    assert r.status_code in (403, 302), r.status_code
    if r.status_code == 302:  # sent to log in: never served bob's files
        assert "/hub/" in r.headers["Location"]
    hub.stop_server("bob")


def test_unreachable_ssh_gives_a_readable_error_and_leaves_nothing(env, nethosts):
    hub = env["hub"]
    hub.create_user("una")
    ghost = "10.213.0.250"  # on the test subnet, nobody there
    r = hub.spawn("una", options={"resource_host": ghost, "resource_user": "nbvm"})
    assert r.status_code == 202
    events = hub.progress("una")
    assert events[-1].get("failed"), events
    assert "could not log in" in events[-1]["message"], events[-1]
    assert hub.server_model("una") is None

"""The ssh provider end to end: a real hub serving on namespace hosts with real sshd.

Covers the VISPA-style path shared by every remote provider: SSH with pinned host keys, an
optional ProxyJump bastion, the bootstrap sent over the channel, and both tunnels.
"""
import os
import re
import secrets
import subprocess
import sys

import pytest

from machines.keys import UserKeyStore
from machines.secretbox import SecretBox
from tests.hubproc import PROJECT, HubProcess
from tests.nethosts.access import ensure_user

pytestmark = pytest.mark.integration


def write_key(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (path.parent / (path.name + ".pub")).read_text().strip()


FIXED_USERS = ("ray", "amy", "bob", "kay")


@pytest.fixture(scope="module")
def logins():
    """Each hub user's own Unix account on the fixed host (the namespace hosts share this
    machine's /etc/passwd), with a per-run prefix; removed afterwards."""
    prefix = f"nhs{secrets.token_hex(2)}"
    names = {u: prefix + u for u in FIXED_USERS}
    for name in names.values():
        ensure_user(name)
    yield prefix, names
    for name in names.values():
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", "-r", name], capture_output=True)


@pytest.fixture(scope="module")
def env(nethosts, vm_python_env, tmp_path_factory, logins):
    d = tmp_path_factory.mktemp("hub-ssh")
    prefix, names = logins
    admin_pub = write_key(d / "hub_key")
    keys = UserKeyStore(str(d / "user-keys"), SecretBox.from_environment(str(d / "crypt_key")))
    fixed = nethosts.add_host("fixed1", authorized_keys=[admin_pub])
    fixed.allow_login(*names.values())
    bastion = nethosts.add_bastion("gw1", authorized_keys=[keys.public_line("bea")])
    own = nethosts.add_host("own1", behind=bastion, authorized_keys=[keys.public_line("bea")])
    hub = HubProcess(d, f"""
        c.OpenNebulaSpawner.provider = "ssh"
        c.OpenNebulaSpawner.python_env = "{vm_python_env}"
        c.MachineAccess.ssh_timeout = 20
        c.MachineAccess.crypt_key_file = "{d}/crypt_key"
        c.OpenNebulaSpawner.profiles = [{{"slug": "notebook", "name": "Notebook"}}]
        c.SshProvider.host = "{fixed.ip}"
        c.SshProvider.username_template = "{prefix}{{username}}"
        c.SshProvider.key_file = "{d}/hub_key"
        c.SshProvider.allow_user_resources = True
        c.SshProvider.user_key_dir = "{d}/user-keys"
        c.SshProvider.user_host_allow = ["{nethosts.subnet}"]
    """)
    hub.start()
    yield {"hub": hub, "fixed": fixed, "bastion": bastion, "own": own, "net": nethosts,
           "logins": names, "dir": d}
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
    assert state["machine"]["host_keys"][f"{host.ip}:22"] == host.host_key_line
    # the server listens on the host's loopback only
    listening = host.run("ss", "-ltnH", f"sport = :{state['server_port']}").stdout.decode()
    assert re.search(rf"127\.0\.0\.1:{state['server_port']}\b", listening), listening
    assert f"0.0.0.0:{state['server_port']}" not in listening
    # the API token: in a 0600 file owned by the user's own login, in no argv, no hub log line
    login = env["logins"]["ray"]
    assert state["machine"]["username"] == login
    token_file = state["workdir"].replace("~", f"/home/{login}") + "/token"
    st = os.stat(token_file)
    assert st.st_mode & 0o777 == 0o600
    assert st.st_uid == int(subprocess.run(["id", "-u", login], capture_output=True,
                                           text=True).stdout)
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
    assert set(state["machine"]["host_keys"]) == {f"{bastion.ip}:22", f"{own.ip}:22"}
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
    ghost = str(nethosts.subnet.network_address + 250)  # on the test subnet, nobody there
    r = hub.spawn("una", options={"resource_host": ghost, "resource_user": "nbvm"})
    assert r.status_code == 202
    events = hub.progress("una")
    assert events[-1].get("failed"), events
    assert "could not log in" in events[-1]["message"], events[-1]
    assert hub.server_model("una") is None


def token_path(login: str, state: dict) -> str:
    return state["workdir"].replace("~", f"/home/{login}") + "/token"


def test_each_hub_user_logs_in_as_their_own_account_and_cannot_read_anothers_token(env):
    hub, host, logins = env["hub"], env["fixed"], env["logins"]
    for user in ("amy", "bob"):
        hub.create_user(user)
        assert hub.spawn(user).status_code == 202
        assert hub.progress(user)[-1].get("ready"), hub.log()[-2000:]
    amy, bob = hub.server_model("amy")["state"], hub.server_model("bob")["state"]
    assert (amy["machine"]["username"], bob["machine"]["username"]) == (logins["amy"], logins["bob"])
    stolen = host.run("cat", token_path(logins["bob"], bob), user=logins["amy"], check=False)
    assert stolen.returncode != 0 and b"Permission denied" in stolen.stderr, stolen
    own = host.run("cat", token_path(logins["amy"], amy), user=logins["amy"], check=False)
    assert own.returncode == 0 and len(own.stdout.strip()) > 20
    hub.stop_server("amy")
    hub.stop_server("bob")


def test_a_changed_host_key_is_refused_at_the_next_spawn_until_the_admin_accepts_it(env):
    hub, host = env["hub"], env["fixed"]
    hub.create_user("kay")
    assert hub.spawn("kay").status_code in (201, 202)
    assert hub.progress("kay")[-1].get("ready")
    hub.stop_server("kay")  # the server's state is gone; the machine's key is remembered
    old_key = host.host_key_line
    host.regenerate_host_key()
    assert hub.spawn("kay").status_code in (201, 202)
    failed = hub.progress("kay")[-1]
    assert failed.get("failed"), failed
    assert "not the one recorded" in failed["message"]
    assert f"nebulahub hostkeys forget {host.ip}:22" in failed["message"], failed["message"]
    assert hub.server_model("kay") is None
    # the admin accepts the new key deliberately, with the command the message names
    res = subprocess.run([sys.executable, "-m", "nebulahub.cli", "hostkeys", "forget",
                          f"{host.ip}:22", "--config", str(hub.dir / "jupyterhub_config.py")],
                         cwd=hub.dir, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(PROJECT)))
    assert res.returncode == 0, res.stderr
    assert hub.spawn("kay").status_code in (201, 202)
    assert hub.progress("kay")[-1].get("ready"), hub.log()[-2000:]
    state = hub.server_model("kay")["state"]
    assert state["machine"]["host_keys"][f"{host.ip}:22"] == host.host_key_line != old_key
    hub.stop_server("kay")


def test_a_changed_key_on_a_users_own_machine_is_accepted_only_when_the_user_says_so(env):
    hub, own, bastion = env["hub"], env["own"], env["bastion"]
    hub.create_user("bea")
    options = {"profile": "notebook", "resource_host": own.ip, "resource_user": own.user,
               "resource_jump": f"{bastion.user}@{bastion.ip}"}
    assert hub.spawn("bea", options=options).status_code in (201, 202)
    assert hub.progress("bea")[-1].get("ready")
    hub.stop_server("bea")
    own.regenerate_host_key()
    assert hub.spawn("bea", options=options).status_code in (201, 202)
    failed = hub.progress("bea")[-1]
    assert failed.get("failed") and "Trust its new host key" in failed["message"], failed
    trusting = dict(options, resource_trust_new_host_key="yes")
    assert hub.spawn("bea", options=trusting).status_code in (201, 202)
    assert hub.progress("bea")[-1].get("ready"), hub.log()[-2000:]
    assert hub.server_model("bea")["state"]["machine"]["host_keys"][f"{own.ip}:22"] == own.host_key_line
    hub.stop_server("bea")


@pytest.mark.parametrize("options, field", [
    ({"resource_host": "127.0.0.1"}, "resource_host"),
    ({"resource_host": "localhost"}, "resource_host"),
    ({"resource_host": "::1"}, "resource_host"),
    ({"resource_host": "169.254.169.254"}, "resource_host"),
    ({"resource_host": "GATEWAY"}, "resource_host"),          # the hub's own address
    ({"resource_host": "10.212.250.9"}, "resource_host"),     # outside the admin's allow list
    ({"resource_host": "10.213.0.9\n"}, "resource_host"),     # a trailing newline
    ({"resource_host": "10.213.0.9", "resource_user": "nbvm\n"}, "resource_user"),
    ({"resource_host": "10.213.0.9", "resource_jump": "gw@127.0.0.1"}, "resource_jump"),
    ({"resource_host": "10.213.0.9", "resource_jump": "gw@10.213.0.8:70000"}, "resource_jump"),
])
def test_own_machine_may_not_be_the_hub_itself_or_outside_the_admins_networks(env, options,
                                                                               field):
    hub, net = env["hub"], env["net"]
    hub.create_user("eve")
    options = {k: (net.gateway_ip if v == "GATEWAY" else v) for k, v in options.items()}
    r = hub.spawn("eve", options=options)
    if r.status_code == 400:  # addresses are refused at once
        message = r.json()["message"]
    else:  # a name needs a lookup first: refused in the progress stream, before anything starts
        assert r.status_code in (201, 202) and options["resource_host"] == "localhost", r.text
        failed = hub.progress("eve")[-1]
        assert failed.get("failed"), failed
        message = failed["message"]
    assert f"{field}:" in message, message
    assert "hub's own machine" in message or "loopback" in message or "network" in message \
        or "link-local" in message or "not a host name" in message or "login name" in message \
        or "port" in message, message
    hub.wait_server("eve", ready=False)
    assert not any(k.startswith("resource") for k in (hub.server_model("eve") or {}))

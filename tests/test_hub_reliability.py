"""Faults and load an operator meets before a summer school, with the project's real parts: a real
hub and proxy, the OpenNebula double, namespace VMs with sshd.

* the hub SIGKILLed during a storm of spawns: every server is reachable or failed with a
  sentence, and no VM is left without a server (no sweep run);
* the cloud's API down for three times the grace: no server dropped, the VMs of servers stopped
  meanwhile given back once the cloud answers;
* a VM's sshd dies: noticed within one poll, its VM released once;
* idle servers are culled and give their VMs back.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tests.hubproc import HubProcess
from tests.one_double import OneDouble

pytestmark = pytest.mark.integration

POLL = 2  # the hub's poll interval in these tests (seconds)


def hub_config(endpoint, vm_env, user, extra=""):
    return f"""
        c.OpenNebulaSpawner.provider = "opennebula"
        c.OpenNebulaSpawner.python_env = "{vm_env}"
        c.OpenNebulaSpawner.poll_grace = 6
        c.OpenNebulaSpawner.poll_interval = {POLL}
        c.OpenNebulaSpawner.profiles = [{{"slug": "small", "name": "Small", "cpu": 0.1,
                                          "memory_mb": 256}}]
        c.OpenNebulaProvider.endpoint = "{endpoint}"
        c.OpenNebulaProvider.template_id = 0
        c.OpenNebulaProvider.hub_id = "hub-reliability"
        c.OpenNebulaProvider.ssh_user = "{user}"
        c.OpenNebulaProvider.ready_timeout = 60
        c.OpenNebulaProvider.poll_interval = 0.3
        c.OpenNebulaProvider.pool_max_age = 1
        c.MachineAccess.ssh_timeout = 30
        c.MachineAccess.release_retry_interval = 1
        {extra}
    """


@pytest.fixture(scope="module")
def cloud(nethosts):
    double = OneDouble(users={"hubacct": "pw"}, network=nethosts, step_seconds=0.3)
    double.start()
    double.set_quota("hubacct", vms=12, cpu=12, memory=65536)
    yield double
    double.stop()


def start_hub(d, cloud, vm_env, nethosts, extra=""):
    h = HubProcess(d, hub_config(cloud.endpoint, vm_env, nethosts.ssh_user, extra),
                   env={"NEBULAHUB_ONE_AUTH": "hubacct:pw"})
    return h.start()


def live_vms(cloud):
    return [vm for vm in cloud.vms.values() if vm.state != 6]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def terminations(cloud, vm_id):
    return [c for c in cloud.calls if c.method == "one.vm.action" and c.args[-1] == vm_id]


def stopped_state(hub, user):
    """The default server's stored state, also when the server is not running."""
    r = hub.api("GET", f"/users/{user}", params={"include_stopped_servers": "1"})
    return (r.json()["servers"].get("") or {}).get("state") or {}


def test_hub_killed_during_a_storm_of_spawns_leaves_every_server_up_or_failed_and_no_vm(
        cloud, vm_python_env, nethosts, tmp_path):
    hub = start_hub(tmp_path / "hub", cloud, vm_python_env, nethosts,
                    "c.OpenNebulaSpawner.concurrent_starts = 3")
    users = [f"st{i}" for i in range(10)]
    try:
        for u in users:
            hub.create_user(u)
        threads = [threading.Thread(target=hub.spawn, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # kill the hub while some servers are up and others are still being made
        wait_for(lambda: sum(bool((hub.server_model(u) or {}).get("ready")) for u in users) >= 2,
                 120, "no server became ready")
        pending = [u for u in users if (hub.server_model(u) or {}).get("pending")]
        assert pending, "the storm was over before the hub could be killed"
        hub.kill()
        hub.start()
        # every spawn settles: running and reachable, or failed with a sentence for its user
        wait_for(lambda: not any((hub.server_model(u) or {}).get("pending") for u in users),
                 120, "spawns still pending after the restart")
        running = [u for u in users if (hub.server_model(u) or {}).get("ready")]
        failed = [u for u in users if u not in running]
        assert failed, "no spawn was interrupted"
        for u in failed:
            assert "interrupted when the hub restarted" in stopped_state(hub, u).get("notice", "")
        for u in running:
            token = hub.user_token(u)
            assert hub.get_via_proxy(f"/user/{u}/api/status", token).status_code == 200
        # no VM without a server, and no sweep was run to get there
        server_vms = {hub.server_model(u)["state"]["machine"]["vm_id"] for u in running}
        wait_for(lambda: {vm.id for vm in live_vms(cloud)} == server_vms, 60,
                 f"VMs without a server: {[v.id for v in live_vms(cloud)]} vs {server_vms}")
        assert "nebulahub-reconcile" not in hub.log()
    finally:
        hub.stop()
    wait_for(lambda: not live_vms(cloud), 60, "VMs left after the hub stopped its servers")


def test_a_cloud_outage_three_times_the_grace_drops_no_server_and_owed_releases_are_paid(
        cloud, vm_python_env, nethosts, tmp_path):
    hub = start_hub(tmp_path / "hub", cloud, vm_python_env, nethosts)
    users = ["oa", "ob", "oc"]
    try:
        tokens = {}
        for u in users:
            hub.create_user(u)
            tokens[u] = hub.user_token(u)
            assert hub.spawn(u).status_code in (201, 202)
            assert hub.progress(u)[-1].get("ready"), hub.log()[-3000:]
        stopped_vm = hub.server_model("oc")["state"]["machine"]["vm_id"]
        outage = 24  # the grace is 6 s: four times longer
        back_at = time.monotonic() + outage
        cloud.api_down(outage)
        time.sleep(1)
        hub.stop_server("oc")  # the user stops while the cloud cannot take the VM back
        time.sleep(2)
        hub.kill()  # and the hub dies while the release is owed: it must not forget it
        hub.start()
        assert cloud.vms[stopped_vm].state != 6  # not yet: the cloud is still down
        time.sleep(max(0.0, back_at - time.monotonic() - 1))
        assert cloud.vms[stopped_vm].state != 6
        for u in ("oa", "ob"):
            assert hub.server_model(u)["ready"], f"{u}'s server was dropped during the outage"
            assert hub.get_via_proxy(f"/user/{u}/api/status", tokens[u]).status_code == 200
        # the cloud is back: the owed release is paid without anybody doing anything
        wait_for(lambda: cloud.vms[stopped_vm].state == 6, 30, "the owed release was not paid")
        assert "retried until the cloud takes it" in hub.log()
        for u in ("oa", "ob"):
            hub.stop_server(u)
    finally:
        hub.stop()
    wait_for(lambda: not live_vms(cloud), 60, "VMs left behind")


def kill_sshd(host) -> None:
    """The VM's sshd dies with its sessions (the hub's tunnels with them); Jupyter lives on."""
    for pid in host.pids():
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "sshd":
                    os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def test_a_dead_ssh_path_is_noticed_within_one_poll_and_its_vm_released_once(
        cloud, vm_python_env, nethosts, tmp_path):
    hub = start_hub(tmp_path / "hub", cloud, vm_python_env, nethosts)
    try:
        hub.create_user("sd")
        assert hub.spawn("sd").status_code in (201, 202)
        assert hub.progress("sd")[-1].get("ready")
        vm_id = hub.server_model("sd")["state"]["machine"]["vm_id"]
        kill_sshd(cloud.host_of(vm_id))
        t0 = time.monotonic()
        wait_for(lambda: hub.server_model("sd") is None, 3 * POLL + 10,
                 "the hub still lists a server it cannot reach")
        noticed = time.monotonic() - t0
        assert noticed <= POLL + 8, noticed  # one poll, plus a short reconnect attempt
        wait_for(lambda: cloud.vms[vm_id].state == 6, 30, "the VM was not released")
        assert len(terminations(cloud, vm_id)) == 1, terminations(cloud, vm_id)
        assert "lost its connection" in stopped_state(hub, "sd").get("notice", "")
    finally:
        hub.stop()


def test_idle_servers_are_culled_and_give_their_vms_back(cloud, vm_python_env, nethosts,
                                                         tmp_path):
    hub = start_hub(tmp_path / "hub", cloud, vm_python_env, nethosts, """
        from spawner.reconcile import idle_culler
        culler, role = idle_culler(timeout=5, every=2)
        c.JupyterHub.services.append(culler)
        c.JupyterHub.load_roles.append(role)
    """)
    try:
        hub.create_user("idle")
        assert hub.spawn("idle").status_code in (201, 202)
        assert hub.progress("idle")[-1].get("ready")
        vm_id = hub.server_model("idle")["state"]["machine"]["vm_id"]
        wait_for(lambda: hub.server_model("idle") is None, 60, "the idle server was not culled")
        wait_for(lambda: cloud.vms[vm_id].state == 6, 30, "the culled server kept its VM")
    finally:
        hub.stop()


def test_a_server_that_fails_to_start_says_so_briefly_and_shows_its_log_on_the_spawn_page(
        cloud, vm_python_env, nethosts, tmp_path):
    hub = start_hub(tmp_path / "hub", cloud, vm_python_env, nethosts,
                    'c.OpenNebulaSpawner.args = ["--no-such-option-for-jupyter"]')
    try:
        hub.create_user("bad")
        assert hub.spawn("bad").status_code in (201, 202)
        failed = hub.progress("bad")[-1]
        assert failed.get("failed"), failed
        message = failed["message"]
        assert "exited at start" in message and "server.log" in message, message
        assert message.count("\n") <= 1 and len(message) < 400, message  # no log lines in it
        state = stopped_state(hub, "bad")
        assert "no-such-option" in state.get("notice_log", ""), state  # the log, for the user
        assert "no-such-option" in hub.log()                            # and for the admin
        # the spawn page shows the sentence and the log, as text
        s = __import__("requests").Session()
        s.get(f"{hub.url}/hub/login", timeout=30)
        s.post(f"{hub.url}/hub/login", timeout=30, data={
            "username": "bad", "password": "test-password", "_xsrf": s.cookies.get("_xsrf")})
        page = s.get(f"{hub.url}/hub/spawn", timeout=30).text
        assert "nebulahub-notice" in page and "exited at start" in page
        assert "no-such-option" in page
    finally:
        hub.stop()
    wait_for(lambda: not live_vms(cloud), 60, "VMs left behind")

"""OpenNebula end to end: a real hub + proxy, pyone against the XML-RPC double, VMs that are
namespace hosts with real sshd."""
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.hubproc import HubProcess
from tests.one_double import OneDouble

pytestmark = pytest.mark.integration

ACTIVE_PHASES = ["pending", "prolog", "booting", "VM is running", "SSH reachable",
                 "Bootstrapping", "Server answering"]


def hub_config(endpoint, vm_env, user, extra=""):
    return f"""
        c.OpenNebulaSpawner.provider = "opennebula"
        c.OpenNebulaSpawner.python_env = "{vm_env}"
        c.MachineAccess.ssh_timeout = 15
        c.OpenNebulaSpawner.poll_grace = 20
        c.OpenNebulaSpawner.profiles = [
            {{"slug": "small", "name": "Small", "cpu": 1, "memory_mb": 512}},
            {{"slug": "huge", "name": "Huge", "cpu": 8, "vcpu": 8, "memory_mb": 65536}},
            {{"slug": "brief", "name": "Brief", "max_lifetime_hours": 2 / 3600}},
        ]
        c.OpenNebulaSpawner.poll_interval = 2
        c.OpenNebulaSpawner.default_url = "/lab"
        c.OpenNebulaProvider.endpoint = "{endpoint}"
        c.OpenNebulaProvider.template_id = 0
        c.OpenNebulaProvider.hub_id = "hub-under-test"
        c.OpenNebulaProvider.ssh_user = "{user}"
        c.OpenNebulaProvider.ready_timeout = 20
        c.OpenNebulaProvider.poll_interval = 0.2
        c.OpenNebulaProvider.pool_max_age = 2
        # an admin's own context: NETWORK="YES" is still sent (without it, no guest network)
        c.OpenNebulaProvider.context = {{"SET_HOSTNAME": "jupyter"}}
        c.MachineAccess.release_retry_interval = 1
        {extra}
    """


@pytest.fixture(scope="module")
def cloud(nethosts):
    double = OneDouble(users={"hubacct": "cloud-secret-pw"}, network=nethosts, step_seconds=0.3)
    double.start()
    double.set_quota("hubacct", vms=4, cpu=6, memory=8192)
    yield double
    double.stop()


@pytest.fixture(scope="module")
def hub(cloud, vm_python_env, nethosts, tmp_path_factory):
    d = tmp_path_factory.mktemp("hub-one")
    h = HubProcess(d, hub_config(cloud.endpoint, vm_python_env, nethosts.ssh_user),
                   env={"NEBULAHUB_ONE_AUTH": "hubacct:cloud-secret-pw"})
    h.start()
    yield h
    h.stop()


@pytest.fixture(autouse=True)
def no_leftovers_for_the_next_test(request, cloud):
    """A failing test fails alone: what it left running is cleaned before the next one starts.
    (Each test still asserts itself that it left no VM behind.)"""
    yield
    if not live_vms(cloud):
        return
    if "hub" in request.fixturenames:
        hub = request.getfixturevalue("hub")
        if hub.proc and hub.proc.poll() is None:
            for user in hub.api("GET", "/users").json():
                for name in user.get("servers") or {}:
                    hub.api("DELETE", f"/users/{user['name']}/servers/{name}" if name
                            else f"/users/{user['name']}/server")
            wait_no_live_vms(cloud, timeout=30)
    for vm in live_vms(cloud):  # as the cloud's admin would
        cloud._rpc_vm_action(vm.owner, "terminate-hard", vm.id)


def live_vms(cloud):
    return [vm for vm in cloud.vms.values() if vm.state != 6]


def wait_done(cloud, vm_id, timeout=20):
    """Terminate is asynchronous in oned: SHUTDOWN -> EPILOG -> DONE."""
    deadline = time.monotonic() + timeout
    while cloud.vms[vm_id].state != 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    return cloud.vms[vm_id].state


def wait_no_live_vms(cloud, timeout=20):
    deadline = time.monotonic() + timeout
    while live_vms(cloud) and time.monotonic() < deadline:
        time.sleep(0.2)
    return live_vms(cloud)


def port_listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_student_gets_a_server_on_a_fresh_vm_and_stop_terminates_it(hub, cloud):
    hub.create_user("stu")
    token = hub.user_token("stu")
    assert hub.spawn("stu", options={"profile": "small"}).status_code == 202
    events = hub.progress("stu")
    assert events[-1].get("ready"), events
    messages = [e["message"] for e in events]
    positions = []
    for phase in ACTIVE_PHASES:
        hits = [i for i, m in enumerate(messages) if phase.lower() in m.lower()]
        assert hits, (phase, messages)
        positions.append(hits[0])
    assert positions == sorted(positions), messages

    assert hub.get_via_proxy("/user/stu/api/status", token).status_code == 200
    state = hub.server_model("stu")["state"]
    vm = cloud.vms[state["machine"]["vm_id"]]
    assert vm.state == 3
    host = cloud.host_of(state["machine"]["vm_id"])
    assert state["machine"]["host_keys"][f"{host.ip}:22"] == host.host_key_line
    # tags: this hub, this user, this start
    user_template = cloud.all_templates_text()
    assert "hub-under-test" in user_template and state["machine"]["start_id"] in user_template

    # security: the server's token is in no VM template and in no hub log line
    secret = host.run("cat", state["workdir"].replace("~", f"/home/{host.user}") + "/token"
                      ).stdout.decode().strip()
    assert len(secret) > 20
    assert secret not in cloud.all_templates_text()
    assert secret not in hub.log()
    assert "cloud-secret-pw" not in hub.log()
    # the per-spawn private key: sealed with the hub's crypt key, never in clear in the state
    # admins read through the REST API, nor in the hub's database file
    assert "PRIVATE KEY" not in str(state) and "private_key" not in state["machine"]
    assert state["machine"]["sealed_private_key"].startswith("gAAAA")  # a Fernet token
    assert b"PRIVATE KEY" not in (hub.dir / "hub.sqlite").read_bytes()
    for pid in host.pids():
        try:
            assert secret.encode() not in open(f"/proc/{pid}/cmdline", "rb").read()
        except FileNotFoundError:
            pass

    hub.stop_server("stu")
    assert wait_done(cloud, state["machine"]["vm_id"]) == 6  # DONE
    context = cloud.vms[state["machine"]["vm_id"]].template["CONTEXT"]
    assert context["NETWORK"] == "YES" and context["SET_HOSTNAME"] == "jupyter"
    assert not port_listening(state["local_port"]), "server tunnel still open"
    assert wait_no_live_vms(cloud) == []


def test_two_named_servers_get_two_vms(hub, cloud):
    hub.create_user("nia")
    token = hub.user_token("nia")
    for name in ("one", "two"):
        assert hub.spawn("nia", name, {"profile": "small"}).status_code == 202
    for name in ("one", "two"):
        assert hub.progress("nia", name)[-1].get("ready")
        assert hub.get_via_proxy(f"/user/nia/{name}/api/status", token).status_code == 200
    ids = {hub.server_model("nia", n)["state"]["machine"]["vm_id"] for n in ("one", "two")}
    assert len(ids) == 2
    for name in ("one", "two"):
        hub.stop_server("nia", name)
    assert wait_no_live_vms(cloud) == []


def test_polls_share_one_cloud_query_and_start_nothing_on_the_vms(hub, cloud):
    """Fifty students' servers must not cost fifty cloud calls and fifty programs per poll:
    one vmpool query serves every server's poll, and liveness is a connection to the server's
    port over the standing SSH connection."""
    hosts = {}
    for user in ("poa", "pob", "poc"):
        hub.create_user(user)
        assert hub.spawn(user, options={"profile": "small"}).status_code == 202
        assert hub.progress(user)[-1].get("ready"), hub.log()[-3000:]
        hosts[user] = cloud.host_of(hub.server_model(user)["state"]["machine"]["vm_id"])
    log_marks = {u: len(h.sshd_log()) for u, h in hosts.items()}
    calls_before = len(cloud.methods_called())
    time.sleep(7)  # the hub polls every 2 s: three or four polls of each of the three servers
    calls = cloud.methods_called()[calls_before:]
    assert "one.vm.info" not in calls, calls
    # one view serves every server (at most one query per pool_max_age of 2 s), not one call
    # per server per poll (which would be 9 to 12 here)
    assert 1 <= calls.count("one.vmpool.infoextended") <= 4, calls
    for user, host in hosts.items():
        assert "Starting session: command" not in host.sshd_log()[log_marks[user]:], user
        assert hub.server_model(user)["ready"]
    for user in hosts:
        hub.stop_server(user)
    assert wait_no_live_vms(cloud) == []


def test_hub_killed_and_restarted_serves_again_and_leaks_no_vm(hub, cloud):
    hub.create_user("kim")
    token = hub.user_token("kim")
    assert hub.spawn("kim", options={"profile": "small"}).status_code == 202
    assert hub.progress("kim")[-1].get("ready")
    before = hub.server_model("kim")["state"]
    hub.kill()
    assert not port_listening(before["local_port"])  # tunnels died with the hub
    hub.start()
    hub.wait_server("kim", ready=True)
    r = hub.get_via_proxy("/user/kim/api/status", token)
    assert r.status_code == 200, hub.log()[-3000:]
    after = hub.server_model("kim")["state"]
    assert after["machine"]["vm_id"] == before["machine"]["vm_id"]
    assert [vm.id for vm in live_vms(cloud)] == [before["machine"]["vm_id"]]
    hub.stop_server("kim")
    assert wait_no_live_vms(cloud) == []


def failed_spawn(hub, user, options=None):
    hub.create_user(user)
    r = hub.spawn(user, options=options or {"profile": "small"})
    assert r.status_code == 202, r.text
    events = hub.progress(user)
    assert events[-1].get("failed"), events
    return events[-1]["message"]


def test_boot_failure_is_readable_and_leaves_no_vm(hub, cloud):
    cloud.fail_next_boot()
    message = failed_spawn(hub, "bob1")
    assert "could not start" in message and "BOOT_FAILURE" in message, message
    assert wait_no_live_vms(cloud) == []


def test_ssh_never_reachable_is_readable_and_leaves_no_vm(hub, cloud):
    cloud.ssh_never(True)
    try:
        t0 = time.monotonic()
        message = failed_spawn(hub, "sid")
        assert time.monotonic() - t0 < 60
    finally:
        cloud.ssh_never(False)
    assert "could not log in" in message, message
    assert wait_no_live_vms(cloud) == []


def spawn_refusal(hub, user, options):
    """The refusal message, whether the hub answers the POST with it (403) or, having answered
    202 at once (the tests set slow_spawn_timeout=0), reports it on the progress stream."""
    r = hub.spawn(user, options=options)
    if r.status_code == 403:
        return r.json()["message"]
    assert r.status_code == 202, r.text
    events = hub.progress(user)
    assert events[-1].get("failed"), events
    return events[-1]["message"]


def test_over_quota_is_refused_before_any_vm_exists(hub, cloud):
    hub.create_user("quinn")
    before = len(cloud.vms)
    message = spawn_refusal(hub, "quinn", {"profile": "huge"})
    assert "quota" in message and "CPU" in message, message
    assert len(cloud.vms) == before
    assert hub.server_model("quinn") is None


def test_cloud_quota_refusal_at_create_is_readable(hub, cloud):
    cloud.set_quota("hubacct", vms=0)
    try:
        hub.create_user("vic")
        message = spawn_refusal(hub, "vic", {"profile": "small"})
        assert "quota" in message and "VM" in message, message
    finally:
        cloud.set_quota("hubacct", vms=4)
    assert wait_no_live_vms(cloud) == []


def test_cancel_during_boot_leaves_no_vm(hub, cloud):
    cloud.boot_delay(30)
    try:
        hub.create_user("cai")
        assert hub.spawn("cai", options={"profile": "small"}).status_code == 202
        deadline = time.monotonic() + 15
        while not live_vms(cloud) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert live_vms(cloud), "no VM was created"
        r = hub.api("DELETE", "/users/cai/server")
        assert r.status_code in (202, 204), r.text
        hub.wait_server("cai", ready=False)
    finally:
        cloud.boot_delay(0)
    assert wait_no_live_vms(cloud) == []


def test_changed_host_key_is_refused_after_restart(hub, cloud):
    hub.create_user("hal")
    assert hub.spawn("hal", options={"profile": "small"}).status_code == 202
    assert hub.progress("hal")[-1].get("ready")
    state = hub.server_model("hal")["state"]
    hub.kill()
    cloud.host_of(state["machine"]["vm_id"]).regenerate_host_key()  # a different machine answers now
    hub.start()
    hub.wait_server("hal", ready=False, timeout=60)
    assert "not the one recorded at first contact" in hub.log()
    assert wait_no_live_vms(cloud) == []


def test_reconcile_terminates_only_this_hubs_orphans_and_never_a_living_owners(hub, cloud,
                                                                              tmp_path):
    import asyncio

    from opennebula import OpenNebulaClient

    async def make_vms():
        client = OpenNebulaClient(cloud.endpoint, "hubacct:cloud-secret-pw")
        ours = await client.instantiate(name="orphan", template_id=0, tags={
            "NEBULAHUB_HUB_ID": "hub-under-test", "NEBULAHUB_USER": "ghost",
            "NEBULAHUB_START_ID": "gone123"})
        other = await client.instantiate(name="other", template_id=0,
                                         tags={"NEBULAHUB_HUB_ID": "another-hub"})
        untagged = await client.instantiate(name="plain", template_id=0)
        # a job's worker VM: no server references it, and the hub is not its source of truth
        worker = await client.instantiate(name="worker", template_id=0, tags={
            "NEBULAHUB_HUB_ID": "hub-under-test", "NEBULAHUB_USER": "rex",
            "NEBULAHUB_START_ID": "job17a", "NEBULAHUB_OWNER_KIND": "job-worker",
            "NEBULAHUB_OWNER_ID": "job-17"})
        await client.close()
        return ours, other, untagged, worker

    cloud.set_quota("hubacct", vms=6, cpu=6, memory=8192)  # four test VMs plus rex's
    ours, other, untagged, worker = asyncio.run(make_vms())
    hub.create_user("rex")
    assert hub.spawn("rex", options={"profile": "small"}).status_code == 202
    assert hub.progress("rex")[-1].get("ready")
    rex_vm = hub.server_model("rex")["state"]["machine"]["vm_id"]

    config = tmp_path / "reconcile_config.py"
    config.write_text(f'c.OpenNebulaProvider.endpoint = "{cloud.endpoint}"\n'
                      'c.OpenNebulaProvider.hub_id = "hub-under-test"\n')
    env = dict(os.environ, JUPYTERHUB_API_TOKEN=hub.token,
               JUPYTERHUB_API_URL=f"{hub.url}/hub/api",
               NEBULAHUB_ONE_AUTH="hubacct:cloud-secret-pw")
    cmd = [sys.executable, "-m", "nebulahub.cli", "reconcile", "--config", str(config)]
    dry = subprocess.run(cmd + ["--dry-run"], env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert f"would terminate: {ours}" in dry.stdout, dry.stdout
    assert cloud.vms[ours].state != 6
    real = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert real.returncode == 0, real.stderr
    assert f"terminated: {ours}" in real.stdout, real.stdout
    assert wait_done(cloud, ours) == 6
    assert cloud.vms[other].state != 6 and cloud.vms[untagged].state != 6
    assert cloud.vms[rex_vm].state == 3
    assert cloud.vms[worker].state == 3, "a job worker's VM was taken for a server's orphan"
    vm_tags = cloud.all_templates_text()
    assert "NEBULAHUB_OWNER_KIND" in vm_tags and "rex/" in vm_tags  # the server's own VM
    hub.stop_server("rex")
    # leave the cloud clean for the other tests: the foreign VMs are the test's own
    async def cleanup():
        client = OpenNebulaClient(cloud.endpoint, "hubacct:cloud-secret-pw")
        for vm_id in (other, untagged, worker):
            await client.terminate(vm_id)
        await client.close()

    asyncio.run(cleanup())
    cloud.set_quota("hubacct", vms=4, cpu=6, memory=8192)
    assert wait_no_live_vms(cloud) == []


@pytest.fixture(scope="module")
def bastion_env(nethosts, vm_python_env, tmp_path_factory):
    d = tmp_path_factory.mktemp("hub-bastion")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "jump_key")],
                   check=True)
    bastion = nethosts.add_bastion("jump1",
                                   authorized_keys=[(d / "jump_key.pub").read_text().strip()])
    double = OneDouble(users={"hubacct": "pw2"}, network=nethosts, bastion=bastion,
                       step_seconds=0.2)
    double.start()
    h = HubProcess(d, hub_config(double.endpoint, vm_python_env, nethosts.ssh_user, f"""
        c.MachineAccess.jump_host = "{bastion.user}@{bastion.ip}"
        c.MachineAccess.jump_key_file = "{d}/jump_key"
    """), env={"NEBULAHUB_ONE_AUTH": "hubacct:pw2"})
    h.start()
    yield h, double, bastion
    h.stop()
    double.stop()
    bastion.destroy()


def test_vms_reachable_only_through_the_bastion(bastion_env):
    hub, double, bastion = bastion_env
    hub.create_user("jo")
    token = hub.user_token("jo")
    assert hub.spawn("jo", options={"profile": "small"}).status_code == 202
    events = hub.progress("jo")
    assert events[-1].get("ready"), events
    state = hub.server_model("jo")["state"]
    vm_ip = double.host_of(state["machine"]["vm_id"]).ip
    with socket.socket() as s:  # no direct route from the hub's namespace
        s.settimeout(2)
        assert s.connect_ex((vm_ip, 22)) != 0
    assert f"{bastion.ip}:22" in state["machine"]["host_keys"]
    assert hub.get_via_proxy("/user/jo/api/status", token).status_code == 200
    hub.stop_server("jo")
    assert wait_no_live_vms(double) == []


def test_server_survives_a_cloud_outage_shorter_than_the_grace(hub, cloud):
    hub.create_user("ola")
    token = hub.user_token("ola")
    assert hub.spawn("ola", options={"profile": "small"}).status_code == 202
    assert hub.progress("ola")[-1].get("ready")
    cloud.api_down(8)  # the hub polls every 2 s: several polls meet a refused connection
    time.sleep(9)
    assert hub.server_model("ola")["ready"], hub.log()[-3000:]
    assert "the cloud did not answer; its server answers" in hub.log()
    assert hub.get_via_proxy("/user/ola/api/status", token).status_code == 200
    hub.stop_server("ola")
    assert wait_no_live_vms(cloud) == []


def test_profile_lifetime_ends_the_server_and_its_vm(hub, cloud):
    hub.create_user("lee")
    assert hub.spawn("lee", options={"profile": "brief"}).status_code == 202
    assert hub.progress("lee")[-1].get("ready")
    hub.wait_server("lee", ready=False, timeout=30)  # 2 s lifetime, 2 s poll interval
    assert wait_no_live_vms(cloud) == []
    assert "reached its profile's maximum lifetime" in hub.log()


def test_spawn_page_shows_quota_and_phases_in_the_browser(hub, cloud):
    from tests.browser import chromium_page, hub_login, start_with_profile

    with chromium_page() as page:
        hub_login(page, hub.url, "pia", "test-password")
        page.wait_for_selector("table.nebulahub-quota", timeout=30_000)
        quota = page.inner_text("table.nebulahub-quota")
        assert "used of 4" in quota and "free" in quota, quota
        start_with_profile(page, "small")
        page.wait_for_url("**/user/pia/**", timeout=120_000)
        page.wait_for_selector(".jp-LabShell, #jp-main-dock-panel", timeout=120_000)
    hub.stop_server("pia")
    assert wait_no_live_vms(cloud) == []


def test_hub_managed_sweep_terminates_orphans_by_itself(cloud, vm_python_env, nethosts,
                                                         tmp_path):
    import asyncio

    from opennebula import OpenNebulaClient

    d = tmp_path / "hub-sweep"
    h = HubProcess(d, hub_config(cloud.endpoint, vm_python_env, nethosts.ssh_user, f"""
        from spawner.reconcile import managed_service
        sweep, role = managed_service("{d}/jupyterhub_config.py", every=1)
        c.JupyterHub.services.append(sweep)
        c.JupyterHub.load_roles.append(role)
    """), env={"NEBULAHUB_ONE_AUTH": "hubacct:cloud-secret-pw"})
    h.start()
    try:
        async def orphan():
            async with OpenNebulaClient(cloud.endpoint, "hubacct:cloud-secret-pw") as client:
                return await client.instantiate(name="lost", template_id=0, tags={
                    "NEBULAHUB_HUB_ID": "hub-under-test", "NEBULAHUB_START_ID": "lost1"})

        vm_id = asyncio.run(orphan())
        deadline = time.monotonic() + 30
        while cloud.vms[vm_id].state != 6:
            assert time.monotonic() < deadline, h.log()[-3000:]
            time.sleep(0.3)
        assert "cloud-secret-pw" not in h.log()
    finally:
        h.stop()
    assert wait_no_live_vms(cloud) == []


def test_wrong_cloud_credentials_give_a_readable_refusal_and_no_vm(cloud, vm_python_env,
                                                                   nethosts, tmp_path):
    h = HubProcess(tmp_path / "hub-badauth",
                   hub_config(cloud.endpoint, vm_python_env, nethosts.ssh_user),
                   env={"NEBULAHUB_ONE_AUTH": "hubacct:wrong-password"})
    h.start()
    try:
        before = len(cloud.vms)
        h.create_user("ann")
        message = spawn_refusal(h, "ann", {"profile": "small"})
        assert "credentials" in message, message
        assert "wrong-password" not in message and "wrong-password" not in h.log()
        assert len(cloud.vms) == before
    finally:
        h.stop()
    assert "Closed 1 OpenNebula client(s)" in h.log()  # released at the hub's shutdown


# ---- a real oned's manners: the product copes --------------------------------------------------

def test_cancel_during_prolog_leaves_no_vm_once_oned_allows_the_terminate(hub, cloud):
    """oned refuses terminate while the image is copied (PROLOG): the release is owed and paid
    as soon as the VM can be terminated, without an orphan sweep."""
    cloud.prolog_delay(30)
    try:
        hub.create_user("pro")
        assert hub.spawn("pro", options={"profile": "small"}).status_code == 202
        deadline = time.monotonic() + 15
        while not any(vm.lcm_state == 1 for vm in live_vms(cloud)):  # PROLOG
            assert time.monotonic() < deadline, "no VM reached PROLOG"
            time.sleep(0.1)
        (vm_id,) = [vm.id for vm in live_vms(cloud)]
        assert hub.api("DELETE", "/users/pro/server").status_code in (202, 204)
        hub.wait_server("pro", ready=False)
        time.sleep(2)
        assert cloud.vms[vm_id].state != 6  # oned refused: the VM is still copying its image
        assert "retried until the cloud takes it" in hub.log()
    finally:
        cloud.prolog_delay(0)  # the copy ends; the owed terminate is accepted then
    assert wait_done(cloud, vm_id, timeout=30) == 6
    assert "one.vm.recover" not in cloud.methods_called()


def test_stop_then_start_with_a_quota_of_one_waits_for_done_instead_of_failing(hub, cloud):
    cloud.set_quota("hubacct", vms=1)
    cloud.shutdown_delay(4)  # a real VM takes a while to shut down; its quota frees at DONE
    try:
        hub.create_user("qu")
        assert hub.spawn("qu", options={"profile": "small"}).status_code == 202
        assert hub.progress("qu")[-1].get("ready")
        first = hub.server_model("qu")["state"]["machine"]["vm_id"]
        hub.stop_server("qu")
        assert cloud.vms[first].state != 6  # still shutting down
        assert hub.spawn("qu", options={"profile": "small"}).status_code == 202
        events = hub.progress("qu")
        assert events[-1].get("ready"), events
        assert any("previous VM to finish shutting down" in e.get("message", "")
                   for e in events), events
        assert cloud.vms[first].state == 6
        hub.stop_server("qu")
    finally:
        cloud.shutdown_delay(0)
        cloud.set_quota("hubacct", vms=4, cpu=6, memory=8192)
    assert wait_no_live_vms(cloud) == []


def test_a_powered_off_vm_is_not_terminated_and_comes_back(hub, cloud):
    hub.create_user("pw")
    token = hub.user_token("pw")
    assert hub.spawn("pw", options={"profile": "small"}).status_code == 202
    assert hub.progress("pw")[-1].get("ready")
    vm_id = hub.server_model("pw")["state"]["machine"]["vm_id"]
    cloud.set_vm_state(vm_id, 8, 0)  # POWEROFF by an admin: the guest is down
    time.sleep(8)  # several polls
    assert cloud.vms[vm_id].state == 8, "a powered-off VM was terminated"
    assert not terminations_of(cloud, vm_id)
    cloud.set_vm_state(vm_id, 3, 3, resume=True)  # powered on again
    deadline = time.monotonic() + 30
    while hub.get_via_proxy("/user/pw/api/status", token).status_code != 200:
        assert time.monotonic() < deadline, "the server did not come back with its VM"
        time.sleep(0.5)
    hub.stop_server("pw")
    assert wait_no_live_vms(cloud) == []


def test_a_vm_in_lcm_unknown_is_judged_by_its_server_not_dropped(hub, cloud):
    hub.create_user("unk")
    token = hub.user_token("unk")
    assert hub.spawn("unk", options={"profile": "small"}).status_code == 202
    assert hub.progress("unk")[-1].get("ready")
    vm_id = hub.server_model("unk")["state"]["machine"]["vm_id"]
    cloud.set_vm_state(vm_id, 3, 16)  # the cloud lost contact with the hypervisor
    time.sleep(8)
    assert hub.server_model("unk")["ready"]
    assert hub.get_via_proxy("/user/unk/api/status", token).status_code == 200
    hub.stop_server("unk")  # terminate is allowed in UNKNOWN
    assert wait_no_live_vms(cloud) == []


def test_the_schedulers_message_reaches_the_progress_page_and_the_spawn_gives_up_with_it(
        hub, cloud):
    cloud.unschedulable("Cannot dispatch VM: No hosts enabled to run VMs")
    try:
        hub.create_user("sch")
        assert hub.spawn("sch", options={"profile": "small"}).status_code == 202
        events = hub.progress("sch", timeout=120)
    finally:
        cloud.unschedulable(None)
    messages = [e.get("message", "") for e in events]
    assert any("cannot place your VM yet" in m and "No hosts enabled" in m for m in messages)
    assert events[-1].get("failed") and "No hosts enabled" in events[-1]["message"], events[-1]
    assert wait_no_live_vms(cloud) == []


def test_a_nic_without_ip_fails_quickly_with_a_sentence(hub, cloud):
    cloud.next_nic_without_ip()
    hub.create_user("nip")
    t0 = time.monotonic()
    assert hub.spawn("nip", options={"profile": "small"}).status_code == 202
    failed = hub.progress("nip")[-1]
    assert failed.get("failed") and "no IP address" in failed["message"], failed
    assert time.monotonic() - t0 < 15  # not the 20 s ready timeout
    assert wait_no_live_vms(cloud) == []


def terminations_of(cloud, vm_id):
    return [c for c in cloud.calls if c.method == "one.vm.action" and c.args[-1] == vm_id]


def test_a_group_without_create_template_permission_gets_a_sentence_and_no_vm(hub, cloud):
    cloud.deny_template_create("hubacct")
    try:
        hub.create_user("perm")
        before = len(cloud.vms)
        assert hub.spawn("perm", options={"profile": "small"}).status_code == 202
        failed = hub.progress("perm")[-1]
    finally:
        cloud.deny_template_create("hubacct", denied=False)
    assert failed.get("failed") and "CREATE permission on templates" in failed["message"], failed
    assert len(cloud.vms) == before


def test_the_spawn_form_shows_the_global_quota_entry_not_a_clusters(hub, cloud):
    from tests.browser import chromium_page, hub_login

    cloud.set_quota("hubacct", vms=1, cpu=1, memory=1024, cluster_ids=[100])  # listed first
    cloud.set_quota("hubacct", vms=4, cpu=6, memory=8192)
    with chromium_page() as page:
        hub_login(page, hub.url, "qform", "test-password")
        page.wait_for_selector("table.nebulahub-quota", timeout=30_000)
        quota = page.inner_text("table.nebulahub-quota")
    assert "used of 4" in quota and "used of 6" in quota, quota

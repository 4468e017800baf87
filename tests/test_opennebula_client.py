"""The OpenNebula façade, through real pyone over HTTP, against the XML-RPC double.

The story: the hub creates a student's VM, watches it boot, finds it again by its tags,
reads its quota, meets every error a cloud can throw, and never leaks its password.
"""
import asyncio
import base64
import logging
import socket
import threading
import time

import asyncssh
import pytest
from pyone import LCM_STATE

from opennebula import (TAG_HUB_ID, TAG_SERVER, TAG_START_ID, TAG_USER, AuthenticationError,
                        CloudUnavailableError, NotFoundError, OpenNebulaClient, OpenNebulaError,
                        QuotaExceededError, VmPhase)
from opennebula.models import Quota, QuotaUsage
from opennebula.states import phase_for
from tests.conftest import require_root
from tests.nethosts import client_keypair, network_fixture
from tests.one_double import OneDouble

PASSWORD = "S3cret-hub-pw"
SESSION = f"hub:{PASSWORD}"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests nebulahub"
SMALL = 0  # the double's predefined template "nebulahub-small"
INLINE = {"CPU": 1, "VCPU": 1, "MEMORY": 512, "DISK": {"IMAGE_ID": 0}, "NIC": {"NETWORK_ID": 0}}


def tags_for(hub="hub-1", user="alice", server=""):
    return {TAG_HUB_ID: hub, TAG_USER: user, TAG_SERVER: server, TAG_START_ID: "s1"}


@pytest.fixture
def double():
    d = OneDouble({"hub": PASSWORD, "other": "other-pw", "oneadmin": "admin-pw"},
                  step_seconds=0.05)
    d.start()
    yield d
    d.stop()


@pytest.fixture
async def client(double):
    c = OpenNebulaClient(double.endpoint, SESSION, timeout=5)
    yield c
    await c.close()


def login_context(pub: str) -> dict:
    """What a real guest needs to be reached: its network configured (NETWORK=YES) and the
    key installed for the test hosts' login user (one-context's USERNAME)."""
    from tests.nethosts.network import DEFAULT_USER
    return {"SSH_PUBLIC_KEY": pub, "NETWORK": "YES", "USERNAME": DEFAULT_USER}


async def wait_phase(client, vm_id, phase, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        info = await client.vm_info(vm_id)
        if info.phase is phase or time.monotonic() > deadline:
            return info
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------ creating and watching VMs

async def test_student_vm_from_template_boots_through_every_phase(client, double):
    vm_id = await client.instantiate(name="jupyter-alice", template_id=SMALL,
                                     context={"SSH_PUBLIC_KEY": PUBKEY}, tags=tags_for())
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        info = await client.vm_info(vm_id)
        if not seen or seen[-1] is not info.phase:
            seen.append(info.phase)
        if info.phase is VmPhase.RUNNING:
            break
        await asyncio.sleep(0.01)
    assert seen == [VmPhase.PENDING, VmPhase.PROLOG, VmPhase.BOOT, VmPhase.RUNNING]
    assert info.name == "jupyter-alice" and info.id == vm_id
    assert (info.state, info.lcm_state) == (3, 3) and info.is_ready
    assert info.ip == double.host_of(vm_id).ip
    assert info.failure is None
    # The instantiate call went out as one.template.instantiate(id, name, hold, extra, persistent)
    call = next(c for c in double.calls if c.method == "one.template.instantiate")
    assert call.args[1:4] == (SMALL, "jupyter-alice", False) and call.args[5] is False


async def test_vm_is_tagged_from_its_first_instant(client, double):
    vm_id = await client.instantiate(name="jupyter-alice", template_id=SMALL, tags=tags_for())
    first = await client.vm_info(vm_id)
    assert first.phase is VmPhase.PENDING
    assert first.tags == tags_for()
    assert "one.vm.update" not in double.methods_called()
    # oned files unknown attributes under USER_TEMPLATE; the very first stored version has them
    first_user_template = [t for t in double.all_templates_text().splitlines()
                           if t.startswith("<USER_TEMPLATE>")][0]
    assert "<NEBULAHUB_HUB_ID><![CDATA[hub-1]]></NEBULAHUB_HUB_ID>" in first_user_template


async def test_context_is_merged_over_the_templates_own_context(client, double):
    vm_id = await client.instantiate(name="j", template_id=SMALL, cpu=2, memory_mb=1024,
                                     context={"SSH_PUBLIC_KEY": PUBKEY, "TOKEN": "YES"})
    template = double.vms[vm_id].template
    assert template["CONTEXT"]["NETWORK"] == "YES"          # kept from the template
    assert template["CONTEXT"]["SSH_PUBLIC_KEY"] == PUBKEY  # ours replaced $USER[...]
    assert template["CONTEXT"]["TOKEN"] == "YES"
    assert (template["CPU"], template["MEMORY"], template["VCPU"]) == ("2", "1024", "1")


async def test_vm_from_inline_template(client, double):
    vm_id = await client.instantiate(name="inline-vm", template=INLINE, vcpu=2,
                                     context={"SSH_PUBLIC_KEY": PUBKEY, "NETWORK": "YES"},
                                     tags=tags_for(user="bob"))
    assert "one.vm.allocate" in double.methods_called()
    info = await wait_phase(client, vm_id, VmPhase.RUNNING)
    assert info.phase is VmPhase.RUNNING and info.name == "inline-vm"
    assert info.ip == double.host_of(vm_id).ip and info.tags[TAG_USER] == "bob"
    stored = double.vms[vm_id].template
    assert stored["DISK"] == {"IMAGE_ID": "0"} and stored["VCPU"] == "2"
    assert stored["CONTEXT"]["SSH_PUBLIC_KEY"] == PUBKEY


async def test_instantiate_needs_exactly_one_template_and_a_name(client):
    with pytest.raises(ValueError):
        await client.instantiate(name="x")
    with pytest.raises(ValueError):
        await client.instantiate(name="x", template_id=0, template=INLINE)
    with pytest.raises(ValueError):
        await client.instantiate(name="", template_id=0)


async def test_unknown_template_is_not_found(client):
    with pytest.raises(NotFoundError, match="VM template 77 does not exist"):
        await client.instantiate(name="x", template_id=77, context={"NETWORK": "YES"})


# ------------------------------------------------------------------ tags

async def test_list_tagged_finds_only_this_hubs_live_vms(client, double):
    mine = await client.instantiate(name="a", template_id=SMALL, tags=tags_for("hub-1"))
    gone = await client.instantiate(name="b", template_id=SMALL, tags=tags_for("hub-1"))
    await client.instantiate(name="c", template_id=SMALL, tags=tags_for("hub-2"))
    await client.instantiate(name="d", template_id=SMALL)
    other_client = OpenNebulaClient(double.endpoint, "other:other-pw")
    try:
        await other_client.instantiate(name="e", template_id=SMALL, tags=tags_for("hub-1"))
    finally:
        await other_client.close()
    await client.terminate(gone)

    found = await client.list_tagged("hub-1")
    assert [vm.id for vm in found] == [mine]
    assert found[0].tags == tags_for("hub-1")
    call = [c for c in double.calls if c.method == "one.vmpool.infoextended"][-1]
    assert call.args[1:] == (-3, -1, -1, -1)


async def test_tag_adds_attributes_and_keeps_the_others(client, double):
    vm_id = await client.instantiate(name="a", template_id=SMALL, tags=tags_for())
    await client.tag(vm_id, {TAG_START_ID: 's2 "quoted"', "NEBULAHUB_NOTE": "x",
                             "NEBULAHUB_PATH": "a\\b\\"})
    info = await client.vm_info(vm_id)
    assert info.tags[TAG_START_ID] == 's2 "quoted"'
    assert info.tags["NEBULAHUB_PATH"] == "a\\b\\"  # oned keeps backslashes: none added
    assert info.tags[TAG_HUB_ID] == "hub-1" and info.tags["NEBULAHUB_NOTE"] == "x"
    with pytest.raises(NotFoundError, match="VM 9999 does not exist"):
        await client.tag(9999, {"NEBULAHUB_NOTE": "x"})
    with pytest.raises(ValueError):
        await client.tag(vm_id, {"lower-case": "x"})


# ------------------------------------------------------------------ terminate

async def test_terminate_is_asynchronous_frees_quota_at_done_and_is_idempotent(client, double):
    vm_id = await client.instantiate(name="a", template_id=SMALL)
    await wait_phase(client, vm_id, VmPhase.RUNNING)
    await client.terminate(vm_id)
    # as in oned: SHUTDOWN -> EPILOG -> DONE, and the quota is used until DONE
    assert (await client.vm_info(vm_id)).phase is VmPhase.STOPPING
    assert (await client.quota()).vms.used == 1
    await client.terminate(vm_id)      # already shutting down: fine
    assert (await wait_phase(client, vm_id, VmPhase.DONE)).phase is VmPhase.DONE
    assert double.host_of(vm_id).destroyed
    await client.terminate(vm_id)      # already DONE
    await client.terminate(424242)     # never existed
    quota = await client.quota()
    assert quota.vms.used == 0 and quota.cpu.used == 0


async def test_terminate_refused_in_prolog_says_to_ask_again_and_works_once_running(client,
                                                                                    double):
    from opennebula import VmBusyError

    double.prolog_delay(2)
    vm_id = await client.instantiate(name="slow", template_id=SMALL)
    await wait_phase(client, vm_id, VmPhase.PROLOG)
    with pytest.raises(VmBusyError, match="current state") as e:
        await client.terminate(vm_id)
    assert e.value.transient and "wrong state PROLOG" in e.value.cloud_message
    double.prolog_delay(0)
    await wait_phase(client, vm_id, VmPhase.RUNNING)
    await client.terminate(vm_id)
    assert (await wait_phase(client, vm_id, VmPhase.DONE)).phase is VmPhase.DONE
    assert "one.vm.recover" not in double.methods_called()  # needs ADMIN: never tried


async def test_terminate_a_vm_still_pending(client, double):
    vm_id = await client.instantiate(name="a", template_id=SMALL)
    await client.terminate(vm_id)
    await asyncio.sleep(0.3)  # the boot timers must not resurrect it
    assert (await client.vm_info(vm_id)).phase is VmPhase.DONE
    assert not double.host_of(vm_id).sshd_started


# ------------------------------------------------------------------ quota

async def test_quota_shows_usage_and_explains_what_does_not_fit(client, double):
    double.set_quota("hub", vms=3, cpu=2, memory=2048)
    await client.instantiate(name="a", template_id=SMALL)  # 1 CPU, 512 MB
    quota = await client.quota()
    assert quota.vms == QuotaUsage(used=1, limit=3) and quota.vms.free == 2
    assert quota.cpu == QuotaUsage(used=1, limit=2)
    assert quota.memory_mb == QuotaUsage(used=512, limit=2048)
    assert quota.check(cpu=1, memory_mb=512) == []
    assert quota.check(cpu=2, memory_mb=512) == ["needs 2 CPU but only 1 of 2 is free"]
    assert quota.check(cpu=1, memory_mb=4096, vms=3) == [
        "needs 3 VMs but only 2 of 3 is free",
        "needs 4096 MB of memory but only 1536 of 2048 is free"]


async def test_quota_default_and_unlimited(client, double):
    quota = await client.quota()  # nothing set anywhere: unlimited
    assert quota.vms.limit is None and quota.vms.free is None
    assert quota.check(cpu=64, memory_mb=10**6) == []
    double.set_default_quota(vms=5, cpu=8)
    double.set_quota("hub", vms=-1, cpu=-2, memory=-1)
    quota = await client.quota()
    assert quota.vms.limit == 5       # -1: the default quota
    assert quota.cpu.limit is None    # -2: unlimited
    assert quota.memory_mb.limit is None  # -1 with no default set: unlimited, as oned does


async def test_over_quota_is_a_quota_error_with_the_clouds_words(client, double):
    double.set_quota("hub", vms=1)
    await client.instantiate(name="a", template_id=SMALL)
    with pytest.raises(QuotaExceededError) as err:
        await client.instantiate(name="b", template_id=SMALL)
    assert "quota" in str(err.value)
    assert "limit of 1 reached for VMS quota in VM" in err.value.cloud_message
    double.set_quota("hub", vms=5, cpu=1.5)
    with pytest.raises(QuotaExceededError, match="limit of 1.5 reached for CPU"):
        await client.instantiate(name="c", template=INLINE, cpu=1)


def test_quota_check_reads_like_a_sentence():
    quota = Quota(vms=QuotaUsage(used=0, limit=1), cpu=QuotaUsage(used=3, limit=4),
                  memory_mb=QuotaUsage(used=0))
    assert quota.check(cpu=2, memory_mb=512) == ["needs 2 CPU but only 1 of 4 is free"]
    assert QuotaUsage(used=5, limit=4).free == 0


# ------------------------------------------------------------------ errors

async def test_wrong_password_is_an_authentication_error_without_the_secret(double, caplog):
    caplog.set_level(logging.DEBUG)
    bad = OpenNebulaClient(double.endpoint, "hub:wrong-Pa55word")
    try:
        with pytest.raises(AuthenticationError) as err:
            await bad.vm_info(0)
    finally:
        await bad.close()
    text = str(err.value)
    assert "refused the hub's credentials" in text
    assert "User couldn't be authenticated" in text
    assert "wrong-Pa55word" not in text + repr(err.value) + repr(bad) + caplog.text
    assert err.value.__cause__ is None and err.value.__suppress_context__


async def test_unknown_vm_is_not_found(client):
    with pytest.raises(NotFoundError, match="^VM 424242 does not exist"):
        await client.vm_info(424242)


async def test_cloud_down_is_unavailable_and_then_recovers(client, double):
    vm_id = await client.instantiate(name="a", template_id=SMALL)
    double.api_down(0.5)
    with pytest.raises(CloudUnavailableError) as err:
        await client.vm_info(vm_id)
    assert str(err.value) == f"cannot reach OpenNebula at {double.endpoint}: connection refused"
    assert err.value.transient
    await asyncio.sleep(0.7)
    assert (await client.vm_info(vm_id)).id == vm_id


async def test_http_503_is_unavailable(client, double):
    double.api_down(0.3, mode="503")
    with pytest.raises(CloudUnavailableError, match="HTTP 503"):
        await client.quota()
    await asyncio.sleep(0.4)
    await client.quota()


async def test_silent_server_times_out_without_blocking_the_event_loop():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    endpoint = "http://127.0.0.1:%d/RPC2" % listener.getsockname()[1]
    c = OpenNebulaClient(endpoint, SESSION, timeout=0.5)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        started = time.monotonic()
        with pytest.raises(CloudUnavailableError, match="did not answer"):
            await c.vm_info(1)
        assert time.monotonic() - started < 2
        assert ticks > 20  # the loop kept running while pyone waited
    finally:
        task.cancel()
        await c.close()
        listener.close()


async def test_wrong_endpoint_path_or_non_xmlrpc_server(double):
    c = OpenNebulaClient(double.endpoint.replace("/RPC2", "/nothing"), SESSION)
    try:
        with pytest.raises(OpenNebulaError, match="HTTP 404"):
            await c.vm_info(1)
    finally:
        await c.close()


async def test_secret_never_appears_anywhere(double, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    secret = "Very-Secret-Pw-123"
    double.users["hub"].password = secret
    c = OpenNebulaClient("http://hub:" + secret + "@" + double.endpoint[len("http://"):],
                         f"hub:{secret}")
    errors = []
    for action in (lambda: c.vm_info(999), lambda: c.terminate(999)):
        try:
            await action()
        except OpenNebulaError as exc:
            errors.append(exc)
    double.api_down(0.2)
    try:
        await c.quota()
    except OpenNebulaError as exc:
        errors.append(exc)
    await c.close()
    with pytest.raises(OpenNebulaError):
        await c.quota()
    texts = [str(e) + repr(e) + str(e.cloud_message) for e in errors]
    assert any("cannot reach" in t for t in texts)
    assert secret not in "".join(texts) + repr(c) + str(c) + caplog.text
    assert all(secret not in str(call.args) for call in double.calls)


# ------------------------------------------------------------------ failures

async def test_boot_failure_is_failed_with_a_readable_reason(client, double):
    double.fail_next_boot()
    vm_id = await client.instantiate(name="doomed", template_id=SMALL)
    info = await wait_phase(client, vm_id, VmPhase.FAILED)
    assert info.phase is VmPhase.FAILED
    assert info.lcm_state == LCM_STATE.BOOT_FAILURE == 36
    assert info.failure.startswith("the VM failed to boot (BOOT_FAILURE): ")
    assert "Error deploying virtual machine" in info.failure
    assert not double.host_of(vm_id).sshd_started
    next_vm = await client.instantiate(name="fine", template_id=SMALL)  # only the next one
    assert (await wait_phase(client, next_vm, VmPhase.RUNNING)).phase is VmPhase.RUNNING
    await client.terminate(vm_id)  # allowed in a failure state; DONE after the clean-up
    assert (await wait_phase(client, vm_id, VmPhase.DONE)).phase is VmPhase.DONE


def test_every_failure_state_is_failed_and_running_ones_are_running():
    for lcm in LCM_STATE:
        phase = phase_for(3, lcm)
        if lcm.name.endswith("FAILURE"):
            assert phase is VmPhase.FAILED, lcm.name
        else:
            assert phase is not VmPhase.FAILED, lcm.name
    assert phase_for(3, LCM_STATE.UNKNOWN) is VmPhase.UNKNOWN
    assert phase_for(3, LCM_STATE.SHUTDOWN) is VmPhase.STOPPING
    assert phase_for(3, LCM_STATE.EPILOG) is VmPhase.STOPPING
    assert phase_for(3, LCM_STATE.HOTPLUG_NIC) is VmPhase.RUNNING
    assert phase_for(1, 0) is VmPhase.PENDING and phase_for(2, 0) is VmPhase.HOLD
    assert phase_for(8, 0) is VmPhase.STOPPED and phase_for(6, 0) is VmPhase.DONE
    assert phase_for(11, 0) is VmPhase.FAILED and phase_for(99, 0) is VmPhase.UNKNOWN


# ------------------------------------------------------------------ no secrets in templates

async def test_secrets_are_refused_before_reaching_the_cloud(client, double):
    api_token = "c0ffee" * 6
    script = base64.b64encode(f"export JUPYTERHUB_API_TOKEN={api_token}\n".encode()).decode()
    for context in ({"PASSWORD": "x"}, {"JUPYTERHUB_API_TOKEN": api_token},
                    {"START_SCRIPT_BASE64": script}, {"TOKEN": api_token},
                    {"SSH_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"}):
        with pytest.raises(ValueError, match="secret|private key|API token"):
            await client.instantiate(name="x", template_id=SMALL, context=context)
    with pytest.raises(ValueError):
        await client.instantiate(name="x", template_id=SMALL, tags={"NEBULAHUB_TOKEN": "abc"})
    await client.instantiate(name="ok", template_id=SMALL,
                             context={"SSH_PUBLIC_KEY": PUBKEY, "TOKEN": "YES"})
    assert api_token not in double.all_templates_text()
    assert all(api_token not in str(call.args) for call in double.calls)


# ------------------------------------------------------------------ construction

async def test_from_files_reads_one_auth(double, tmp_path):
    auth = tmp_path / "one_auth"
    auth.write_text(f"  {SESSION}\n")
    c = OpenNebulaClient.from_files(double.endpoint, auth)
    try:
        assert (await c.quota()).vms.used == 0
        assert PASSWORD not in repr(c)
    finally:
        await c.close()
    auth.write_text("no-colon-here\n")
    with pytest.raises(ValueError) as err:
        OpenNebulaClient.from_files(double.endpoint, auth)
    assert "no-colon-here" not in str(err.value)


def test_endpoint_must_be_http():
    for bad in ("one.example.org:2633", "grpc://one:2634", ""):
        with pytest.raises(ValueError, match="http"):
            OpenNebulaClient(bad, SESSION)
    with pytest.raises(ValueError) as err:
        OpenNebulaClient("http://one:2633/RPC2", "no-colon-secret")
    assert "no-colon-secret" not in str(err.value)


# ------------------------------------------------------------------ real hosts (namespaces)

# own prefix and subnet: other modules' networks may exist in the same session
net = network_fixture(scope="module", prefix="onedbl", subnet="10.213.96.0/24")


@pytest.fixture
def net_double(net):
    d = OneDouble({"hub": PASSWORD}, network=net, step_seconds=0.05)
    d.start()
    yield d
    d.stop()


async def _login(host, key, ip, tunnel=None):
    return await asyncssh.connect(ip, username=host.user, client_keys=[key], agent_path=None,
                                  known_hosts=asyncssh.import_known_hosts(host.known_hosts_line),
                                  connect_timeout=5, tunnel=tunnel)


@pytest.mark.integration
async def test_vm_host_accepts_the_context_key_once_running(net_double):
    require_root()
    double = net_double
    key, pub = client_keypair()
    async with OpenNebulaClient(double.endpoint, SESSION) as c:
        vm_id = await c.instantiate(name="real", template_id=SMALL,
                                    context=login_context(pub), tags=tags_for())
        host = double.host_of(vm_id)
        assert not host.sshd_running  # no sshd before the VM runs
        info = await wait_phase(c, vm_id, VmPhase.RUNNING)
        assert info.ip == host.ip
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = await _login(host, key, info.ip)
                break
            except (OSError, asyncssh.Error):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        async with conn:
            result = await conn.run("hostname", check=True)
            assert result.stdout.strip() == f"vm{vm_id}"
        await c.terminate(vm_id)
        await wait_phase(c, vm_id, VmPhase.DONE)  # the guest lives on while it shuts down
        with pytest.raises((OSError, asyncssh.Error)):
            await _login(host, key, info.ip)
    assert not double.host_errors


@pytest.mark.integration
async def test_vm_behind_bastion_and_boot_failure_never_gets_sshd(net):
    require_root()
    key, pub = client_keypair()
    bastion = net.add_bastion("odgw", authorized_keys=[pub])
    double = OneDouble({"hub": PASSWORD}, network=net, bastion=bastion, step_seconds=0.05)
    double.start()
    try:
        async with OpenNebulaClient(double.endpoint, SESSION) as c:
            vm_id = await c.instantiate(name="inner", template_id=SMALL,
                                        context=login_context(pub))
            info = await wait_phase(c, vm_id, VmPhase.RUNNING)
            host = double.host_of(vm_id)
            async with await _login(bastion, key, bastion.ip) as jump:
                await asyncio.to_thread(host.wait_accepting, 10)  # the port, not the process
                async with await _login(host, key, info.ip, tunnel=jump) as conn:
                    assert (await conn.run("hostname")).stdout.strip() == f"vm{vm_id}"
            double.fail_next_boot()
            doomed = await c.instantiate(name="doomed", template_id=SMALL,
                                         context=login_context(pub))
            assert (await wait_phase(c, doomed, VmPhase.FAILED)).phase is VmPhase.FAILED
            await asyncio.sleep(0.2)
            assert not double.host_of(doomed).sshd_running
            await c.terminate(doomed)
            await c.terminate(vm_id)
    finally:
        double.stop()
        bastion.destroy()


# ------------------------------------------------------------------ oned 7.x details

async def test_the_global_quota_entry_is_read_whatever_order_oned_lists_them_in(client, double):
    double.set_quota("hub", vms=1, cpu=8, memory=8192, cluster_ids=[100])  # a cluster entry
    double.set_quota("hub", vms=3, cpu=2, memory=4096)                     # the global one
    quota = await client.quota()
    assert quota.vms.limit == 3 and quota.cpu.limit == 2
    assert (await client.quota(cluster_id=100)).vms.limit == 1
    assert (await client.quota(cluster_id=7)).vms.limit is None  # no entry: no cluster limit


@pytest.mark.parametrize("lcm, phase", [(16, VmPhase.UNKNOWN), (69, VmPhase.RUNNING),
                                        (70, VmPhase.STOPPED), (71, VmPhase.STOPPED),
                                        (23, VmPhase.STOPPING), (39, VmPhase.FAILED)])
async def test_every_lcm_state_of_oned_7_has_a_meaning(client, double, lcm, phase):
    vm_id = await client.instantiate(name="s", template_id=SMALL)
    double.set_vm_state(vm_id, 3, lcm)
    info = await client.vm_info(vm_id)
    assert info.phase is phase, (lcm, info)


@pytest.mark.parametrize("code, cls, transient, words", [
    (0x8000, "LockedError", True, "locked"),
    (0x4000, "AllocationError", False, "will not help"),
    (0x2000, "OpenNebulaError", False, "will not help"),
])
async def test_locked_allocate_and_internal_say_whether_trying_again_helps(client, double, code,
                                                                           cls, transient, words):
    import opennebula

    double.fail_next("one.template.instantiate", code, "Parse error: syntax error")
    with pytest.raises(getattr(opennebula, cls)) as e:
        await client.instantiate(name="x", template_id=SMALL, cpu=1)
    assert type(e.value).__name__ == cls and e.value.transient is transient
    assert words in str(e.value)


async def test_a_group_without_create_template_gets_a_sentence_naming_the_permission(client,
                                                                                     double):
    from opennebula import AuthorizationError

    double.deny_template_create("hub")
    with pytest.raises(AuthorizationError, match="CREATE permission on templates"):
        await client.instantiate(name="x", template_id=SMALL, cpu=1)


async def test_pending_vm_carries_the_schedulers_message_and_a_nic_without_ip_is_seen(client,
                                                                                      double):
    double.unschedulable("Cannot dispatch VM: No hosts enabled to run VMs")
    vm_id = await client.instantiate(name="p", template_id=SMALL)
    info = await wait_phase(client, vm_id, VmPhase.PENDING)
    deadline = time.monotonic() + 5
    while info.sched_message is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        info = await client.vm_info(vm_id)
    assert "No hosts enabled to run VMs" in info.sched_message
    double.unschedulable(None)
    double.next_nic_without_ip()
    bare = await client.instantiate(name="n", template_id=SMALL)
    info = await wait_phase(client, bare, VmPhase.RUNNING)
    assert info.ip is None and info.nic_without_ip

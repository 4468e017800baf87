"""The double answers like oned 7.3.80, seen through pyone: terminate refused or accepted by
state, the asynchronous way to DONE with quota freed only there, every state parsed, several
quota entries, a NIC without IP, an unschedulable VM, recover needing ADMIN, update's escaping,
injected error codes and the CREATE TEMPLATE refusal. (Guests on namespace hosts:
test_one_double_guest.py.)"""
import re
import time
import xmlrpc.client

import pyone
import pytest

from tests.one_double import (ACTIVE, ALLOCATE, BACKUP, BACKUP_POWEROFF, BOOT_FAILURE,
                              CLEANUP_DELETE, CLONING, CLONING_FAILURE, DONE, EPILOG,
                              EPILOG_FAILURE, HOLD, INTERNAL, LCM_STATE_NAMES, LOCKED, PENDING,
                              POWEROFF, PROLOG, PROLOG_FAILURE, RESTORE, RUNNING, SHUTDOWN,
                              STATE_NAMES, STOPPED, SUSPENDED, UNDEPLOYED, UNKNOWN, OneDouble)

CTIME = r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}"


@pytest.fixture
def double():
    d = OneDouble({"alice": "pw", "bob": "pw2", "oneadmin": "admin"}, step_seconds=0.03)
    d.start()
    yield d
    d.stop()


@pytest.fixture
def slow_double():
    """Steps of 10 s: a VM stays where a test puts it."""
    d = OneDouble({"alice": "pw", "oneadmin": "admin"}, step_seconds=10)
    d.start()
    yield d
    d.stop()


def one(double, session="alice:pw"):
    return pyone.OneServer(double.endpoint, session=session, protocol="xmlrpc")


def wait_for(server, vm_id, state, lcm=0, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vm = server.vm.info(vm_id)
        if (vm.STATE, vm.LCM_STATE) == (state, lcm):
            return vm
        time.sleep(0.005)
    raise AssertionError(f"VM {vm_id} never reached ({state}, {lcm}); it is "
                         f"({vm.STATE}, {vm.LCM_STATE})")


def quota_entries(server):
    entries = server.user.info(-1).VM_QUOTA.VM
    return entries if isinstance(entries, list) else [entries]


# ------------------------------------------------------------------ 1. terminate by state

def test_terminate_while_disks_are_copied_is_refused_with_onedss_words(double):
    alice, raw = one(double), xmlrpc.client.ServerProxy(double.endpoint)
    double.prolog_delay(30)
    vm_id = alice.template.instantiate(0, "slow-disks", False, "", False)
    wait_for(alice, vm_id, ACTIVE, PROLOG)
    expected = (f'[one.vm.action] Error performing action "terminate-hard": Could not '
                f"terminate VM {vm_id}, wrong state PROLOG.")
    with pytest.raises(pyone.OneActionException) as err:
        alice.vm.action("terminate-hard", vm_id)
    assert str(err.value) == expected
    assert raw.one.vm.action("alice:pw", "terminate-hard", vm_id) == [False, expected, 0x800,
                                                                      -1, 0]
    double.prolog_delay(0)  # applies to the VM already waiting
    double.boot_delay(30)
    wait_for(alice, vm_id, ACTIVE, 2)
    with pytest.raises(pyone.OneActionException, match="wrong state BOOT.$"):
        alice.vm.action("terminate", vm_id)


@pytest.mark.parametrize("state,lcm,after", [
    (PENDING, 0, (DONE, 0)), (HOLD, 0, (DONE, 0)), (CLONING, 0, (DONE, 0)),
    (CLONING_FAILURE, 0, (DONE, 0)),
    (POWEROFF, 0, (ACTIVE, EPILOG)), (SUSPENDED, 0, (ACTIVE, EPILOG)),
    (STOPPED, 0, (ACTIVE, EPILOG)), (UNDEPLOYED, 0, (ACTIVE, EPILOG)),
    (ACTIVE, RUNNING, (ACTIVE, SHUTDOWN)), (ACTIVE, UNKNOWN, (ACTIVE, SHUTDOWN)),
    (ACTIVE, BOOT_FAILURE, (ACTIVE, CLEANUP_DELETE)),
    (ACTIVE, PROLOG_FAILURE, (ACTIVE, CLEANUP_DELETE)),
    (ACTIVE, EPILOG_FAILURE, (ACTIVE, CLEANUP_DELETE)),
    (DONE, 0, (DONE, 0)),
])
def test_terminate_hard_is_accepted_where_oned_accepts_it(slow_double, state, lcm, after):
    alice = one(slow_double)
    vm_id = alice.template.instantiate(0, "vm", True, "", False)
    slow_double.set_vm_state(vm_id, state, lcm)
    assert alice.vm.action("terminate-hard", vm_id) == vm_id
    vm = alice.vm.info(vm_id)
    assert (vm.STATE, vm.LCM_STATE) == after


@pytest.mark.parametrize("action,lcm", [
    ("terminate-hard", PROLOG), ("terminate-hard", 2), ("terminate-hard", EPILOG),
    ("terminate", SHUTDOWN), ("terminate-hard", CLEANUP_DELETE), ("terminate-hard", 4),
    ("terminate-hard", 17), ("terminate-hard", BACKUP), ("terminate-hard", BACKUP_POWEROFF),
    ("terminate-hard", RESTORE), ("terminate", PROLOG),
])
def test_terminate_is_refused_in_other_active_states(slow_double, action, lcm):
    alice = one(slow_double)
    vm_id = alice.template.instantiate(0, "vm", True, "", False)
    slow_double.set_vm_state(vm_id, ACTIVE, lcm)
    with pytest.raises(pyone.OneActionException,
                       match=f'^\\[one.vm.action\\] Error performing action "{action}": Could '
                             f"not terminate VM {vm_id}, wrong state {LCM_STATE_NAMES[lcm]}.$"):
        alice.vm.action(action, vm_id)
    assert alice.vm.info(vm_id).LCM_STATE == lcm


def test_a_frozen_soft_shutdown_is_overridden_by_a_hard_one(double):
    alice = one(double)
    vm_id = alice.template.instantiate(0, "frozen", False, "", False)
    wait_for(alice, vm_id, ACTIVE, RUNNING)
    double.shutdown_delay(30)
    alice.vm.action("terminate", vm_id)
    assert alice.vm.info(vm_id).LCM_STATE == SHUTDOWN
    with pytest.raises(pyone.OneActionException, match="wrong state SHUTDOWN.$"):
        alice.vm.action("terminate", vm_id)
    alice.vm.action("terminate-hard", vm_id)  # DispatchManagerActions.cc 358-365
    double.shutdown_delay(0)
    wait_for(alice, vm_id, DONE)


def test_recover_delete_needs_admin_rights_the_owner_lacks(double):
    alice, admin = one(double), one(double, "oneadmin:admin")
    double.prolog_delay(30)
    vm_id = alice.template.instantiate(0, "stuck", False, "", False)
    wait_for(alice, vm_id, ACTIVE, PROLOG)
    assert alice.vm.info(vm_id).PERMISSIONS.OWNER_A == 0
    with pytest.raises(pyone.OneAuthorizationException) as err:
        alice.vm.recover(vm_id, 3)
    assert str(err.value) == (f"[one.vm.recover] User [2] : Not authorized to perform ADMIN "
                              f"VM [{vm_id}].")
    double.grant_admin("alice")
    assert alice.vm.recover(vm_id, 3) == vm_id
    assert alice.vm.info(vm_id).LCM_STATE == CLEANUP_DELETE
    wait_for(alice, vm_id, DONE)
    other = alice.template.instantiate(0, "held", True, "", False)
    assert admin.vm.recover(other, 3) == other and alice.vm.info(other).STATE == DONE
    with pytest.raises(pyone.OneActionException, match="Wrong recovery operation code"):
        alice.vm.recover(other, 9)


# ------------------------------------------------------------------ 2. asynchronous terminate

def test_terminate_walks_shutdown_epilog_done_and_frees_quota_only_at_done(double):
    alice = one(double)
    double.set_quota("alice", vms=1)
    vm_id = alice.template.instantiate(0, "one", False, "", False)
    wait_for(alice, vm_id, ACTIVE, RUNNING)
    time.sleep(0.05)
    host = double.host_of(vm_id)
    assert host.sshd_started
    double.shutdown_delay(0.3)
    alice.vm.action("terminate-hard", vm_id)
    seen, used = [], []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        vm = alice.vm.info(vm_id)
        if not seen or seen[-1] != (vm.STATE, vm.LCM_STATE):
            seen.append((vm.STATE, vm.LCM_STATE))
            used.append((quota_entries(alice)[0].VMS_USED, host.destroyed))
            if vm.STATE != DONE:
                with pytest.raises(pyone.OneAuthorizationException,
                                   match=r"limit of 1 reached for VMS quota in VM.$"):
                    alice.template.instantiate(0, "two", False, "", False)
        if vm.STATE == DONE:
            break
        time.sleep(0.005)
    assert seen == [(ACTIVE, SHUTDOWN), (ACTIVE, EPILOG), (DONE, 0)]
    # the guest lives on during SHUTDOWN and is gone from EPILOG; quota is held until DONE
    assert used == [("1", False), ("1", True), ("0", True)]
    assert vm.ETIME > 0
    assert alice.template.instantiate(0, "two", False, "", False) == vm_id + 1


def test_terminating_a_pending_vm_ends_it_at_once(double):
    alice = one(double)
    double.unschedulable()
    vm_id = alice.template.instantiate(0, "queued", False, "", False)
    alice.vm.action("terminate-hard", vm_id)
    assert alice.vm.info(vm_id).STATE == DONE and double.host_of(vm_id).destroyed
    assert alice.vm.action("terminate-hard", vm_id) == vm_id  # DONE: accepted, nothing happens


# ------------------------------------------------------------------ 3. every state

def test_pyone_parses_every_state_and_lcm_state_oned_has(slow_double):
    alice = one(slow_double)
    vm_id = alice.template.instantiate(0, "vm", True, "", False)
    pairs = [(s, 0) for s in STATE_NAMES if s not in (ACTIVE, DONE)]
    pairs += [(ACTIVE, lcm) for lcm in LCM_STATE_NAMES if lcm]
    for state, lcm in pairs:
        slow_double.set_vm_state(vm_id, state, lcm)
        vm = alice.vm.info(vm_id)
        assert (vm.STATE, vm.LCM_STATE) == (state, lcm)
        assert [v.LCM_STATE for v in alice.vmpool.info(-3, -1, -1, -1).VM] == [lcm]
    assert 7 not in STATE_NAMES and {69, 70, 71} <= set(LCM_STATE_NAMES)
    assert max(pyone.LCM_STATE) < 69  # pyone 7.3.80's enum stops before BACKUP


def test_stopped_guests_lose_sshd_and_get_it_back_when_running(slow_double):
    alice = one(slow_double)
    vm_id = alice.template.instantiate(0, "vm", True, "", False)
    host = slow_double.host_of(vm_id)
    slow_double.set_vm_state(vm_id, ACTIVE, RUNNING)
    time.sleep(0.05)
    assert host.sshd_started
    for state in (POWEROFF, SUSPENDED, STOPPED, UNDEPLOYED):
        slow_double.set_vm_state(vm_id, state)
        assert not host.sshd_started
        slow_double.set_vm_state(vm_id, ACTIVE, RUNNING)
        time.sleep(0.05)
        assert host.sshd_started
    used = quota_entries(alice)[0]
    slow_double.set_vm_state(vm_id, POWEROFF)  # RUNNING_* are released while powered off
    off = quota_entries(alice)[0]
    assert (used.RUNNING_VMS_USED, off.RUNNING_VMS_USED, off.VMS_USED) == ("1", "0", "1")


def test_set_vm_state_can_resume_the_life_cycle(double):
    alice = one(double)
    vm_id = alice.template.instantiate(0, "vm", True, "", False)
    double.set_vm_state(vm_id, PENDING, resume=True)
    wait_for(alice, vm_id, ACTIVE, RUNNING)


# ------------------------------------------------------------------ 4. quota entries

def test_user_info_lists_global_and_cluster_quota_entries_in_onedss_order(double):
    alice, bob = one(double), one(double, "bob:pw2")
    double.set_quota("alice", vms=3)
    double.set_quota("alice", vms=1, cluster_ids=[100])
    double.place_vms_in_cluster(100)
    first = alice.template.instantiate(0, "a", False, "", False)
    wait_for(alice, first, ACTIVE, RUNNING)
    second = alice.template.instantiate(0, "b", False, "", False)  # the global entry allows it
    time.sleep(0.2)
    vm = alice.vm.info(second)
    assert vm.STATE == PENDING  # ... the cluster entry refuses the deploy
    assert re.fullmatch(CTIME + r": \[deploy\] User \[0\] : user \[2\] limit of 1 reached for "
                        r"VMS quota in VM with ID: 100\.", vm.USER_TEMPLATE["ERROR"])
    glob, cluster = quota_entries(alice)
    assert glob.CLUSTER_IDS is None and (glob.VMS, glob.VMS_USED) == ("3", "2")
    assert cluster.CLUSTER_IDS == "100" and (cluster.VMS, cluster.VMS_USED) == ("1", "1")
    assert cluster.CPU == "-2" and cluster.RUNNING_VMS_USED == "1"
    alice.vm.action("terminate-hard", first)
    wait_for(alice, second, ACTIVE, RUNNING)  # room in the cluster once the first is DONE
    # bob's only quota is per cluster: the global entry is made by his first instantiate
    double.set_quota("bob", vms=2, cluster_ids="101,100")
    bob.template.instantiate(0, "c", True, "", False)
    cluster, glob = quota_entries(bob)
    assert (cluster.CLUSTER_IDS, glob.CLUSTER_IDS) == ("100,101", None)
    assert (glob.VMS, glob.VMS_USED, cluster.VMS_USED) == ("-1", "1", "0")


# ------------------------------------------------------------------ 6. no IP, not schedulable

def test_a_nic_on_an_ethernet_range_has_a_mac_and_no_ip(double):
    alice = one(double)
    double.next_nic_without_ip()
    vm_id = alice.template.instantiate(0, "ether", False, "", False)
    vm = alice.vm.info(vm_id)
    nic = vm.TEMPLATE["NIC"]
    assert "IP" not in nic and re.fullmatch(r"02:00(:[0-9a-f]{2}){4}", nic["MAC"])
    assert vm.TEMPLATE["CONTEXT"]["ETH0_IP"] is None  # pyone's reading of an empty CDATA
    assert not double.host_of(vm_id).network_configured
    other = alice.vm.info(alice.template.instantiate(0, "ip", False, "", False))
    assert other.TEMPLATE["NIC"]["IP"]  # only the next VM


def test_an_unschedulable_vm_stays_pending_with_a_sched_message(double):
    alice = one(double)
    double.unschedulable("Cannot dispatch VM: No hosts enabled to run VMs")
    vm_id = alice.template.instantiate(0, "waiting", False, "", False)
    time.sleep(0.2)
    vm = alice.vm.info(vm_id)
    assert vm.STATE == PENDING
    assert re.fullmatch(CTIME + ": Cannot dispatch VM: No hosts enabled to run VMs",
                        vm.USER_TEMPLATE["SCHED_MESSAGE"])
    short = alice.vmpool.info(-3, -1, -1, -1).VM[0]
    assert short.USER_TEMPLATE["SCHED_MESSAGE"] == vm.USER_TEMPLATE["SCHED_MESSAGE"]
    double.unschedulable(None)
    vm = wait_for(alice, vm_id, ACTIVE, RUNNING)
    assert "SCHED_MESSAGE" not in (vm.USER_TEMPLATE or {})


# ------------------------------------------------------------------ 7. update, codes, CREATE

def test_update_keeps_backslashes_and_unescapes_only_quotes(double):
    alice = one(double)
    vm_id = alice.template.instantiate(0, "tags", True, "", False)
    # what a client escaping \ as \\ and " as \" sends for a\b, say "hi", trailing\
    alice.vm.update(vm_id, 'T_BS = "a\\\\b"\nT_Q = "say \\"hi\\""\nT_END = "x\\\\"\n', 1)
    tags = alice.vm.info(vm_id).USER_TEMPLATE
    assert tags["T_BS"] == "a\\\\b"          # oned keeps both backslashes
    assert tags["T_Q"] == 'say "hi"'         # \" is the one escape oned removes
    assert tags["T_END"] == "x\\\\"
    alice.vm.update(vm_id, '<TEMPLATE><T_XML><![CDATA[a\\b "q"]]></T_XML></TEMPLATE>', 1)
    tags = alice.vm.info(vm_id).USER_TEMPLATE
    assert tags["T_XML"] == 'a\\b "q"' and tags["T_BS"] == "a\\\\b"  # XML: as sent; append
    # libxml2: an empty CDATA is a text child (kept, empty), an empty element is dropped
    alice.vm.update(vm_id, "<TEMPLATE><T_E><![CDATA[]]></T_E><T_NONE></T_NONE></TEMPLATE>", 1)
    tags = alice.vm.info(vm_id).USER_TEMPLATE
    assert "T_E" in tags and tags["T_E"] is None and "T_NONE" not in tags
    alice.vm.update(vm_id, 'ONLY = "this"', 0)
    assert alice.vm.info(vm_id).USER_TEMPLATE == {"ONLY": "this"}
    with pytest.raises(pyone.OneActionException, match="Parse error"):
        alice.vm.update(vm_id, 'BROKEN = [ A = "1"', 1)
    with pytest.raises(pyone.OneApiException, match="Wrong update type"):
        alice.vm.update(vm_id, 'A = "1"', 2)


def test_injected_codes_are_worded_like_oned(double):
    alice, raw = one(double), xmlrpc.client.ServerProxy(double.endpoint)
    vm_id = alice.template.instantiate(0, "vm", True, "", False)
    double.fail_next("one.vm.action", LOCKED)
    assert raw.one.vm.action("alice:pw", "terminate-hard", vm_id) == [
        False, f"[one.vm.action] The resource virtual machine is locked. [{vm_id}].", 0x8000,
        vm_id, 0]
    double.fail_next("one.vm.allocate", ALLOCATE, "Cannot get IP/MAC lease from virtual "
                                                  "network 0.")
    with pytest.raises(pyone.OneException) as err:
        alice.vm.allocate('CPU = "1"\nMEMORY = "128"', False)
    assert type(err.value) is pyone.OneException and str(err.value) == (
        "[one.vm.allocate] Error allocating a new virtual machine. Cannot get IP/MAC lease "
        "from virtual network 0.")
    double.fail_next("one.template.instantiate", INTERNAL, "Error parsing template", times=None)
    for _ in range(2):  # permanent until cleared
        with pytest.raises(pyone.OneInternalException,
                           match=r"^\[one.template.instantiate\] Error parsing template$"):
            alice.template.instantiate(0, "x", False, "", False)
    double.clear_failures()
    assert alice.template.instantiate(0, "x", True, "", False) > vm_id
    with pytest.raises(pyone.OneInternalException, match="Parse error"):
        alice.template.instantiate(0, "y", False, 'CONTEXT = [ A = "1"', False)


def test_a_user_without_create_template_cannot_instantiate_with_extra_attributes(double):
    alice = one(double)
    double.deny_template_create("alice")
    with pytest.raises(pyone.OneAuthorizationException) as err:
        alice.template.instantiate(0, "tagged", False, {"TEMPLATE": {"NEBULAHUB_X": "1"}}, False)
    assert str(err.value) == ("[one.template.instantiate] User [2] : Not authorized to perform "
                              "CREATE TEMPLATE.")
    assert alice.template.instantiate(0, "plain", False, "", False) == 0
    assert quota_entries(alice)[0].VMS_USED == "1"  # the refused one took nothing

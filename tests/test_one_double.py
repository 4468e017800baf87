"""The OpenNebula double itself: what pyone sees, its knobs, and its process mode."""
import os
import subprocess
import sys
import time
import xmlrpc.client

import pyone
import pytest

from tests.one_double import OneDouble, merge_template, parse_template, render_template


@pytest.fixture
def double():
    d = OneDouble({"alice": "pw", "bob": "pw2", "oneadmin": "admin"}, step_seconds=0.03)
    d.start()
    yield d
    d.stop()


def one(double, session="alice:pw"):
    return pyone.OneServer(double.endpoint, session=session)


def wait_lcm(server, vm_id, lcm, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vm = server.vm.info(vm_id)
        if vm.STATE == 3 and vm.LCM_STATE == lcm:
            return vm
        time.sleep(0.01)
    raise AssertionError(f"VM {vm_id} never reached LCM_STATE {lcm}")


def test_text_and_xml_templates_parse_the_same():
    text = '''CPU = "1"
    MEMORY = 512   # comment
    DISK = [ IMAGE_ID = "0", SIZE = 1024 ]
    DISK = [ IMAGE_ID = "1" ]
    NOTE = "say \\"hi\\""
    '''
    parsed = parse_template(text)
    assert parsed == {"CPU": "1", "MEMORY": "512", "NOTE": 'say "hi"',
                      "DISK": [{"IMAGE_ID": "0", "SIZE": "1024"}, {"IMAGE_ID": "1"}]}
    assert parse_template(render_template("TEMPLATE", parsed)) == parsed
    merged = merge_template({"CONTEXT": {"NETWORK": "YES"}, "CPU": "1"},
                            {"CONTEXT": {"SSH_PUBLIC_KEY": "k"}})
    assert merged == {"CPU": "1", "CONTEXT": {"SSH_PUBLIC_KEY": "k"}}  # oned replaces vectors


def test_ssh_never_and_boot_delay(double):
    server = one(double)
    double.ssh_never(True)
    double.boot_delay(0.3)
    vm_id = server.template.instantiate(0, "slow", False, "", False)
    wait_lcm(server, vm_id, 2)
    started = time.monotonic()
    wait_lcm(server, vm_id, 3)
    assert time.monotonic() - started >= 0.25
    time.sleep(0.1)
    assert not double.host_of(vm_id).sshd_started
    double.ssh_never(False)
    double.boot_delay(0)
    vm2 = server.template.instantiate(0, "fast", False, "", False)
    wait_lcm(server, vm2, 3)
    time.sleep(0.05)
    assert double.host_of(vm2).sshd_started


def test_pool_filters_by_owner_state_and_range(double):
    alice, bob, admin = one(double), one(double, "bob:pw2"), one(double, "oneadmin:admin")
    a1 = alice.template.instantiate(0, "a1", True, "", False)  # held: terminate ends it at once
    a2 = alice.template.instantiate(0, "a2", True, "", False)
    b1 = bob.template.instantiate(1, "b1", False, "", False)
    alice.vm.action("terminate-hard", a1)

    def ids(pool):
        return [vm.ID for vm in pool.VM]

    assert ids(alice.vmpool.infoextended(-3, -1, -1, -1)) == [a2]
    assert ids(alice.vmpool.infoextended(-3, -1, -1, -2)) == [a1, a2]
    assert ids(alice.vmpool.info(-3, -1, -1, 6)) == [a1]
    assert ids(alice.vmpool.info(-3, -1, -1, 2)) == [a2]
    assert ids(admin.vmpool.info(-2, -1, -1, -2)) == [a1, a2, b1]
    assert ids(admin.vmpool.info(-2, b1, b1, -2)) == [b1]
    assert ids(admin.vmpool.info(-2, 1, -2, -2)) == [a2, b1]  # offset 1, page size 2
    with pytest.raises(pyone.OneAuthorizationException):
        bob.vm.info(a2)
    assert alice.vm.info(a2).STATE == 2
    assert admin.user.info(2).NAME == "alice"
    with pytest.raises(pyone.OneAuthorizationException):
        bob.user.info(2)
    with pytest.raises(pyone.OneActionException, match="not supported"):
        alice.vm.action("poweroff", a2)


def test_answers_have_oneds_shape(double):
    raw = xmlrpc.client.ServerProxy(double.endpoint)
    assert raw.one.vm.info("alice:wrong", 0) == [
        False, "[one.vm.info] User couldn't be authenticated, aborting call.", 0x100, -1, 0]
    assert raw.one.vm.info("alice:pw", 7) == [
        False, "[one.vm.info] Error getting virtual machine [7].", 0x400, 7, 0]
    ok, xml, code = raw.one.template.info("alice:pw", 0)
    assert ok and code == 0 and xml.startswith("<VMTEMPLATE><ID>0</ID>")
    with pytest.raises(xmlrpc.client.Fault):
        raw.one.nothing.here("alice:pw")
    assert all(c.args[0] == "REDACTED" for c in double.calls)


def test_missing_cpu_or_memory_is_refused(double):
    # VirtualMachine.cc 960-995, 1311: refused when the VM is inserted, as ALLOCATE
    with pytest.raises(pyone.OneException, match=r"^\[one.vm.allocate\] Error allocating a new "
                       r"virtual machine. MEMORY attribute must be a positive integer value.$"):
        one(double).vm.allocate('CPU = "1"', False)


def test_subprocess_mode_with_xmlrpc_controls(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.one_double", "--port", "0", "--user", "alice:pw",
         "--step", "0.03"],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stdout=subprocess.PIPE, text=True)
    try:
        endpoint = proc.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:") and endpoint.endswith("/RPC2")
        control = xmlrpc.client.ServerProxy(endpoint)
        control.double.set_quota("alice", 1)
        control.double.fail_next_boot()
        server = pyone.OneServer(endpoint, session="alice:pw")
        vm_id = server.template.instantiate(0, "x", False, "", False)
        wait_lcm(server, vm_id, 36)
        with pytest.raises(pyone.OneAuthorizationException, match="limit of 1 reached for VMS"):
            server.template.instantiate(0, "y", False, "", False)
        assert "one.template.instantiate" in control.double.methods_called()
        assert control.double.api_down(0.5)
        time.sleep(0.2)
        with pytest.raises(Exception):
            server.vm.info(vm_id)
        time.sleep(0.6)
        assert server.vm.info(vm_id).LCM_STATE == 36
    finally:
        proc.terminate()
        proc.wait(timeout=10)

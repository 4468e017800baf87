"""The double's guests on real namespace hosts do with the CONTEXT what real images do: no
NETWORK="YES", no address (SSH to the VM's IP fails, as on a real cloud); with it, oned's
ETH0_* values and a configured eth0; one-context images log in USERNAME, cloud-init images keep
their default user. Needs root (network namespaces, sshd)."""
import asyncio
import socket
import time

import asyncssh
import pyone
import pytest

from tests.conftest import require_root
from tests.nethosts import client_keypair, network_fixture
from tests.one_double import ACTIVE, CLOUD_INIT, RUNNING, OneDouble

pytestmark = pytest.mark.integration

# own prefix and subnet: other modules' networks may exist in the same session
net = network_fixture(scope="module", prefix="odg", subnet="10.213.160.0/24")


@pytest.fixture
def double(net):
    require_root()
    d = OneDouble({"alice": "pw"}, network=net, step_seconds=0.05)
    d.start()
    yield d
    d.stop()
    assert not net.hosts, "the double left namespace hosts behind"


def running_vm(double, context: str) -> tuple[object, object]:
    """Allocate a small VM with ``context`` (template text) and wait until it is RUNNING."""
    server = pyone.OneServer(double.endpoint, session="alice:pw", protocol="xmlrpc")
    vm_id = server.vm.allocate(f'NAME = "g"\nCPU = "1"\nMEMORY = "128"\n'
                               f'NIC = [ NETWORK_ID = "0" ]\nCONTEXT = [ {context} ]', False)
    deadline = time.monotonic() + 10
    while (vm := server.vm.info(vm_id)).LCM_STATE != RUNNING or vm.STATE != ACTIVE:
        assert time.monotonic() < deadline, "VM never ran"
        time.sleep(0.01)
    host = double.host_of(vm_id)
    host.wait_accepting(10)
    return vm, host


def eth0_addresses(host) -> str:
    return host.run("ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout.decode().strip()


def login(host, key, user: str):
    async def go():
        async with asyncssh.connect(
                host.ip, username=user, client_keys=[key], agent_path=None,
                known_hosts=asyncssh.import_known_hosts(host.known_hosts_line),
                connect_timeout=3) as conn:
            return (await conn.run("hostname", check=True)).stdout.strip()
    return asyncio.run(go())


def test_without_network_yes_the_guest_has_no_address(double, net):
    _, pub = client_keypair()
    vm, host = running_vm(double, f'SSH_PUBLIC_KEY = "{pub}", USERNAME = "{net.ssh_user}"')
    assert vm.TEMPLATE["NIC"]["IP"] == host.ip        # oned leased the address...
    assert "ETH0_IP" not in vm.TEMPLATE["CONTEXT"]    # ... but did not hand it to the guest
    assert eth0_addresses(host) == ""
    with pytest.raises(OSError):
        socket.create_connection((host.ip, 22), timeout=1).close()


def test_with_network_yes_the_context_carries_onedss_eth0_values(double, net):
    key, pub = client_keypair()
    user = net.ssh_user
    vm, host = running_vm(double, f'NETWORK = "YES", SSH_PUBLIC_KEY = "{pub}", '
                                  f'USERNAME = "{user}"')
    ctx, nic = vm.TEMPLATE["CONTEXT"], vm.TEMPLATE["NIC"]
    assert (ctx["ETH0_IP"], ctx["ETH0_MAC"]) == (host.ip, nic["MAC"])
    assert (ctx["ETH0_MASK"], ctx["ETH0_NETWORK"], ctx["ETH0_GATEWAY"]) == (
        "255.255.255.0", "10.213.160.0", "10.213.160.1")
    assert ctx["ETH0_DNS"] is None and ctx["ETH0_IP6"] is None  # present, empty
    assert f"inet {host.ip}/24" in eth0_addresses(host)
    assert host.user == user
    assert login(host, key, user) == f"vm{vm.ID}"


def test_one_context_logs_in_username_and_cloud_init_keeps_its_default_user(double, net):
    key, pub = client_keypair()
    user = net.ssh_user
    _, root_only = running_vm(double, f'NETWORK = "YES", SSH_PUBLIC_KEY = "{pub}"')
    assert root_only.user == "root"   # one-context's USERNAME default: the key went to root
    with pytest.raises(asyncssh.PermissionDenied):
        login(root_only, key, user)
    double.image_kind(CLOUD_INIT)
    vm, cloudy = running_vm(double, f'NETWORK = "YES", SSH_PUBLIC_KEY = "{pub}", '
                                    'USERNAME = "someone-else"')
    assert cloudy.user == user        # USERNAME ignored: the image's default user
    assert login(cloudy, key, user) == f"vm{vm.ID}"

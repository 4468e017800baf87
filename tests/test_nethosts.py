"""The namespace-host test library itself: real sshd per namespace, bastions, cleanup."""
import asyncio
import ipaddress
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import asyncssh
import pytest

from tests.conftest import require_root
from tests.nethosts import (
    NetHostError,
    TestNetwork,
    blocking_dir,
    client_keypair,
    network_fixture,
)

pytestmark = pytest.mark.integration

# own prefix and subnet, so this module never collides with another network in the session
net = network_fixture(scope="module", prefix="nht", subnet="10.213.64.0/24")


def _netns_names():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _links():
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


@pytest.fixture(scope="module")
def client():
    """(asyncssh private key, public line, OpenSSH identity file)."""
    require_root()
    key, pub = client_keypair()
    import tempfile
    d = tempfile.mkdtemp(prefix="nethosts-client-")
    ident = Path(d) / "id_ed25519"
    key.write_private_key(str(ident))
    os.chmod(ident, 0o600)
    yield key, pub, str(ident)
    import shutil
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def hosts(net, client):
    key, pub, _ = client
    vm = net.add_host("vm1", authorized_keys=[pub])
    bastion = net.add_bastion("gw", authorized_keys=[pub])
    inner = net.add_host("in1", behind=bastion, authorized_keys=[pub])
    return vm, bastion, inner


def _opts(key, host):
    return dict(username=host.user, client_keys=[key], agent_path=None,
                known_hosts=asyncssh.import_known_hosts(host.known_hosts_line), connect_timeout=10)


async def test_key_login_pinned_and_hostname(hosts, client):
    vm, _, _ = hosts
    key, _, _ = client
    t0 = time.monotonic()
    async with asyncssh.connect(vm.ip, vm.port, **_opts(key, vm)) as conn:
        login = time.monotonic() - t0
        r = await conn.run("hostname; id -un; echo $HOME", check=True)
    assert r.stdout.split() == ["vm1", "nbvm", "/home/nbvm"]
    assert login < 5, login


async def test_unknown_client_key_refused(hosts):
    vm, _, _ = hosts
    other, _ = client_keypair()
    with pytest.raises(asyncssh.PermissionDenied):
        async with asyncssh.connect(vm.ip, **_opts(other, vm)):
            pass


def test_host_layout(net, hosts):
    vm, bastion, inner = hosts
    assert net.gateway_ip == "10.213.64.1"
    assert vm.ip.startswith("10.213.64.") and bastion.ip.startswith("10.213.64.")
    assert inner.ip.startswith("10.213.65.") and bastion.inner_ip == "10.213.65.1"
    assert vm.netns == "nht-vm1" and vm.netns in _netns_names()
    assert vm.host_key_line.startswith("ssh-ed25519 AAAA") and len(vm.host_key_line.split()) == 2
    assert vm.run("hostname").stdout.decode().strip() == "vm1"
    assert vm.run("id", "-un", user="nbvm").stdout.decode().strip() == "nbvm"
    assert vm.run("cat", input=b"hello").stdout == b"hello"
    assert vm.run("false", check=False).returncode == 1
    with pytest.raises(subprocess.CalledProcessError):
        vm.run("false")
    # loopback is up inside (Jupyter will listen there)
    assert vm.sshd_pid in vm.pids()
    assert vm.port_open(22, "127.0.0.1")
    # a host reaches the gateway (root namespace) and its neighbour on the main subnet
    assert "10.213.64.1" in vm.run("ip", "route").stdout.decode()
    assert vm.port_open(22, bastion.ip)


async def test_behind_bastion_only_via_tunnel(hosts, client):
    _, bastion, inner = hosts
    key, _, _ = client
    # the root namespace has no route: fails at once (unreachable guard route)
    t0 = time.monotonic()
    with pytest.raises(OSError):
        s = socket.create_connection((inner.ip, 22), timeout=3)
        s.close()
    assert time.monotonic() - t0 < 3.5
    with pytest.raises((OSError, asyncio.TimeoutError)):
        await asyncio.wait_for(asyncssh.connect(inner.ip, **_opts(key, inner)), 4)
    # through the bastion it works
    async with asyncssh.connect(bastion.ip, **_opts(key, bastion)) as jump:
        async with asyncssh.connect(inner.ip, tunnel=jump, **_opts(key, inner)) as conn:
            r = await conn.run("hostname", check=True)
    assert r.stdout.strip() == "in1"


def test_openssh_client_proxyjump(net, hosts, client, tmp_path):
    _, bastion, inner = hosts
    _, _, ident = client
    kh = tmp_path / "known_hosts"
    kh.write_text(net.known_hosts())
    cfg = tmp_path / "ssh_config"
    cfg.write_text(net.ssh_config(identity_file=ident, known_hosts_file=str(kh)))
    # explicit -J with StrictHostKeyChecking=yes
    r = subprocess.run(
        ["ssh", "-F", str(cfg), "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={kh}",
         "-J", f"{bastion.user}@{bastion.ip}", f"{inner.user}@{inner.ip}", "hostname"],
        capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "in1"
    # the generated config alone (alias + ProxyJump)
    r = subprocess.run(["ssh", "-F", str(cfg), "in1", "hostname"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "in1"


async def test_local_port_forward_to_host_loopback(hosts, client):
    """What the spawner does with Jupyter: forward to a port on the host's 127.0.0.1 (here sshd)."""
    vm, _, _ = hosts
    key, _, _ = client
    async with asyncssh.connect(vm.ip, **_opts(key, vm)) as conn:
        listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", 22)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.get_port())
        banner = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        listener.close()
    assert banner.startswith(b"SSH-2.0-OpenSSH")


async def test_regenerate_host_key_is_refused_when_pinned(net, client, tmp_path):
    key, pub, ident = client
    h = net.add_host("rekey", authorized_keys=[pub])
    try:
        old_line = h.known_hosts_line
        async with asyncssh.connect(h.ip, **_opts(key, h)):
            pass
        h.regenerate_host_key()
        assert h.known_hosts_line != old_line and h.sshd_running
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            async with asyncssh.connect(h.ip, username=h.user, client_keys=[key], agent_path=None,
                                        known_hosts=asyncssh.import_known_hosts(old_line)):
                pass
        kh = tmp_path / "kh"
        kh.write_text(old_line + "\n")
        r = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                            "-o", f"UserKnownHostsFile={kh}", "-o", "GlobalKnownHostsFile=/dev/null",
                            "-i", ident, "-o", "IdentitiesOnly=yes", f"{h.user}@{h.ip}", "true"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in r.stderr, r.stderr
        async with asyncssh.connect(h.ip, **_opts(key, h)):   # the new pin works
            pass
    finally:
        h.destroy()


async def test_authorized_keys_stop_start(net, client):
    key, pub, _ = client
    h = net.add_host("keys", start_sshd=False)
    try:
        assert not h.sshd_running and not h.port_open(22)
        h.start_sshd()
        with pytest.raises(asyncssh.PermissionDenied):      # empty authorized_keys
            async with asyncssh.connect(h.ip, **_opts(key, h)):
                pass
        h.set_authorized_keys([pub])
        async with asyncssh.connect(h.ip, **_opts(key, h)) as conn:
            h.stop_sshd()                                   # the session survives, as on a VM
            assert (await conn.run("echo alive", check=True)).stdout.strip() == "alive"
        assert not h.port_open(22)
        with pytest.raises(OSError):
            await asyncssh.connect(h.ip, **_opts(key, h))
        h.start_sshd()
        async with asyncssh.connect(h.ip, **_opts(key, h)):
            pass
        assert "Accepted publickey for nbvm" in h.sshd_log()
    finally:
        h.destroy()


async def test_destroy_leaves_nothing(net, client):
    key, pub, _ = client
    h = net.add_host("doomed", authorized_keys=[pub])
    veth, ns, d = h.veth, h.netns, h.dir
    # a login session and a daemonised process inside
    conn = await asyncssh.connect(h.ip, **_opts(key, h))
    await conn.run("nohup sleep 600 >/dev/null 2>&1 &", check=True)
    pids = h.pids()
    assert len(pids) >= 3, pids          # sshd, session sshd(s), sleep
    h.destroy()
    conn.abort()
    h.destroy()                          # idempotent
    assert ns not in _netns_names()
    assert veth not in _links()
    assert not d.exists()
    assert "doomed" not in net.hosts
    time.sleep(0.05)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] == "Z", f"pid {pid} survived"
        except FileNotFoundError:
            pass


def test_concurrent_add_and_address_reuse(net):
    results, errors = {}, []

    def add(i):
        try:
            results[i] = net.add_host(f"par{i}")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    try:
        assert not errors, errors
        ips = [h.ip for h in results.values()]
        assert len(set(ips)) == 6
        assert all(h.port_open(22, h.ip) for h in results.values())
        assert elapsed < 10, elapsed
        freed = results[0].ip
        results[0].destroy()
        again = net.add_host("par-again")
        assert again.ip == freed          # lowest free address is reused
        results[0] = again
    finally:
        for h in results.values():
            h.destroy()


def test_bastion_destroy_takes_inner_hosts(net):
    b = net.add_bastion("gw2")
    i = net.add_host("in2", behind=b)
    others = {h.inner_subnet for h in net.hosts.values() if h.is_bastion and h is not b}
    assert b.inner_subnet not in others and ipaddress.ip_address(i.ip) in b.inner_subnet
    b.destroy()
    assert i.netns not in _netns_names() and "in2" not in net.hosts and "gw2" not in net.hosts


def test_setup_cleans_up_after_crash():
    """A run killed mid-way (hosts left, sshd running) must not break the next setup()."""
    require_root()
    code = textwrap.dedent("""
        import os, sys
        sys.path.insert(0, %r)
        from tests.nethosts import TestNetwork
        net = TestNetwork(prefix="nhc", subnet="10.213.128.0/24").setup()
        hosts = [net.add_host("a"), net.add_bastion("b")]
        hosts.append(net.add_host("c", behind=hosts[1]))
        hosts[0].run("sh", "-c", "nohup sleep 600 >/dev/null 2>&1 &")
        print(" ".join(str(h.sshd_pid) for h in hosts), flush=True)
        os._exit(0)   # no teardown: like a killed test session
    """ % str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    sshd_pids = [int(p) for p in r.stdout.split()]
    assert {"nhc-a", "nhc-b", "nhc-c"} <= set(_netns_names())
    stray = [int(p) for p in subprocess.run(["ip", "netns", "pids", "nhc-a"], capture_output=True,
                                            text=True).stdout.split()]
    assert len(stray) == 2            # sshd + sleep

    net2 = TestNetwork(prefix="nhc", subnet="10.213.128.0/24")
    try:
        net2.setup()
        assert not [n for n in _netns_names() if n.startswith("nhc-")]
        assert not [l for l in _links() if l.startswith("nhcv")]
        assert any(x.startswith("netns nhc-") for x in net2.cleaned_leftovers), net2.cleaned_leftovers
        for pid in sshd_pids + stray:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    assert f.read().rsplit(")", 1)[1].split()[0] == "Z", f"pid {pid} survived"
            except FileNotFoundError:
                pass
        h = net2.add_host("a")                  # same name and address work again
        assert h.ip == "10.213.128.2" and h.port_open(22, h.ip)
    finally:
        net2.teardown()
    assert not [n for n in _netns_names() if n.startswith("nhc-")]
    assert "nhc-br0" not in _links()


def test_setup_idempotent_and_guard_route(net):
    assert net.setup() is net
    out = subprocess.run(["ip", "route", "show", "type", "unreachable"], capture_output=True,
                         text=True).stdout
    assert "10.213.0.0/16" in out


def test_state_dir_under_tmp_is_rejected(tmp_path):
    require_root()
    with pytest.raises(NetHostError, match="StrictModes"):
        TestNetwork(prefix="nhx", subnet="10.213.200.0/24", state_dir=tmp_path / "s").setup()


def test_blocking_dir_is_named(net):
    d = net.state_dir / "private"
    d.mkdir(mode=0o700)
    try:
        exe = d / "tool"
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
        assert blocking_dir(str(exe), net.ssh_user) == str(d)
        with pytest.raises(NetHostError, match=str(d)):
            net.check_user_can_run(str(exe))
        d.chmod(0o755)
        net.check_user_can_run(str(exe))
    finally:
        import shutil
        shutil.rmtree(d)


def test_ssh_user_can_run_the_vm_image_python(net, vm_python_env):
    """Spawner tests bootstrap Jupyter as the ssh user with the VM image's environment."""
    net.check_user_can_run(os.path.join(vm_python_env, "bin", "jupyterhub-singleuser"),
                           "--version")

"""TestNetwork: the private test network (bridge, guard route, hosts and bastions on it)."""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable

from tests.nethosts.access import VENV_PYTHON, check_state_dir, check_user_can_run, ensure_user
from tests.nethosts.cleanup import cleanup_leftovers
from tests.nethosts.cpushare import CpuShare
from tests.nethosts.host import SshHost
from tests.nethosts.netns import NetHostError, ip_batch, mac_for, run_ip

DEFAULT_USER = "nbvm"
DEFAULT_STATE_ROOT = Path("/run/nebulahub-nethosts")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class TestNetwork:
    """A private test network: root-namespace bridge with the gateway address, hosts attached to it."""

    __test__ = False  # not a pytest test class

    def __init__(self, prefix: str = "nh", subnet: str = "10.213.0.0/24",
                 state_dir: str | Path | None = None, *, ssh_user: str = DEFAULT_USER,
                 guard: str | None = None):
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"prefix {prefix!r}: 1-8 chars [a-z0-9], starting with a letter "
                             "(interface names must fit 15 chars)")
        self.prefix = prefix
        self.subnet = ipaddress.ip_network(subnet)
        if self.subnet.prefixlen != 24 or self.subnet.version != 4:
            raise ValueError("subnet must be an IPv4 /24")
        # the guard route: the /16 around the subnet unless given
        self.guard = ipaddress.ip_network(guard) if guard else self.subnet.supernet(new_prefix=16)
        if not self.subnet.subnet_of(self.guard):
            raise ValueError(f"subnet {self.subnet} is not inside guard {self.guard}")
        self.state_dir = Path(state_dir) if state_dir else DEFAULT_STATE_ROOT / prefix
        self.ssh_user = ssh_user
        self.gateway_ip = str(self.subnet.network_address + 1)
        self.bridge = f"{prefix}-br0"
        self.hosts: dict[str, SshHost] = {}
        self._lock = threading.RLock()
        self._is_setup = False
        self.setup_seconds: float | None = None
        # the hosts' CPU share, as if they had CPUs of their own (see cpushare.py)
        self.cpu = CpuShare(f"nebulahub-hosts-{prefix}",
                            float(os.environ.get("NEBULAHUB_TEST_HOST_CPU_SHARE", "0.2")))
        self.cleaned_leftovers: list[str] = []   # what setup() found and removed from a crashed run

    def __repr__(self) -> str:
        return f"<TestNetwork {self.prefix} {self.subnet} hosts={sorted(self.hosts)}>"

    def __enter__(self) -> "TestNetwork":
        return self.setup()

    def __exit__(self, *exc) -> None:
        self.teardown()

    # ---- setup / teardown --------------------------------------------------------------------
    def setup(self) -> "TestNetwork":
        with self._lock:
            if self._is_setup:
                return self
            t0 = time.monotonic()
            if os.geteuid() != 0:
                raise NetHostError("TestNetwork needs root (network namespaces, sshd)")
            self._add_guard_route()
            check_state_dir(self.state_dir)
            self._cleanup_leftovers()
            self.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.chmod(self.state_dir, 0o755)
            (self.state_dir / "hosts").mkdir(mode=0o755, exist_ok=True)
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
            ensure_user(self.ssh_user)
            ip_batch([
                f"link add name {self.bridge} address {mac_for(self.gateway_ip)} type bridge",
                f"addr add {self.gateway_ip}/24 dev {self.bridge}",
                f"link set {self.bridge} up",
            ])
            self._is_setup = True
            self.setup_seconds = time.monotonic() - t0
            return self

    def teardown(self) -> None:
        """Destroy every host and the bridge; the unreachable guard route stays."""
        with self._lock:
            hosts = list(self.hosts.values())
        # hosts behind bastions first
        for h in sorted(hosts, key=lambda h: h.behind is None):
            h.destroy()
        with self._lock:
            run_ip("link", "del", self.bridge, check=False)
            # anything else carrying our prefix (e.g. a host whose creation failed halfway)
            self._cleanup_leftovers(record=False)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.cpu.remove()
            self._is_setup = False

    def _add_guard_route(self) -> None:
        shown = run_ip("route", "show", "type", "unreachable", str(self.guard)).stdout
        if not shown.strip():
            res = run_ip("route", "add", "unreachable", str(self.guard), check=False)
            if res.returncode != 0 and "File exists" not in res.stderr:
                raise NetHostError(f"cannot add unreachable route {self.guard}: {res.stderr.strip()}")

    def check_user_can_run(self, executable: str = VENV_PYTHON, *args: str) -> None:
        """Raise NetHostError naming the blocking directory if the ssh user cannot run it.

        Default: the project's venv python (``runuser -u nbvm -- .venv/bin/python -c 1``).
        Nothing outside the state dir is ever chmod-ed.
        """
        check_user_can_run(self.ssh_user, executable, *args)

    def _cleanup_leftovers(self, record: bool = True) -> None:
        """Remove what an earlier run with the same prefix left behind (see cleanup.py)."""
        hosts = list(self.hosts.values())
        found = cleanup_leftovers(
            self.prefix, self.state_dir, self.bridge,
            live_hosts={h.name for h in hosts}, live_netns={h.netns for h in hosts},
            live_veths={h.veth for h in hosts}, bridge_live=self._is_setup)
        if record:
            self.cleaned_leftovers = found

    # ---- hosts -------------------------------------------------------------------------------
    def _alloc(self, behind: SshHost | None) -> int:
        used = {h.slot for h in self.hosts.values() if h.behind is behind}
        for slot in range(2, 255):
            if slot not in used:
                return slot
        raise NetHostError("subnet full")

    def _alloc_inner_subnet(self) -> ipaddress.IPv4Network:
        used = {h.inner_subnet for h in self.hosts.values() if h.inner_subnet is not None}
        for net in self.guard.subnets(new_prefix=24):
            if net.network_address > self.subnet.network_address and net not in used:
                return net
        raise NetHostError(f"no free /24 for a bastion in {self.guard}")

    def add_host(self, name: str, *, behind: SshHost | None = None,
                 authorized_keys: Iterable[str] = (), start_sshd: bool = True,
                 _bastion: bool = False) -> SshHost:
        if not _NAME_RE.match(name) or len(name) > 40:
            raise ValueError(f"host name {name!r}: [a-z0-9-], at most 40 chars")
        if behind is not None and not behind.is_bastion:
            raise ValueError(f"{behind.name} is not a bastion (use add_bastion)")
        with self._lock:
            if not self._is_setup:
                raise NetHostError("call setup() first")
            if name in self.hosts:
                raise ValueError(f"host {name} exists")
            if behind is not None and behind.name not in self.hosts:
                raise ValueError(f"bastion {behind.name} is gone")
            slot = self._alloc(behind)
            if behind is None:
                ip = str(self.subnet.network_address + slot)
                veth = f"{self.prefix}v{slot}"
            else:
                ip = str(behind.inner_subnet.network_address + slot)
                veth = None
            host = SshHost(self, name, ip, behind=behind, slot=slot, veth=veth, is_bastion=_bastion)
            if _bastion:
                host.inner_subnet = self._alloc_inner_subnet()
                host.inner_ip = str(host.inner_subnet.network_address + 1)
            self.hosts[name] = host   # reserves name, slot and inner subnet
        try:
            self._build(host, authorized_keys, start_sshd)
        except BaseException:
            self._destroy_host(host)
            raise
        return host

    def add_bastion(self, name: str, *, authorized_keys: Iterable[str] = (),
                    start_sshd: bool = True) -> SshHost:
        """A host on the main subnet owning an inner /24 (bridge br1 inside its namespace)."""
        return self.add_host(name, authorized_keys=authorized_keys, start_sshd=start_sshd,
                             _bastion=True)

    def _build(self, host: SshHost, authorized_keys: Iterable[str], start_sshd: bool) -> None:
        host.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(host.dir, 0o755)
        host._record()   # before the namespace exists: a crash from here on is cleaned up
        res = subprocess.run(["ip", "netns", "add", host.netns], capture_output=True, text=True)
        if res.returncode != 0:
            raise NetHostError(f"ip netns add {host.netns}: {res.stderr.strip()}")
        if host.behind is None:
            ip_batch([
                f"link add {host.veth} type veth peer name eth0 netns {host.netns}",
                f"link set {host.veth} master {self.bridge} up",
            ])
            gw = self.gateway_ip
        else:
            b = host.behind
            ip_batch([f"link add v{host.slot} netns {b.netns} type veth peer name eth0 netns {host.netns}"])
            ip_batch([f"link set v{host.slot} master br1 up"], netns=b.netns)
            gw = b.inner_ip
        lines = [
            "link set lo up",
            f"link set eth0 address {mac_for(host.ip)}",
            f"addr add {host.ip}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {gw}",
        ]
        if host.is_bastion:
            lines = lines[:3] + [
                f"link add name br1 address {mac_for(host.inner_ip)} type bridge",
                f"addr add {host.inner_ip}/24 dev br1",
                "link set br1 up",
            ] + lines[3:]
        ip_batch(lines, netns=host.netns)
        host._generate_host_key()
        host._write_config()
        host.set_authorized_keys(authorized_keys)
        if start_sshd:
            host.start_sshd()

    def _destroy_host(self, host: SshHost) -> None:
        with self._lock:
            dependents = [h for h in self.hosts.values() if h.behind is host]
        for d in dependents:
            d.destroy()
        host._destroy_now()
        with self._lock:
            if self.hosts.get(host.name) is host:
                del self.hosts[host.name]

    def get(self, name: str) -> SshHost:
        return self.hosts[name]

    def ssh_config(self, identity_file: str | None = None, known_hosts_file: str | None = None) -> str:
        """OpenSSH client config text (for ``ssh -F``): one ``Host`` block per host (alias = host
        name; hosts behind a bastion get ``ProxyJump <bastion>``), then ``Host *`` defaults that
        also apply to ``-J user@ip`` jumps. Host key checking stays strict."""
        out = []
        with self._lock:
            hosts = list(self.hosts.values())
        for h in hosts:
            out += [f"Host {h.name}", f"  HostName {h.ip}", f"  Port {h.port}", f"  User {h.user}"]
            if h.behind is not None:
                out.append(f"  ProxyJump {h.behind.name}")
        out += ["Host *", f"  User {self.ssh_user}", "  StrictHostKeyChecking yes", "  BatchMode yes",
                "  UpdateHostKeys no", "  GlobalKnownHostsFile /dev/null", "  ConnectTimeout 10"]
        if identity_file:
            out += [f"  IdentityFile {identity_file}", "  IdentitiesOnly yes"]
        if known_hosts_file:
            out.append(f"  UserKnownHostsFile {known_hosts_file}")
        return "\n".join(out) + "\n"

    def known_hosts(self) -> str:
        """known_hosts text for every current host (keyed by IP)."""
        with self._lock:
            return "".join(h.known_hosts_line + "\n" for h in self.hosts.values())

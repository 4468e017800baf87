"""Real "hosts" for integration tests: Linux network namespaces, each with its own OpenSSH sshd.

Usage (needs root)::

    from tests.nethosts import TestNetwork

    with TestNetwork(prefix="nh") as net:             # setup() on enter, teardown() on exit
        vm = net.add_host("vm1", authorized_keys=[pubkey_line])
        # vm.ip, vm.port, vm.user ("nbvm"), vm.host_key_line, vm.known_hosts_line
        bastion = net.add_bastion("gw", authorized_keys=[pubkey_line])
        inner = net.add_host("vm2", behind=bastion, authorized_keys=[pubkey_line])
        # inner.ip is on the bastion's inner subnet: reachable only through the bastion

Layout:

* root namespace: ``ip route add unreachable <guard>`` (the /16 around the subnet, added first and
  never removed) so no test packet can leave the machine; bridge ``<prefix>-br0`` holding the
  gateway address ``.1/24``.
* host ``NAME``: namespace ``<prefix>-NAME``, ``lo`` up, ``eth0`` (veth peer of ``<prefix>v<n>``
  on the bridge), default route via the gateway, sshd in its own UTS namespace (hostname NAME).
* bastion: a host that also owns bridge ``br1`` *inside* its namespace with ``.1`` of an inner
  /24 (the next free /24 after the main subnet); hosts ``behind=`` it hang off that bridge.
  The bastion does not forward IP, and the root namespace has no route to the inner subnet
  (it falls into the unreachable guard route), so only ProxyJump / tunnels reach them.

Every host has a directory ``<state_dir>/hosts/NAME`` with sshd_config, host key, authorized_keys
and sshd.log. ``state_dir`` defaults to ``/run/nebulahub-nethosts/<prefix>`` (not /tmp: sshd's
StrictModes rejects an AuthorizedKeysFile below a world-writable directory such as /tmp).
Each host records what it created in ``host.json`` there, so that ``setup()`` of a later run can
clean up after a run that was killed.
"""
from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

SSHD = "/usr/sbin/sshd"
DEFAULT_USER = "nbvm"
DEFAULT_STATE_ROOT = Path("/run/nebulahub-nethosts")
VENV_PYTHON = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


class NetHostError(RuntimeError):
    """Something in building the test network failed; the message says what."""


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip"] + (["-n", netns] if netns else []) + list(args)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise NetHostError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res


def _ip_batch(lines: Iterable[str], netns: str | None = None) -> None:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    text = "".join(line + "\n" for line in lines)
    res = subprocess.run(cmd, input=text, capture_output=True, text=True)
    if res.returncode != 0:
        raise NetHostError(f"{' '.join(cmd)} failed on\n{text}{res.stderr.strip()}")


def _netns_list() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _netns_pids(netns: str) -> list[int]:
    res = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    if res.returncode != 0:
        return []
    return [int(p) for p in res.stdout.split()]


def _kill_and_wait(pids: Sequence[int], timeout: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if _alive(p)]
        if left:
            time.sleep(0.01)


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def socket_in_netns(netns: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created inside network namespace ``netns`` (usable from any thread afterwards).

    setns() affects only the calling thread, so it is done in a throwaway thread.
    """
    box: dict = {}

    def make() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["sock"] = socket.socket(family, type)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["err"] = e

    t = threading.Thread(target=make, name=f"setns-{netns}")
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]
    return box["sock"]


def tcp_port_open(netns: str, ip: str, port: int, timeout: float = 0.2) -> bool:
    """True if ``ip:port`` accepts a TCP connection as seen from inside ``netns``."""
    s = socket_in_netns(netns)
    try:
        s.settimeout(timeout)
        s.connect((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _mac(ip: str) -> str:
    """A locally administered MAC derived from the IP: a reused address gets the same MAC, so
    stale ARP entries of the gateway/neighbours never point to a destroyed host's interface."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed)


def _listening(pid: int, port: int) -> bool:
    """Is there a TCP socket in LISTEN state on ``port`` in the network namespace of ``pid``?"""
    want = f":{port:04X}"
    try:
        with open(f"/proc/{pid}/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1].endswith(want) and fields[3] == "0A":
                    return True
    except (OSError, StopIteration):
        pass
    return False


def blocking_dir(path: str, user: str) -> str | None:
    """The first directory on ``path`` that ``user`` cannot traverse (None if all are fine).

    Mode bits only (no ACLs), which is what this machine uses.
    """
    import grp
    import pwd

    pw = pwd.getpwnam(user)
    groups = {g.gr_gid for g in grp.getgrall() if user in g.gr_mem} | {pw.pw_gid}
    p = Path(os.path.abspath(path))
    parts = [Path("/")] + [Path(*p.parts[: i + 1]) for i in range(1, len(p.parts))]
    for d in parts:
        try:
            st = os.stat(d)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            break
        if st.st_uid == pw.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return str(d)
        # follow symlinks: check the real target's path as well
        if d.is_symlink():
            inner = blocking_dir(os.path.realpath(d), user)
            if inner:
                return inner
    real = os.path.realpath(path)
    if real != os.path.abspath(path):
        return blocking_dir(real, user)
    return None


class SshHost:
    """One namespace "host" with its own sshd. Created by TestNetwork.add_host/add_bastion."""

    def __init__(self, network: "TestNetwork", name: str, ip: str, *, behind: "SshHost | None",
                 slot: int, veth: str | None, is_bastion: bool = False):
        self.network = network
        self.name = name
        self.ip = ip
        self.netns = f"{network.prefix}-{name}"
        self.port = 22
        self.user = network.ssh_user
        self.behind = behind
        self.is_bastion = is_bastion
        self.slot = slot                  # last octet of ip (per subnet)
        self.veth = veth                  # root-side veth (None for hosts behind a bastion)
        self.inner_subnet: ipaddress.IPv4Network | None = None   # bastions only
        self.inner_ip: str | None = None                          # bastions only: .1 of inner_subnet
        self.dir = network.state_dir / "hosts" / name
        self.config_path = self.dir / "sshd_config"
        self.host_key_path = self.dir / "ssh_host_ed25519_key"
        self.authorized_keys_path = self.dir / "authorized_keys"
        self.log_path = self.dir / "sshd.log"
        self.host_key_line = ""
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        self._destroyed = False

    def __repr__(self) -> str:
        return f"<SshHost {self.name} {self.user}@{self.ip}:{self.port} netns={self.netns}>"

    # ---- convenience -------------------------------------------------------------------------
    @property
    def known_hosts_line(self) -> str:
        """``"IP ssh-ed25519 AAAA..."`` for a known_hosts file or asyncssh.import_known_hosts."""
        host = self.ip if self.port == 22 else f"[{self.ip}]:{self.port}"
        return f"{host} {self.host_key_line}"

    @property
    def sshd_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def sshd_pid(self) -> int | None:
        return self._proc.pid if self.sshd_running else None

    def sshd_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def port_open(self, port: int, ip: str = "127.0.0.1", timeout: float = 0.2) -> bool:
        """Does ``ip:port`` accept TCP, seen from inside this host (default: its loopback)?"""
        return tcp_port_open(self.netns, ip, port, timeout)

    def socket(self) -> socket.socket:
        """A TCP socket living in this host's namespace (e.g. to connect to its 127.0.0.1)."""
        return socket_in_netns(self.netns)

    # ---- files -------------------------------------------------------------------------------
    def _write(self, path: Path, text: str, mode: int = 0o644) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def _write_config(self) -> None:
        self._write(self.config_path, "\n".join([
            f"HostKey {self.host_key_path}",
            "PidFile none",
            f"Port {self.port}",
            "ListenAddress 0.0.0.0",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            "StrictModes yes",
            "PermitRootLogin no",
            f"AllowUsers {self.user}",
            "AllowTcpForwarding yes",
            "AllowStreamLocalForwarding yes",
            "GatewayPorts no",
            "X11Forwarding no",
            "PrintMotd no",
            "UseDNS no",
            "LogLevel VERBOSE",
            "MaxStartups 100:30:200",
            "MaxSessions 50",
            "ClientAliveInterval 0",
            "Subsystem sftp internal-sftp",
            "",
        ]))

    def _record(self) -> None:
        """host.json: what a later setup() needs to clean up after a crash."""
        data = {
            "name": self.name, "netns": self.netns, "ip": self.ip, "veth": self.veth,
            "behind": self.behind.name if self.behind else None,
            "config": str(self.config_path),
            "pids": [self._proc.pid] if self._proc is not None else [],
        }
        self._write(self.dir / "host.json", json.dumps(data))

    def _generate_host_key(self) -> None:
        for p in (self.host_key_path, self.host_key_path.with_suffix(".pub")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(self.host_key_path)],
            check=True, capture_output=True,
        )
        pub = Path(str(self.host_key_path) + ".pub").read_text().split()
        self.host_key_line = f"{pub[0]} {pub[1]}"

    def set_authorized_keys(self, keys: Iterable[str]) -> None:
        """Replace this host's authorized_keys (atomic; root-owned 0644, fine for StrictModes)."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        lines = [k.strip() for k in keys if k and k.strip()]
        self._write(self.authorized_keys_path, "".join(line + "\n" for line in lines), 0o644)

    def authorized_keys(self) -> list[str]:
        return [l for l in self.authorized_keys_path.read_text().splitlines() if l.strip()]

    # ---- sshd --------------------------------------------------------------------------------
    def start_sshd(self, timeout: float = 10.0) -> None:
        """Start sshd (own hostname) and return once its port accepts TCP connections."""
        with self._lock:
            if self._destroyed:
                raise NetHostError(f"{self.name} was destroyed")
            if self.sshd_running:
                return
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
            log = open(self.log_path, "ab")
            start_offset = log.tell()
            try:
                # ip netns exec, unshare (no --fork) and sh all exec: Popen.pid is sshd's pid.
                self._proc = subprocess.Popen(
                    ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c",
                     'hostname "$1" && exec "$2" -D -e -f "$3"', "sh", self.name, SSHD,
                     str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                    start_new_session=True,
                )
            finally:
                log.close()
            self._record()
            deadline = time.monotonic() + timeout
            while True:
                if self._proc.poll() is not None:
                    rc = self._proc.returncode
                    self._proc = None
                    self._record()
                    raise NetHostError(
                        f"sshd of {self.name} exited with {rc} before listening; its stderr:\n"
                        + self._log_since(start_offset))
                # LISTEN state in sshd's own netns (a probing connect would leave preauth
                # children and log noise behind)
                if _listening(self._proc.pid, self.port):
                    return
                if time.monotonic() > deadline:
                    self._stop_locked()
                    raise NetHostError(
                        f"sshd of {self.name} did not accept TCP on port {self.port} within "
                        f"{timeout}s; its stderr:\n" + self._log_since(start_offset))
                time.sleep(0.005)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop_sshd(self) -> None:
        """Stop the listening sshd (established sessions live on, as on a real machine)."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None
        if not self._destroyed:
            self._record()

    def restart_sshd(self) -> None:
        with self._lock:
            self._stop_locked()
            self.start_sshd()

    def regenerate_host_key(self) -> None:
        """New ed25519 host key (host_key_line updated); sshd restarted if it was running."""
        with self._lock:
            running = self.sshd_running
            self._stop_locked()
            self._generate_host_key()
            if running:
                self.start_sshd()

    # ---- processes ---------------------------------------------------------------------------
    def run(self, *cmd: str, user: str | None = None, check: bool = True, input: bytes | None = None,
            timeout: float | None = 60, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside this host (own hostname), as root or as ``user`` (runuser).

        Output is captured as bytes (``.stdout``/``.stderr``). Runs in the user's home if given.
        """
        if not cmd:
            raise ValueError("run() needs a command")
        inner = list(cmd)
        cwd = "/"
        if user is not None:
            import pwd
            inner = ["runuser", "-u", user, "--"] + inner
            cwd = pwd.getpwnam(user).pw_dir
        full = ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', self.name] + inner
        res = subprocess.run(full, input=input, capture_output=True, timeout=timeout, cwd=cwd, env=env)
        if check and res.returncode != 0:
            raise subprocess.CalledProcessError(res.returncode, list(cmd), res.stdout, res.stderr)
        return res

    def pids(self) -> list[int]:
        """PIDs of live processes inside this host's network namespace."""
        return [p for p in _netns_pids(self.netns) if _alive(p)]

    def kill_all(self) -> None:
        """SIGKILL every process in the namespace (sshd included) and reap our own sshd."""
        with self._lock:
            self._kill_all_locked()

    def _kill_all_locked(self) -> None:
        for _ in range(20):
            pids = self.pids()
            if self._proc is not None and self._proc.poll() is None:
                pids.append(self._proc.pid)
            if not pids:
                break
            _kill_and_wait(sorted(set(pids)))
            if self._proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(5)
        self._proc = None

    def destroy(self) -> None:
        """Kill everything inside, delete veth + namespace + per-host files. Idempotent."""
        self.network._destroy_host(self)

    def _destroy_now(self) -> None:
        with self._lock:
            if self._destroyed:
                return
            self._destroyed = True
            self._kill_all_locked()
            if self.veth:
                _ip("link", "del", self.veth, check=False)
            elif self.behind is not None:
                _ip("link", "del", f"v{self.slot}", netns=self.behind.netns, check=False)
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            shutil.rmtree(self.dir, ignore_errors=True)


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
            self._check_state_dir()
            self._cleanup_leftovers()
            self.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.chmod(self.state_dir, 0o755)
            (self.state_dir / "hosts").mkdir(mode=0o755, exist_ok=True)
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
            self._ensure_user()
            _ip_batch([
                f"link add name {self.bridge} address {_mac(self.gateway_ip)} type bridge",
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
            _ip("link", "del", self.bridge, check=False)
            # anything else carrying our prefix (e.g. a host whose creation failed halfway)
            self._cleanup_leftovers(record=False)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self._is_setup = False

    def _add_guard_route(self) -> None:
        shown = _ip("route", "show", "type", "unreachable", str(self.guard)).stdout
        if not shown.strip():
            res = _ip("route", "add", "unreachable", str(self.guard), check=False)
            if res.returncode != 0 and "File exists" not in res.stderr:
                raise NetHostError(f"cannot add unreachable route {self.guard}: {res.stderr.strip()}")

    def _check_state_dir(self) -> None:
        """StrictModes: every dir above the per-host files must be root-owned, not g/o-writable,
        and traversable by the ssh user (sshd reads authorized_keys as that user)."""
        p = Path(os.path.abspath(self.state_dir))
        for d in [p, *p.parents]:
            if not d.exists():
                continue
            st = os.stat(d)
            if st.st_uid != 0 or st.st_mode & 0o022 or not st.st_mode & 0o001:
                raise NetHostError(
                    f"state_dir {self.state_dir}: {d} is {stat.filemode(st.st_mode)} uid {st.st_uid}; "
                    "sshd StrictModes needs every parent root-owned, not group/world-writable, and "
                    "o+x so the ssh user can read authorized_keys (the default /run/nebulahub-nethosts "
                    "works; /tmp does not)")

    def _ensure_user(self) -> None:
        import pwd
        try:
            pw = pwd.getpwnam(self.ssh_user)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", self.ssh_user],
                           check=True, capture_output=True)
            pw = pwd.getpwnam(self.ssh_user)
        pwhash = "!"
        with open("/etc/shadow") as f:
            for line in f:
                fields = line.split(":")
                if fields[0] == self.ssh_user and len(fields) > 1:
                    pwhash = fields[1]
        if pwhash.startswith("!") or pwhash == "":
            subprocess.run(["usermod", "-p", "*", self.ssh_user], check=True, capture_output=True)
        home = Path(pw.pw_dir)
        if not home.is_dir():
            home.mkdir(mode=0o755, parents=True)
            os.chown(home, pw.pw_uid, pw.pw_gid)
        bad = blocking_dir(str(home), self.ssh_user)
        if bad:
            raise NetHostError(f"user {self.ssh_user} cannot reach its home {home}: {bad} blocks it")

    def check_user_can_run(self, executable: str = VENV_PYTHON, *args: str) -> None:
        """Raise NetHostError naming the blocking directory if the ssh user cannot run it.

        Default: the project's venv python (``runuser -u nbvm -- .venv/bin/python -c 1``).
        Nothing outside the state dir is ever chmod-ed.
        """
        args = args or (("-c", "1") if "python" in os.path.basename(executable) else ("--version",))
        res = subprocess.run(["runuser", "-u", self.ssh_user, "--", executable, *args],
                             capture_output=True, text=True, cwd="/")
        if res.returncode == 0:
            return
        bad = blocking_dir(executable, self.ssh_user)
        real = os.path.realpath(executable)
        where = f" (resolves to {real})" if real != executable else ""
        if bad:
            raise NetHostError(
                f"user {self.ssh_user} cannot run {executable}{where}: directory {bad} is not "
                f"traversable by it (mode {stat.filemode(os.stat(bad).st_mode)}). Fix the machine "
                f"(e.g. chmod o+x {bad}) or use an interpreter outside it.")
        raise NetHostError(f"user {self.ssh_user} cannot run {executable}{where}: "
                           f"rc {res.returncode}: {res.stderr.strip()}")

    def _cleanup_leftovers(self, record: bool = True) -> None:
        """Remove what an earlier run with the same prefix left behind.

        Kills only PIDs recorded in state_dir (after checking they still are our sshd) and
        processes inside namespaces named ``<prefix>-*`` (only we put processes there).
        """
        found: list[str] = []
        hosts_dir = self.state_dir / "hosts"
        if hosts_dir.is_dir():
            for hj in hosts_dir.glob("*/host.json"):
                try:
                    data = json.loads(hj.read_text())
                except (OSError, ValueError):
                    continue
                for pid in data.get("pids", []):
                    if _alive(pid) and data.get("config") and data["config"] in _cmdline(pid):
                        _kill_and_wait([pid])
                        found.append(f"pid {pid}")
        ours = re.compile(rf"^{re.escape(self.prefix)}-[a-z0-9][a-z0-9-]*$")
        for ns in _netns_list():
            if ours.match(ns) and not (ns in {h.netns for h in self.hosts.values()}):
                for _ in range(10):
                    pids = [p for p in _netns_pids(ns) if _alive(p)]
                    if not pids:
                        break
                    _kill_and_wait(pids)
                    found.append(f"{len(pids)} process(es) in {ns}")
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
                found.append(f"netns {ns}")
        veth = re.compile(rf"^{re.escape(self.prefix)}v\d+$")
        links = _ip("-o", "link", "show", check=False).stdout
        for m in re.finditer(r"^\d+:\s+([^:@\s]+)", links, re.M):
            name = m.group(1)
            if (veth.match(name) and name not in {h.veth for h in self.hosts.values()}) or \
                    (name == self.bridge and not self._is_setup):
                _ip("link", "del", name, check=False)
                found.append(f"link {name}")
        if hosts_dir.is_dir():
            for d in hosts_dir.iterdir():
                if d.name not in self.hosts:
                    shutil.rmtree(d, ignore_errors=True)
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
            _ip_batch([
                f"link add {host.veth} type veth peer name eth0 netns {host.netns}",
                f"link set {host.veth} master {self.bridge} up",
            ])
            gw = self.gateway_ip
        else:
            b = host.behind
            _ip_batch([f"link add v{host.slot} netns {b.netns} type veth peer name eth0 netns {host.netns}"])
            _ip_batch([f"link set v{host.slot} master br1 up"], netns=b.netns)
            gw = b.inner_ip
        lines = [
            "link set lo up",
            f"link set eth0 address {_mac(host.ip)}",
            f"addr add {host.ip}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {gw}",
        ]
        if host.is_bastion:
            lines = lines[:3] + [
                f"link add name br1 address {_mac(host.inner_ip)} type bridge",
                f"addr add {host.inner_ip}/24 dev br1",
                "link set br1 up",
            ] + lines[3:]
        _ip_batch(lines, netns=host.netns)
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


# ---- pytest helpers ---------------------------------------------------------------------------
@contextlib.contextmanager
def running_network(**kwargs):
    """Context manager: a set-up TestNetwork, torn down afterwards."""
    net = TestNetwork(**kwargs)
    try:
        yield net.setup()
    finally:
        net.teardown()




def network_fixture(scope: str = "session", **kwargs):
    """Make a pytest fixture yielding a set-up TestNetwork (skips without root, fails under CI).

    In a conftest.py or test module::

        from tests.nethosts import network_fixture
        nethosts = network_fixture(scope="session")          # prefix "nh", 10.213.0.0/24

    Use a distinct ``prefix``/``subnet`` per fixture if several networks exist at once.
    """
    import pytest

    @pytest.fixture(scope=scope)
    def _fixture():
        from tests.conftest import require_root
        require_root()
        with running_network(**kwargs) as net:
            yield net

    return _fixture


def client_keypair(comment: str = "nethosts-test"):
    """(asyncssh private key, OpenSSH public key line) — a fresh ed25519 client key."""
    import asyncssh
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    return key, key.export_public_key().decode().strip()

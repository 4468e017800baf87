"""SshHost: one namespace "host" with its own sshd, as made by TestNetwork.add_host/add_bastion."""
from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from tests.nethosts import sshd
from tests.nethosts.netns import (NetHostError, alive, kill_and_wait, listening, netns_pids,
                                  run_ip, socket_in_netns, tcp_port_open)

if TYPE_CHECKING:
    from tests.nethosts.network import TestNetwork


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
        self.extra_users: list[str] = []   # accounts besides the ssh user that may log in
        self.mounts: list[tuple[str, str]] = []   # bind mounts in sshd's own mount namespace
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

    def wait_accepting(self, timeout: float = 10.0) -> None:
        """Wait until sshd's port accepts connections (not just until its process exists: a VM's
        sshd is started by the double in another thread and listens a moment later)."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self._proc
            if proc is not None and proc.poll() is None and listening(proc.pid, self.port):
                return
            if time.monotonic() > deadline:
                raise NetHostError(f"sshd of {self.name} did not accept connections on port "
                                   f"{self.port} within {timeout}s")
            time.sleep(0.01)

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
        sshd.write_atomic(path, text, mode)

    def _write_config(self) -> None:
        self._write(self.config_path, sshd.config_text(
            host_key_path=self.host_key_path, port=self.port,
            authorized_keys_path=self.authorized_keys_path, user=self.user,
            extra_users=self.extra_users))

    def allow_login(self, *users: str) -> None:
        """Let these accounts (of the shared /etc/passwd) log in too; sshd restarted if running.
        The host's authorized_keys file serves every account."""
        with self._lock:
            self.extra_users = list(dict.fromkeys([*self.extra_users, *users]))
            self._write_config()
            if self.sshd_running:
                self._stop_locked()
                self.start_sshd()

    def set_mounts(self, mounts: Iterable[tuple[str, str]]) -> None:
        """Bind mounts ``(source, target)`` (absolute paths; ``target`` must exist) made in a
        mount namespace of this host's own, which sshd and all it starts live in: another host
        (and the machine itself) keeps seeing what is really at ``target``. Applied when sshd
        starts; restarted now if it is running. Destroying the host (or stopping sshd and
        everything started over SSH) leaves no mount behind. ``[]``: no namespace of its own."""
        mounts = [(str(source), str(target)) for source, target in mounts]
        for source, target in mounts:
            if not (source.startswith("/") and target.startswith("/")):
                raise ValueError(f"mount {source} -> {target}: paths must be absolute")
        with self._lock:
            self.mounts = mounts
            if self.sshd_running:
                self._stop_locked()
                self.start_sshd()

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
        self.host_key_line = sshd.generate_host_key(self.host_key_path)

    def set_authorized_keys(self, keys: Iterable[str]) -> None:
        """Replace this host's authorized_keys (atomic; root-owned 0644, fine for StrictModes)."""
        self._write(self.authorized_keys_path, sshd.authorized_keys_text(keys), 0o644)

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
            log = open(self.log_path, "ab")
            start_offset = log.tell()
            try:
                self._proc = sshd.spawn(self.netns, self.name, self.config_path, log,
                                        self.mounts)
                self.network.cpu.add(self._proc.pid)
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
                        + sshd.log_since(self.log_path, start_offset))
                # LISTEN state in sshd's own netns (a probing connect would leave preauth
                # children and log noise behind)
                if listening(self._proc.pid, self.port):
                    return
                if time.monotonic() > deadline:
                    self._stop_locked()
                    raise NetHostError(
                        f"sshd of {self.name} did not accept TCP on port {self.port} within "
                        f"{timeout}s; its stderr:\n" + sshd.log_since(self.log_path, start_offset))
                time.sleep(0.005)

    def stop_sshd(self) -> None:
        """Stop the listening sshd (established sessions live on, as on a real machine)."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._proc is None:
            return
        sshd.stop(self._proc)
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
        With :meth:`set_mounts` and sshd running, ``cmd`` runs in sshd's mount namespace, seeing
        what a login sees.
        """
        if not cmd:
            raise ValueError("run() needs a command")
        inner = list(cmd)
        cwd = "/"
        if user is not None:
            import pwd
            inner = ["runuser", "-u", user, "--"] + inner
            cwd = pwd.getpwnam(user).pw_dir
        pid = self.sshd_pid if self.mounts else None
        if pid is not None:  # sshd's namespaces: network, hostname and mounts
            full = ["nsenter", "--target", str(pid), "--net", "--uts", "--mount",
                    f"--wdns={cwd}"] + inner
        else:
            full = ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c",
                    'hostname "$0" && exec "$@"', self.name] + inner
        res = subprocess.run(full, input=input, capture_output=True, timeout=timeout, cwd=cwd, env=env)
        if check and res.returncode != 0:
            raise subprocess.CalledProcessError(res.returncode, list(cmd), res.stdout, res.stderr)
        return res

    def pids(self) -> list[int]:
        """PIDs of live processes inside this host's network namespace."""
        return [p for p in netns_pids(self.netns) if alive(p)]

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
            kill_and_wait(sorted(set(pids)))
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
                run_ip("link", "del", self.veth, check=False)
            elif self.behind is not None:
                run_ip("link", "del", f"v{self.slot}", netns=self.behind.netns, check=False)
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            shutil.rmtree(self.dir, ignore_errors=True)

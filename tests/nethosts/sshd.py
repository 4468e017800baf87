"""A host's OpenSSH sshd: its files (config, host key, authorized_keys) and its process."""
from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterable

SSHD = "/usr/sbin/sshd"


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def config_text(*, host_key_path: Path, port: int, authorized_keys_path: Path, user: str,
                extra_users=()) -> str:
    """sshd_config: key-only login for ``user`` (and ``extra_users``), forwarding allowed,
    verbose log on stderr."""
    return "\n".join([
        f"HostKey {host_key_path}",
        "PidFile none",
        f"Port {port}",
        "ListenAddress 0.0.0.0",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        f"AuthorizedKeysFile {authorized_keys_path}",
        "StrictModes yes",
        "PermitRootLogin no",
        f"AllowUsers {' '.join([user, *extra_users])}",
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
    ])


def generate_host_key(path: Path) -> str:
    """A fresh ed25519 host key at ``path``; returns its ``"ssh-ed25519 AAAA..."`` public part."""
    for p in (path, path.with_suffix(".pub")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True, capture_output=True,
    )
    pub = Path(str(path) + ".pub").read_text().split()
    return f"{pub[0]} {pub[1]}"


def authorized_keys_text(keys) -> str:
    """authorized_keys content for one key line or an iterable of them (blank ones dropped)."""
    keys = [keys] if isinstance(keys, str) else list(keys)
    lines = [k.strip() for k in keys if k and k.strip()]
    return "".join(line + "\n" for line in lines)


# A real VM has CPUs of its own; these hosts share the hub's. Everything started over SSH inherits
# sshd's niceness, so what runs "on a VM" yields to the hub instead of starving it.
HOST_NICENESS = 10


def spawn(netns: str, hostname: str, config_path: Path, log,
          mounts: Iterable[tuple[str, str]] = ()) -> subprocess.Popen:
    """Start sshd in ``netns`` with its own UTS namespace (hostname), logging to file ``log``.

    ``mounts`` (``(source, target)`` pairs) are bind-mounted before sshd starts, in a mount
    namespace of sshd's own (``unshare --mount --propagation private``): sshd and everything
    started over SSH see them, nothing else does, and they vanish with the namespace's last
    process. Without mounts sshd stays in the mount namespace ``ip netns exec`` gives it.

    ip netns exec, nice, unshare (no --fork) and sh all exec: Popen.pid is sshd's pid.
    """
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    mounts = [(str(source), str(target)) for source, target in mounts]
    unshare = ["unshare", "--uts"]
    if mounts:
        unshare += ["--mount", "--propagation", "private"]
    # $1 hostname, $2 sshd, $3 config, then source/target pairs; a failed mount ends the start
    script = ('hostname "$1" && name="$2" && config="$3" && shift 3 && '
              'while [ $# -gt 0 ]; do mount --bind "$1" "$2" || exit 1; shift 2; done && '
              'exec "$name" -D -e -f "$config"')
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, "nice", "-n", str(HOST_NICENESS), *unshare,
         "sh", "-c", script, "sh", hostname, SSHD, str(config_path),
         *[path for pair in mounts for path in pair]],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (SIGKILL after 5 s) and reap."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def log_since(log_path: Path, offset: int) -> str:
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""

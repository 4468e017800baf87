"""SSH connections to hosts, optionally through a ProxyJump bastion, with pinned host keys.

Host keys are trust-on-first-use: the first contact records the key (in the pins the caller
keeps: the machine record, and the trust store for machines that outlive one use), every later
connection is strict. A changed key is refused with a clear message; nothing
here ever disables checking after the first contact. An admin may pin keys up front with a
known_hosts file, which is then strict from the very first connection.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import asyncssh

from .errors import HostKeyChanged, HostUnreachable

log = logging.getLogger(__name__)


@dataclass
class SshTarget:
    """One SSH hop: where to connect and as whom."""

    host: str
    username: str
    port: int = 22
    client_keys: list = field(default_factory=list, repr=False)
    jump: "SshTarget | None" = None
    # where its host key is kept beyond one server: a HostKeyStore scope, or None (state only)
    trust_scope: str | None = None

    def hops(self) -> list["SshTarget"]:
        """The hops in connection order: outermost jump host first, this target last."""
        out, t = [], self
        while t is not None:
            out.insert(0, t)
            t = t.jump
        return out

    @property
    def key_id(self) -> str:
        return f"{self.host}:{self.port}"


def public_key_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


def _known_hosts_for(target: SshTarget, pinned: dict[str, str], known_hosts_file: str | None):
    line = pinned.get(target.key_id)
    if line:
        return ([asyncssh.import_public_key(line)], [], [])
    if known_hosts_file:
        return known_hosts_file
    return None  # first contact: accepted once, then recorded and pinned


async def _connect_hop(target, pinned, known_hosts_file, tunnel, timeout):
    known = _known_hosts_for(target, pinned, known_hosts_file)
    try:
        conn = await asyncssh.connect(
            target.host, port=target.port, username=target.username,
            client_keys=target.client_keys, known_hosts=known, tunnel=tunnel,
            connect_timeout=timeout, login_timeout=timeout, keepalive_interval=15,
            keepalive_count_max=4, agent_path=None, config=[], preferred_auth="publickey",
        )
    except asyncssh.HostKeyNotVerifiable as e:
        raise HostKeyChanged(
            f"The SSH host key of {target.host} is not the one recorded at first contact, so the "
            "hub refuses to connect (the machine was replaced or someone is intercepting the "
            f"connection). ({e.reason})", target
        ) from None
    if target.key_id not in pinned:
        pinned[target.key_id] = public_key_line(conn.get_server_host_key())
        log.info("Pinned SSH host key of %s: %s", target.key_id, pinned[target.key_id])
    return conn


async def connect(
    target: SshTarget, pinned: dict[str, str], *, known_hosts_file: str | None = None,
    timeout: float = 10.0,
) -> list[asyncssh.SSHClientConnection]:
    """Connect through each hop; returns the connections, the target's last.

    ``pinned`` (``"host:port" -> key line``) is read for strict checking and updated in place with
    keys seen at first contact.
    """
    hops = target.hops()
    conns: list[asyncssh.SSHClientConnection] = []
    try:
        for hop in hops:
            tunnel = conns[-1] if conns else None
            conns.append(await _connect_hop(hop, pinned, known_hosts_file, tunnel, timeout))
    except BaseException:
        for c in reversed(conns):
            c.close()
        raise
    return conns


async def wait_for_ssh(
    target: SshTarget, pinned: dict[str, str], *, deadline_seconds: float,
    known_hosts_file: str | None = None, attempt_timeout: float = 5.0,
) -> list[asyncssh.SSHClientConnection]:
    """Retry :func:`connect` until the host accepts the login or the time is up.

    A VM's sshd and its contextualised authorized_keys appear some seconds after RUNNING, so
    refused connections and refused keys are retried; a changed host key is not.
    """
    deadline = time.monotonic() + deadline_seconds
    last: Exception | None = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            return await connect(target, pinned, known_hosts_file=known_hosts_file,
                                 timeout=min(attempt_timeout, max(left, 0.5)))
        except HostKeyChanged:
            raise
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as e:
            last = e
        await asyncio.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
    raise HostUnreachable(
        f"The machine {target.host} did not accept an SSH login within {deadline_seconds:.0f} s "
        f"(last error: {describe(last)})."
    )


def describe(error: Exception | None) -> str:
    if error is None:
        return "none"
    if isinstance(error, asyncssh.PermissionDenied):
        return "the login key was refused"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    return str(error) or type(error).__name__

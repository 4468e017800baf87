"""A machine reached over SSH (optionally through a bastion), and the two tunnels it carries.

* to the machine: hub ``127.0.0.1:<local_port>`` -> machine ``127.0.0.1:<port>`` (proxy -> server)
* to the hub: machine ``127.0.0.1:<remote_port>`` -> the hub's API (server -> hub)

so the machine needs no route to the hub and its server listens on its loopback only. Callers keep
both ports, so a restarted hub rebuilds the tunnels on the same ports.

Host keys: each hop's key is checked against the machine record's pins (``pins``, updated in place
at first contact) and, for machines that outlive one use (``trust_scope`` of the hop), against the
hub's trust store, so a machine whose key changed between two uses never gets a user's secrets.
"""
from __future__ import annotations

import asyncio
import logging
import shlex

import asyncssh

from ..bootstrap import BootstrapRunner
from ..errors import HostUnreachable, TunnelError
from ..hostkeys import HostKeyStore
from ..ssh import SshTarget, connect, describe, wait_for_ssh
from .base import CommandResult, Host

log = logging.getLogger(__name__)


class SshHost(Host):
    """One machine behind ``target`` (jump hops included)."""

    def __init__(self, target: SshTarget, pins: dict[str, str], store: HostKeyStore, *,
                 python: str = "python3", known_hosts_file: str | None = None,
                 trust_new_key: bool = False):
        self.target, self.pins, self.store = target, pins, store
        self.python, self.known_hosts_file = python, known_hosts_file
        self.trust_new_key = trust_new_key
        self.conns: list[asyncssh.SSHClientConnection] = []
        self._listeners: list = []

    @property
    def conn(self) -> asyncssh.SSHClientConnection:
        return self.conns[-1]

    def alive(self) -> bool:
        return bool(self.conns) and all(not c.is_closed() for c in self.conns)

    def reached_before(self) -> bool:
        return self.target.key_id in self.pins

    async def open(self, *, wait: float, report=None) -> None:
        if self.alive():
            return
        await self.close()
        if report:
            report(45, f"Waiting for SSH on {self.target.host}")
        hops = self.target.hops()
        if not self.pins and self.trust_new_key and self.target.trust_scope:
            # the user says their machine was reinstalled: its old key goes, a jump host's stays
            self.store.forget(self.target.trust_scope, self.target.key_id)
        for hop in hops:
            if hop.trust_scope and hop.key_id not in self.pins:
                known = self.store.load(hop.trust_scope).get(hop.key_id)
                if known:
                    self.pins[hop.key_id] = known
        if self.reached_before():
            # a machine that accepted logins before answers at once or not at all: one attempt
            # (a dead machine costs a poll ``wait`` seconds at most, not a retry loop)
            try:
                self.conns = await connect(self.target, self.pins, timeout=wait,
                                           known_hosts_file=self.known_hosts_file)
            except (OSError, asyncssh.Error, asyncio.TimeoutError) as e:
                raise HostUnreachable(f"The machine {self.target.host} did not answer over SSH "
                                      f"({describe(e)}).") from None
        else:
            self.conns = await wait_for_ssh(self.target, self.pins, deadline_seconds=wait,
                                            known_hosts_file=self.known_hosts_file)
        for hop in hops:
            if hop.trust_scope and hop.key_id in self.pins:
                self.store.pin(hop.trust_scope, hop.key_id, self.pins[hop.key_id])
        if report:
            report(50, "SSH reachable")

    async def run(self, argv: list[str], *, input: str | None = None,
                  env: dict[str, str] | None = None, timeout: float = 60) -> CommandResult:
        # quoted word by word: the remote shell sees each argument as one word, nothing more
        command = " ".join(shlex.quote(a) for a in argv)
        if env:
            command = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + \
                " " + command
        result = await asyncio.wait_for(self.conn.run(command, input=input, check=False),
                                        timeout)
        return CommandResult(result.exit_status if result.exit_status is not None else -1,
                             str(result.stdout or ""), str(result.stderr or ""))

    async def exchange(self, argv: list[str], data: bytes = b"", *, timeout: float = 600
                       ) -> tuple[int, bytes, str]:
        command = " ".join(shlex.quote(a) for a in argv)
        result = await asyncio.wait_for(
            self.conn.run(command, input=data, encoding=None, check=False), timeout)
        code = result.exit_status if result.exit_status is not None else -1
        return code, bytes(result.stdout or b""), bytes(result.stderr or b"").decode(
            errors="replace")

    async def bootstrap(self, request: dict, on_event=None) -> dict:
        return await BootstrapRunner(on_event=on_event).run_ssh(self.conn, self.python, request)

    async def forward_to_machine(self, port: int, local_port: int = 0) -> int:
        try:
            listener = await self.conn.forward_local_port("127.0.0.1", local_port, "127.0.0.1",
                                                          port)
        except OSError as e:
            raise TunnelError(
                f"The hub could not listen on 127.0.0.1:{local_port} for the tunnel to the "
                f"machine: {e}") from None
        self._listeners.append(listener)
        return listener.get_port()

    async def forward_to_hub(self, host: str, port: int, remote_port: int = 0
                             ) -> tuple[str, int]:
        try:
            listener = await self.conn.forward_remote_port("127.0.0.1", remote_port, host, port)
        except asyncssh.ChannelListenError as e:
            raise TunnelError(
                f"The machine refused to listen on 127.0.0.1:{remote_port} for the tunnel to the "
                f"hub: {e}") from None
        self._listeners.append(listener)
        return "127.0.0.1", listener.get_port()

    async def port_open(self, port: int) -> bool:
        """A direct-tcpip channel over the existing connection: no process runs on the
        machine, so this is cheap enough for every poll of every server."""
        try:
            _, writer = await asyncio.wait_for(self.conn.open_connection("127.0.0.1", port), 10)
        except asyncssh.ChannelOpenError:
            return False
        writer.close()
        return True

    async def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        conns, self.conns = self.conns, []
        for c in reversed(conns):
            c.close()
        for c in reversed(conns):
            try:
                await c.wait_closed()
            except Exception:  # closing is best effort: the peer may already be gone
                pass

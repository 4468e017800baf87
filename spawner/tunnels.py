"""The SSH session the hub keeps open to each remote server, and the two tunnels it carries.

* local forward: hub ``127.0.0.1:<local_port>`` -> host ``127.0.0.1:<server_port>`` (proxy -> server)
* remote forward: host ``127.0.0.1:<api_port>`` -> the hub API (server -> hub)

so the host needs no route to the hub and the server listens on its loopback only. Both ports are
kept in the spawner state, so a restarted hub rebuilds the tunnels on the same ports and the URL
the hub stored for the server stays valid.
"""
from __future__ import annotations

import logging

import asyncssh

log = logging.getLogger(__name__)


class TunnelError(Exception):
    """A tunnel could not be opened; ``str()`` is readable."""


class HostSession:
    """Open connections (jump hops first) to one host and the forwards over them."""

    def __init__(self, conns: list[asyncssh.SSHClientConnection]):
        self.conns = conns
        self._listeners: list = []

    @property
    def conn(self) -> asyncssh.SSHClientConnection:
        return self.conns[-1]

    def alive(self) -> bool:
        return all(not c.is_closed() for c in self.conns)

    async def forward_to_server(self, server_port: int, local_port: int = 0) -> int:
        """Listen on the hub's loopback and carry connections to the host's loopback port."""
        try:
            listener = await self.conn.forward_local_port("127.0.0.1", local_port, "127.0.0.1",
                                                          server_port)
        except OSError as e:
            raise TunnelError(
                f"could not listen on 127.0.0.1:{local_port} on the hub for the server tunnel: {e}"
            ) from None
        self._listeners.append(listener)
        return listener.get_port()

    async def forward_hub_api(self, hub_host: str, hub_port: int, remote_port: int = 0) -> int:
        """Listen on the host's loopback and carry connections back to the hub API."""
        try:
            listener = await self.conn.forward_remote_port("127.0.0.1", remote_port, hub_host,
                                                           hub_port)
        except asyncssh.ChannelListenError as e:
            raise TunnelError(
                f"the host refused to listen on 127.0.0.1:{remote_port} for the hub API tunnel: {e}"
            ) from None
        self._listeners.append(listener)
        return listener.get_port()

    async def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        for c in reversed(self.conns):
            c.close()
        for c in reversed(self.conns):
            try:
                await c.wait_closed()
            except Exception:  # closing is best effort: the peer may already be gone
                pass

"""The host-provider seam: where a user's server runs.

Implementations: ``opennebula`` (a VM per server), ``ssh`` (a fixed host or the user's own
resource), ``local`` (the hub's own machine; the embedded default). SSH, tunnels and bootstrap live
in the spawner and are the same for all of them.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

from traitlets.config import LoggingConfigurable

from ..profiles import VmProfile
from ..state import ServerState

if TYPE_CHECKING:  # pragma: no cover
    from ..spawner import OpenNebulaSpawner


class ProviderError(Exception):
    """A failure to show the user as it is (one or two plain sentences)."""

    def __init__(self, message: str, *, reason: str = "provider"):
        super().__init__(message)
        self.reason = reason


class MachineStatus(enum.Enum):
    RUNNING = "running"
    GONE = "gone"          # terminated, failed or never existed: the server cannot be running
    UNKNOWN = "unknown"    # transient: the cloud or the network did not answer


@dataclass
class SpawnContext:
    """What a provider gets for one spawn."""

    spawner: "OpenNebulaSpawner"
    profile: VmProfile
    state: ServerState
    public_key: str
    options: dict = field(default_factory=dict)
    report: Callable[[int, str], None] = lambda pct, msg: None
    persist: Callable[[], Awaitable[None]] = None  # type: ignore[assignment]
    python: str = ""  # the interpreter a server on the hub's own machine runs with


class HostProvider(LoggingConfigurable):
    """Contract, called by :class:`spawner.OpenNebulaSpawner`:

    ``remote``
        False when the server runs on the hub's own machine (no SSH, no tunnels).
    ``await check_capacity(spawner, profile)``
        Raise :class:`ProviderError` before anything is created if the request cannot fit
        (quota). Called from ``apply_user_options`` and again at start.
    ``await acquire(ctx)``
        Get a machine and fill ``ctx.state`` (host, port, username, jump, vm_id). Call
        ``await ctx.persist()`` as soon as anything exists that must be cleaned up; report progress
        with ``ctx.report(percent, message)``; raise :class:`ProviderError` on failure (the spawner
        then calls ``release``).
    ``await release(state)``
        Give the machine back. Idempotent; works from any partial state.
    ``await check(state)``
        :class:`MachineStatus` of the machine; UNKNOWN for transient errors.
    ``await form_info(spawner)``
        Extra facts for the spawn form (e.g. quota), as ``{label: text}``.
    """

    name = "base"
    remote = True
    uses_spawn_key = False  # True when the per-spawn public key is installed on the machine
    # True when a machine is the same from one server to the next (its SSH host key is pinned
    # across spawns); False for VMs, whose addresses are reused by other VMs with other keys
    machines_outlive_servers = False

    async def check_capacity(self, spawner: "OpenNebulaSpawner", profile: VmProfile) -> None:
        return None

    async def acquire(self, ctx: SpawnContext) -> None:
        raise NotImplementedError

    async def release(self, state: ServerState) -> None:
        return None

    async def check(self, state: ServerState) -> MachineStatus:
        return MachineStatus.RUNNING

    async def form_info(self, spawner: "OpenNebulaSpawner") -> dict[str, str]:
        return {}

    def client_keys(self, spawner: "OpenNebulaSpawner", state: ServerState) -> list:
        """Keys the hub logs in with; by default the per-spawn key (sealed in the state)."""
        import asyncssh

        if not state.sealed_private_key:
            return []
        return [asyncssh.import_private_key(spawner.secret_box.open(state.sealed_private_key))]

    async def close(self) -> None:
        return None

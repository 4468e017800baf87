"""One view of this hub's VMs, shared by every server's poll (kubespawner's reflector idea).

Instead of one ``vm.info`` call per server per poll, a single ``vmpool`` query lists every VM
tagged with this hub's id; callers read from the latest snapshot when it is fresh enough, and at
most one query is in flight whatever the number of callers.
"""
from __future__ import annotations

import asyncio
import time

from opennebula import OpenNebulaClient, VmInfo


class VmPoolWatch:
    """The hub's VMs (not DONE), refreshed on demand at most every ``max_age`` seconds."""

    def __init__(self, client: OpenNebulaClient, hub_id: str, max_age: float = 5.0):
        self.client, self.hub_id, self.max_age = client, hub_id, max_age
        self._vms: dict[int, VmInfo] = {}
        self._taken_at = float("-inf")
        self._refreshing: asyncio.Future | None = None
        self.queries = 0  # how many pool queries were made (the benchmark and tests read it)

    async def snapshot(self, *, newer_than: float = float("-inf")) -> tuple[float, dict]:
        """(monotonic time taken, {vm id: VmInfo}); raises the cloud's error if the query
        fails (callers treat it as the cloud not answering)."""
        now = time.monotonic()
        if self._taken_at >= max(newer_than, now - self.max_age):
            return self._taken_at, self._vms
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._refreshing)
        return self._taken_at, self._vms

    async def _refresh(self) -> None:
        started = time.monotonic()
        self.queries += 1
        vms = await self.client.list_tagged(self.hub_id)
        self._vms = {vm.id: vm for vm in vms}
        self._taken_at = started

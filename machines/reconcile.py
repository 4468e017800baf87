"""Orphan reconciliation: give back machines of this hub whose owner no longer lives.

Every VM the hub creates carries its hub id, its owner's kind and id, and the acquisition's start
id (written before the VM exists). For each kind of owner one source of truth says which owners
live: the hub for servers, the job service for job workers, the cluster manager for Dask workers.
A VM is given back only when its owner's source answered and does not hold it; a kind whose source
is not known here is never touched, nor are VMs of another hub. One refusal by the cloud does not
stop the round.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping

from opennebula import TAG_OWNER_KIND, TAG_START_ID, OpenNebulaClient, OpenNebulaError, VmInfo

from .request import OwnerKind

log = logging.getLogger("nebulahub.reconcile")


@dataclass
class References:
    """Machines an owner source still holds: by VM id and by start id."""

    vm_ids: set[int] = field(default_factory=set)
    start_ids: set[str] = field(default_factory=set)

    def holds(self, vm: VmInfo) -> bool:
        return vm.id in self.vm_ids or vm.tags.get(TAG_START_ID, "") in self.start_ids


# an owner kind's source of truth: an async function returning what it still holds
OwnerSource = Callable[[], Awaitable[References]]


def owner_kind(vm: VmInfo) -> str:
    """The VM's owner kind (VMs of the first release carry none: they were all servers)."""
    return vm.tags.get(TAG_OWNER_KIND) or OwnerKind.SERVER.value


async def find_orphans(client: OpenNebulaClient, hub_id: str,
                       sources: Mapping[str, OwnerSource]) -> list[VmInfo]:
    vms = await client.list_tagged(hub_id)
    held: dict[str, References] = {}
    for kind in {owner_kind(vm) for vm in vms}:
        if kind in sources:
            held[kind] = await sources[kind]()
    orphans = []
    for vm in vms:
        kind = owner_kind(vm)
        if kind not in held:
            log.info("VM %s belongs to a %s; no source of truth for those here, kept", vm.id,
                     kind)
        elif not held[kind].holds(vm):
            orphans.append(vm)
    return orphans


async def reconcile(client: OpenNebulaClient, hub_id: str, sources: Mapping[str, OwnerSource],
                    *, dry_run: bool = False) -> list[VmInfo]:
    """Terminate (or, dry run, only list) orphans; returns them. A VM the cloud refuses to
    terminate is reported and the others are still handled."""
    orphans = await find_orphans(client, hub_id, sources)
    for vm in orphans:
        what = "would terminate" if dry_run else "terminating"
        log.warning("Orphan VM %s (%s, %s of user %s): %s", vm.id, vm.name, owner_kind(vm),
                    vm.tags.get("NEBULAHUB_USER", "?"), what)
        if not dry_run:
            try:
                await client.terminate(vm.id)
            except OpenNebulaError as e:
                log.error("Could not terminate orphan VM %s (next round tries again): %s",
                          vm.id, e)
    return orphans


async def volumes_without_user(client: OpenNebulaClient, hub_id: str,
                               users: set[str]) -> list:
    """Home volumes of this hub whose user the hub no longer knows. Listed for the admin,
    never deleted: they hold someone's files."""
    from opennebula import TAG_USER

    return [v for v in await client.list_volumes(hub_id) if v.tags.get(TAG_USER) not in users]


async def sweep_forever(client: OpenNebulaClient, hub_id: str,
                        sources: Mapping[str, OwnerSource], every: float) -> None:
    """The periodic sweep (run as a JupyterHub managed service)."""
    while True:
        try:
            await reconcile(client, hub_id, sources)
        except Exception as e:  # a failed round is retried next round
            log.error("Orphan sweep failed: %s", e)
        await asyncio.sleep(every)

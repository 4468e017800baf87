"""Orphan reconciliation: terminate VMs tagged with this hub's id that no server references.

A VM is referenced when a server the hub knows (running or starting) holds its VM id or its
start id in the spawner state. The start id is persisted before the VM is requested, so a spawn in
flight is never mistaken for an orphan. VMs without our tag, or with another hub's, are never
touched. The hub's view comes from its REST API (scopes ``list:users``, ``read:users``,
``admin:server_state``), so this runs as a hub-managed service or from the command line alike.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from urllib.parse import urljoin

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from opennebula import TAG_START_ID, OpenNebulaClient, VmInfo

log = logging.getLogger("nebulahub.reconcile")


@dataclass
class References:
    vm_ids: set[int] = field(default_factory=set)
    start_ids: set[str] = field(default_factory=set)

    def holds(self, vm: VmInfo) -> bool:
        return vm.id in self.vm_ids or vm.tags.get(TAG_START_ID, "") in self.start_ids


async def hub_references(api_url: str, token: str) -> References:
    """Every VM id and start id held by an active (running or pending) server."""
    req = HTTPRequest(urljoin(api_url.rstrip("/") + "/", "users"),
                      headers={"Authorization": f"token {token}"}, request_timeout=30)
    resp = await AsyncHTTPClient().fetch(req)
    refs = References()
    for user in json.loads(resp.body):
        for server in (user.get("servers") or {}).values():
            state = server.get("state")
            if state is None:
                raise PermissionError("the hub API token lacks the admin:server_state scope")
            if state.get("vm_id") is not None:
                refs.vm_ids.add(int(state["vm_id"]))
            if state.get("start_id"):
                refs.start_ids.add(state["start_id"])
    return refs


async def find_orphans(client: OpenNebulaClient, hub_id: str, refs: References) -> list[VmInfo]:
    return [vm for vm in await client.list_tagged(hub_id) if not refs.holds(vm)]


async def reconcile(client: OpenNebulaClient, hub_id: str, refs: References, *,
                    dry_run: bool = False) -> list[VmInfo]:
    """Terminate (or, dry run, only list) orphans; returns them."""
    orphans = await find_orphans(client, hub_id, refs)
    for vm in orphans:
        what = "would terminate" if dry_run else "terminating"
        log.warning("Orphan VM %s (%s, user %s): %s", vm.id, vm.name,
                    vm.tags.get("NEBULAHUB_USER", "?"), what)
        if not dry_run:
            await client.terminate(vm.id)
    return orphans


async def sweep_forever(client: OpenNebulaClient, hub_id: str, api_url: str, token: str,
                        every: float) -> None:
    """The hub-side periodic sweep (run as a JupyterHub managed service)."""
    while True:
        try:
            refs = await hub_references(api_url, token)
            await reconcile(client, hub_id, refs)
        except Exception as e:  # a failed round is retried next round
            log.error("Orphan sweep failed: %s", e)
        await asyncio.sleep(every)


def managed_service(config_file: str, every: float = 300) -> tuple[dict, dict]:
    """The hub-managed sweep: a JupyterHub service entry and the role it needs.

    The hub hands the service its API token through the environment; OpenNebula credentials
    come from the same config file (auth_file) or from $NEBULAHUB_ONE_AUTH passed through here.
    """
    import os
    import sys

    env = {k: os.environ[k] for k in ("NEBULAHUB_ONE_AUTH",) if k in os.environ}
    service = {"name": "nebulahub-reconcile", "environment": env,
               "command": [sys.executable, "-m", "spawner.cli", "reconcile", "--every",
                           str(every), "--config", config_file]}
    role = {"name": "nebulahub-reconcile", "services": ["nebulahub-reconcile"],
            "scopes": ["list:users", "read:users", "admin:server_state"]}
    return service, role

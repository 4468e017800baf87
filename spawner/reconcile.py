"""The hub as the source of truth for servers' machines (used by the orphan sweep).

A machine is held by a server the hub knows (running or starting) when that server's state holds
its VM id or its start id. The hub's view comes from its REST API (scopes ``list:users``,
``read:users``, ``admin:server_state``), so the sweep runs as a hub-managed service or from the
command line alike.
"""
from __future__ import annotations

import json
import os
import sys
from urllib.parse import urljoin

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from machines.reconcile import References


def server_machine(state: dict) -> dict:
    """The machine part of a stored server state, whatever its version."""
    return state.get("machine") or {} if state.get("version") else state


async def hub_users(api_url: str, token: str) -> set[str]:
    """The names of every user the hub knows."""
    req = HTTPRequest(urljoin(api_url.rstrip("/") + "/", "users"),
                      headers={"Authorization": f"token {token}"}, request_timeout=30)
    resp = await AsyncHTTPClient().fetch(req)
    return {u["name"] for u in json.loads(resp.body)}


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
            machine = server_machine(state)
            if machine.get("vm_id") is not None:
                refs.vm_ids.add(int(machine["vm_id"]))
            if machine.get("start_id"):
                refs.start_ids.add(machine["start_id"])
    return refs


def managed_service(config_file: str, every: float = 300) -> tuple[dict, dict]:
    """The hub-managed sweep: a JupyterHub service entry and the role it needs.

    The hub hands the service its API token through the environment; OpenNebula credentials
    come from the same config file (auth_file) or from $NEBULAHUB_ONE_AUTH passed through here.
    """
    env = {k: os.environ[k] for k in ("NEBULAHUB_ONE_AUTH",) if k in os.environ}
    service = {"name": "nebulahub-reconcile", "environment": env,
               "command": [sys.executable, "-m", "nebulahub.cli", "reconcile", "--every",
                           str(every), "--config", config_file]}
    role = {"name": "nebulahub-reconcile", "services": ["nebulahub-reconcile"],
            "scopes": ["list:users", "read:users", "admin:server_state"]}
    return service, role


def idle_culler(timeout: int, every: int | None = None) -> tuple[dict, dict]:
    """jupyterhub-idle-culler as a hub-managed service: servers idle for ``timeout`` seconds are
    stopped, so forgotten servers give their machines back."""
    every = every or max(10, min(300, timeout // 4))
    service = {"name": "idle-culler",
               "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                           f"--timeout={timeout}", f"--cull-every={every}"]}
    role = {"name": "idle-culler", "services": ["idle-culler"],
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]}
    return service, role

"""The jobs service: a JupyterHub-managed service running problem-oriented jobs.

:mod:`.store` (SQLAlchemy tables, Alembic migrations), :mod:`.engine` (submit, watch, cancel,
collect), :mod:`.api` (the REST API behind the hub's login), :mod:`.results` (delivery to URLs),
:mod:`.config` (every admin setting). ``python -m jobforms.service --config FILE`` runs it;
:func:`managed_service` gives the hub its service entry and roles.
"""
from __future__ import annotations

import os
import socket
import sys

NAME = "nebulahub-jobs"


def managed_service(config_file: str, port: int = 0) -> tuple[dict, list[dict]]:
    """The JupyterHub service entry (hub-managed, behind the hub's OAuth) and the roles that
    let every user (and their servers, for the Jobs page) reach it."""
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    # the cloud backend's OpenNebula credentials, when the hub has them in its environment
    env = {k: os.environ[k] for k in ("NEBULAHUB_ONE_AUTH",) if k in os.environ}
    service = {"name": NAME, "url": f"http://127.0.0.1:{port}", "oauth_no_confirm": True,
               "environment": env,
               "command": [sys.executable, "-m", "jobforms.service", "--config", config_file]}
    access = f"access:services!service={NAME}"
    roles = [{"name": "user", "scopes": ["self", access]},
             {"name": "server", "scopes": ["users:activity!user", "access:servers!server",
                                           access]}]
    return service, roles

"""``local`` provider: the server runs on the hub's own machine. The embedded default (demo).

It uses the same bootstrap program as remote hosts, run as a local process, but no SSH and no
tunnels. All users share the hub's Unix account: meant for a demo or a one-person hub.
"""
from __future__ import annotations

import os

from traitlets import Unicode

from .base import HostProvider, SpawnContext


class LocalProvider(HostProvider):
    """Serve on the hub machine, each user in their own directory under ``home_root``."""

    name = "local"
    remote = False

    home_root = Unicode(
        "var/homes/{username}",
        help="Directory a user's server starts in (created if missing); {username} is replaced.",
    ).tag(config=True)

    workdir_root = Unicode(
        "var/servers",
        help="Per-server directories (token file, log) on the hub machine.",
    ).tag(config=True)

    def home_for(self, username: str) -> str:
        return os.path.abspath(os.path.expanduser(self.home_root.format(username=username)))

    async def acquire(self, ctx: SpawnContext) -> None:
        ctx.state.host = "127.0.0.1"
        home = self.home_for(ctx.spawner.user.name)
        os.makedirs(home, mode=0o700, exist_ok=True)
        ctx.report(40, "Using the hub's own machine")
        await ctx.persist()

"""``local`` provider: the server runs on the hub's own machine. The embedded default (demo).

It uses the same bootstrap program as remote hosts, run as a local process, but no SSH and no
tunnels. When the hub runs as root, each hub user's server runs as a Unix account of its own
(``system_user_prefix`` + the hub user name), never as root, as JupyterHub's LocalProcessSpawner
does; the demo lets the hub create those accounts. A hub that is not root cannot switch
accounts: then every user's server shares the hub's account, which the hub says when it starts.
"""
from __future__ import annotations

import asyncio
import os
import pwd

from traitlets import Bool, Unicode

from .. import localusers
from ..localusers import AccountError, LocalAccount
from .base import HostProvider, ProviderError, SpawnContext


class LocalProvider(HostProvider):
    """Serve on the hub machine, each user as their own Unix account in their own home."""

    name = "local"
    remote = False

    home_root = Unicode(
        "var/homes/{username}",
        help="""Home of a user's server (created if missing, 0700, owned by the user's account);
        {username} is the hub user name. Every account must be able to reach it: when the hub runs
        as root, put it in a folder other accounts can traverse (the demo uses
        /var/lib/nebulahub/demo/homes).""",
    ).tag(config=True)

    system_user_prefix = Unicode(
        "",
        help="""Hub user ``ann`` runs as the Unix account ``<prefix>ann``. The demo uses
        ``nhdemo-`` so that its accounts cannot collide with real ones. Only used when the hub
        runs as root.""",
    ).tag(config=True)

    create_system_users = Bool(
        False,
        help="""Create missing Unix accounts (hub running as root only). Each account created is
        recorded in ``accounts_registry``; ``nebulahub accounts remove`` deletes exactly those and
        nothing the hub did not create.""",
    ).tag(config=True)

    accounts_registry = Unicode(
        "var/created-accounts",
        help="File listing the Unix accounts this hub created (hub-private).",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if os.geteuid() != 0:
            self.log.warning(
                "The hub runs as %s, not root: every user's server on this machine runs as that "
                "same account and can read the others' files. Run the hub as root to give each "
                "user their own account.", pwd.getpwuid(os.geteuid()).pw_name)

    def home_for(self, username: str) -> str:
        return os.path.abspath(os.path.expanduser(self.home_root.format(username=username)))

    @property
    def switches_accounts(self) -> bool:
        return os.geteuid() == 0

    def account_for(self, username: str) -> LocalAccount:
        """The account the server of hub user ``username`` runs as (created if allowed)."""
        home = self.home_for(username)
        if not self.switches_accounts:
            me = pwd.getpwuid(os.geteuid())
            return LocalAccount(me.pw_name, me.pw_uid, me.pw_gid, home)
        name = localusers.unix_name(self.system_user_prefix, username)
        registry = os.path.abspath(self.accounts_registry) if self.create_system_users else None
        account = localusers.ensure_account(name, home, registry)
        return LocalAccount(account.name, account.uid, account.gid, home)

    async def acquire(self, ctx: SpawnContext) -> None:
        username = ctx.spawner.user.name
        try:
            account = await asyncio.to_thread(self.account_for, username)
            await asyncio.to_thread(localusers.prepare_home, account, account.home)
        except AccountError as e:
            raise ProviderError(str(e), reason="account") from None
        blocked = localusers.path_blocker(ctx.python, account)
        if blocked:
            raise ProviderError(
                f"The account {account.name} cannot run the servers' Python {ctx.python}: the "
                f"folder {blocked} is closed to it. The admin must point "
                "OpenNebulaSpawner.python_env at an environment every account can read "
                "(make demo builds one under /var/lib/nebulahub).", reason="account")
        ctx.state.host = "127.0.0.1"
        ctx.state.username = account.name
        ctx.report(40, "Using the hub's own machine")
        await ctx.persist()

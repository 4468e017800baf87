"""``local`` provider: the workload runs on the hub's own machine. The embedded default (demo).

It uses the same bootstrap program as remote hosts, run as a local process, but no SSH and no
tunnels. When the hub runs as root, each hub user's workload runs as a Unix account of its own
(``system_user_prefix`` + the hub user name), never as root, as JupyterHub's LocalProcessSpawner
does; the demo lets the hub create those accounts. A hub that is not root cannot switch
accounts: then every user shares the hub's account, which the hub says when it starts.
"""
from __future__ import annotations

import asyncio
import os
import pwd
import sys

from traitlets import Bool, Unicode

from .. import localusers
from ..errors import AccountError
from ..hosts import LocalHost
from ..localusers import LocalAccount
from ..record import Machine
from ..request import MachineRequest
from .base import MachineProvider


class LocalProvider(MachineProvider):
    """The hub machine, each user as their own Unix account in their own home."""

    name = "local"
    machines_outlive_use = True

    home_root = Unicode(
        "var/homes/{username}",
        help="""Home of a user's workloads (created if missing, 0700, owned by the user's
        account); {username} is the hub user name. Every account must be able to reach it: when
        the hub runs as root, put it in a folder other accounts can traverse (the demo uses
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

    _warned = False  # say it once per hub, not once per server

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.switches_accounts and not LocalProvider._warned:
            LocalProvider._warned = True
            self.log.warning(
                "The hub runs as %s, not root: every user's server on this machine runs as that "
                "same account and can read the others' files. Run the hub as root to give each "
                "user their own account.", pwd.getpwuid(os.geteuid()).pw_name)

    @property
    def switches_accounts(self) -> bool:
        return os.geteuid() == 0

    def home_for(self, username: str) -> str:
        return os.path.abspath(os.path.expanduser(self.home_root.format(username=username)))

    def account_for(self, username: str) -> LocalAccount:
        """The account hub user ``username``'s workloads run as (created if allowed)."""
        home = self.home_for(username)
        if not self.switches_accounts:
            me = pwd.getpwuid(os.geteuid())
            return LocalAccount(me.pw_name, me.pw_uid, me.pw_gid, home)
        name = localusers.unix_name(self.system_user_prefix, username)
        registry = os.path.abspath(self.accounts_registry) if self.create_system_users else None
        account = localusers.ensure_account(name, home, registry)
        return LocalAccount(account.name, account.uid, account.gid, home)

    @staticmethod
    def python_of(env: str) -> str:
        python = os.path.join(env, "bin", "python") if env else sys.executable
        return python if os.path.exists(python) else sys.executable

    async def acquire(self, request: MachineRequest, machine: Machine, report, persist) -> None:
        machine.user = request.user
        account = await asyncio.to_thread(self.account_for, request.user)
        await asyncio.to_thread(localusers.prepare_home, account, account.home)
        python = os.path.join(request.python_env, "bin", "python") if request.python_env \
            else sys.executable
        if not os.path.exists(python):
            raise AccountError(
                f"The servers' Python environment {request.python_env} does not exist; the admin "
                "builds it with `nebulahub server-env PATH`.")
        blocked = localusers.path_blocker(python, account)
        if blocked:
            raise AccountError(
                f"The account {account.name} cannot run the servers' Python {python}: the "
                f"folder {blocked} is closed to it. The admin must point "
                "OpenNebulaSpawner.python_env at an environment every account can read "
                "(make demo builds one under /var/lib/nebulahub).")
        machine.host, machine.username, machine.home = "127.0.0.1", account.name, account.home
        machine.python_env = request.python_env
        report(40, "Using the hub's own machine")
        await persist()

    def host_for(self, machine: Machine, *, trust_new_key: bool = False) -> LocalHost:
        return LocalHost(machine.username or pwd.getpwuid(os.geteuid()).pw_name,
                         machine.home or self.home_for(machine.user),
                         self.python_of(machine.python_env))

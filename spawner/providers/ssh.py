"""``ssh`` provider: an existing SSH-reachable machine, the admin's or the user's own (VISPA-style)."""
from __future__ import annotations

import asyncssh
from traitlets import Bool, List, Unicode, validate

from ..keys import UserKeyStore
from ..localusers import UNIX_NAME
from ..netguard import HostRefused, check_address, resolve_user_host
from ..state import JumpHost, ServerState
from .base import HostProvider, ProviderError, SpawnContext


class SshProvider(HostProvider):
    """Serve on a fixed host configured by the admin, or on a host the user names on the form.

    On the fixed host each hub user logs in as an account of their own (``username_template``),
    so users cannot read each other's files or token files. For a user's own resource the hub logs
    in with a key pair of that user's, kept by the hub; the form shows its public half to add to
    ``~/.ssh/authorized_keys`` on the resource (and on the jump host, if one is used).
    """

    name = "ssh"
    machines_outlive_servers = True

    host = Unicode(
        "",
        help="""Fixed host ``host[:port]`` for every server (empty: users must name theirs). Each
        hub user logs in with the account given by ``username_template``.""",
    ).tag(config=True)

    username_template = Unicode(
        "{username}",
        help="""Account on the fixed host for a hub user; ``{username}`` is the hub user name.
        The default maps every hub user to the Unix account of the same name; the hub's key
        (``key_file``) must be in each account's authorized_keys. A template without
        ``{username}`` makes all users share one account, and so each other's files.""",
    ).tag(config=True)

    key_file = Unicode(
        "",
        help="Private key the hub logs in to the fixed host (and the admin's jump host) with.",
    ).tag(config=True)

    allow_user_resources = Bool(
        False,
        help="Let users serve on their own SSH-reachable machine, named on the spawn form.",
    ).tag(config=True)

    user_key_dir = Unicode(
        "var/user-keys",
        help="Directory (hub-private, 0700) for each user's hub key pair used on own resources.",
    ).tag(config=True)

    user_host_allow = List(
        Unicode(),
        help="""Networks (CIDR) users' own machines must be in, e.g. ["10.20.0.0/16"]; empty:
        anywhere. The hub's own addresses, loopback, link-local and cloud metadata addresses are
        refused whatever this says.""",
    ).tag(config=True)

    user_host_deny = List(
        Unicode(),
        help="Further networks (CIDR) users' own machines may not be in (e.g. the hub's LAN).",
    ).tag(config=True)

    @validate("host")
    def _no_shared_login(self, proposal):
        if "@" in proposal.value:
            raise ValueError(
                "SshProvider.host names a login user; give only host[:port] and set "
                "SshProvider.username_template (default: each hub user logs in as the account "
                "of the same name).")
        return proposal.value

    def key_store(self, spawner) -> UserKeyStore:
        return UserKeyStore(self.user_key_dir, spawner.secret_box)

    def _admin_keys(self) -> list:
        if not self.key_file:
            raise ProviderError("No SSH key is configured for the hub (SshProvider.key_file).",
                                reason="ssh-config")
        try:
            return [asyncssh.read_private_key(self.key_file)]
        except (OSError, asyncssh.KeyImportError) as e:
            raise ProviderError(f"The hub cannot read its SSH key: {e}", reason="ssh-config")

    def login_for(self, username: str) -> str:
        login = self.username_template.format(username=username)
        if not UNIX_NAME.fullmatch(login):
            raise ProviderError(
                f"Your hub name {username!r} gives no valid login name on the server ({login!r});"
                " ask your admin.", reason="options")
        return login

    async def acquire(self, ctx: SpawnContext) -> None:
        state, opts = ctx.state, ctx.options
        if opts.get("resource_host"):
            if not self.allow_user_resources:
                raise ProviderError("Own resources are not enabled on this hub.", reason="options")
            state.own_resource = True
            state.port = int(opts.get("resource_port") or 22)
            state.username = opts.get("resource_user") or ctx.spawner.user.name
            state.jump = JumpHost.parse(opts.get("resource_jump", ""), state.username)
            try:
                # the hub connects to the first hop itself: only to a checked address
                if state.jump is None:
                    state.host = await self.checked_address(
                        opts["resource_host"], state.port, "resource_host")
                else:
                    state.host = opts["resource_host"]
                    state.jump.host = await self.checked_address(
                        state.jump.host, state.jump.port, "resource_jump")
            except HostRefused as e:
                raise ProviderError(str(e), reason="options") from None
        elif self.host:
            target = JumpHost.parse(self.host, "")
            state.host, state.port = target.host, target.port
            state.username = self.login_for(ctx.spawner.user.name)
        else:
            raise ProviderError("Name the machine to serve on (host and user).", reason="options")
        ctx.report(40, f"Using {state.username}@{state.host}")
        await ctx.persist()

    def literal_address_checked(self, host: str, field: str) -> bool:
        """True if ``host`` is an IP address and allowed (HostRefused if not); False for names,
        which need a lookup (:meth:`checked_address`)."""
        import ipaddress

        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        check_address(host, field=field, host=host, allow=self.user_host_allow,
                      deny=self.user_host_deny)
        return True

    async def checked_address(self, host: str, port: int, field: str) -> str:
        return await resolve_user_host(host, port, field=field, allow=self.user_host_allow,
                                       deny=self.user_host_deny)

    def client_keys(self, spawner, state: ServerState) -> list:
        if state.own_resource:
            return [self.key_store(spawner).private_key(spawner.user.name)]
        return self._admin_keys()

    async def form_info(self, spawner) -> dict[str, str]:
        if not self.allow_user_resources:
            return {}
        return {"Hub key for your resource": self.key_store(spawner).public_line(spawner.user.name)}

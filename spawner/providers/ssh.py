"""``ssh`` provider: an existing SSH-reachable machine, the admin's or the user's own (VISPA-style)."""
from __future__ import annotations

import asyncssh
from traitlets import Bool, Unicode

from ..keys import UserKeyStore
from ..state import JumpHost, ServerState
from .base import HostProvider, ProviderError, SpawnContext


class SshProvider(HostProvider):
    """Serve on a fixed host configured by the admin, or on a host the user names on the form.

    For a user's own resource the hub logs in with a key pair of that user's, kept by the hub; the
    form shows its public half to add to ``~/.ssh/authorized_keys`` on the resource (and on the
    jump host, if one is used).
    """

    name = "ssh"

    host = Unicode(
        "",
        help="Fixed host ``[user@]host[:port]`` for every server (empty: users must name theirs).",
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

    default_user = Unicode("", help="Login user on the fixed host when ``host`` names none.").tag(
        config=True
    )

    def key_store(self) -> UserKeyStore:
        return UserKeyStore(self.user_key_dir)

    def _admin_keys(self) -> list:
        if not self.key_file:
            raise ProviderError("No SSH key is configured for the hub (SshProvider.key_file).",
                                reason="ssh-config")
        try:
            return [asyncssh.read_private_key(self.key_file)]
        except (OSError, asyncssh.KeyImportError) as e:
            raise ProviderError(f"The hub cannot read its SSH key: {e}", reason="ssh-config")

    async def acquire(self, ctx: SpawnContext) -> None:
        state, opts = ctx.state, ctx.options
        if opts.get("resource_host"):
            if not self.allow_user_resources:
                raise ProviderError("Own resources are not enabled on this hub.", reason="options")
            state.host = opts["resource_host"]
            state.port = int(opts.get("resource_port") or 22)
            state.username = opts.get("resource_user") or ctx.spawner.user.name
            state.jump = JumpHost.parse(opts.get("resource_jump", ""), state.username)
            state.profile = "own-resource"
        elif self.host:
            target = JumpHost.parse(self.host, self.default_user or ctx.spawner.user.name)
            state.host, state.port, state.username = target.host, target.port, target.username
        else:
            raise ProviderError("Name the machine to serve on (host and user).", reason="options")
        ctx.report(40, f"Using {state.username}@{state.host}")
        await ctx.persist()

    def client_keys(self, spawner, state: ServerState) -> list:
        if state.profile == "own-resource":
            return [self.key_store().private_key(spawner.user.name)]
        return self._admin_keys()

    async def form_info(self, spawner) -> dict[str, str]:
        if not self.allow_user_resources:
            return {}
        return {"Hub key for your resource": self.key_store().public_line(spawner.user.name)}

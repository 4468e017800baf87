"""``ssh`` provider: an existing SSH-reachable machine, the admin's or the user's own (VISPA-style)."""
from __future__ import annotations

import ipaddress

import asyncssh
from traitlets import Bool, List, Unicode, validate

from ..errors import ConfigError, OptionError
from ..keys import UserKeyStore
from ..localusers import UNIX_NAME
from ..netguard import check_address, resolve_user_host
from ..record import JumpHost, Machine
from ..request import MachineRequest
from .remote import RemoteProvider


class SshProvider(RemoteProvider):
    """Serve on a fixed host configured by the admin, or on a host the user names.

    On the fixed host each hub user logs in as an account of their own (``username_template``),
    so users cannot read each other's files or token files. For a user's own machine the hub logs
    in with a key pair of that user's, kept (sealed) by the hub; the spawn form shows its public
    half to add to ``~/.ssh/authorized_keys`` on the machine (and on its jump host, if any).
    """

    name = "ssh"
    machines_outlive_use = True

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
        refused whatever this says. Behind a jump host only the jump host is checked: the hub
        connects to nothing else itself.""",
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

    def key_store(self) -> UserKeyStore:
        return UserKeyStore(self.user_key_dir, self.access.secret_box)

    def _admin_keys(self) -> list:
        if not self.key_file:
            raise ConfigError("No SSH key is configured for the hub (SshProvider.key_file).",
                              reason="ssh-config")
        try:
            return [asyncssh.read_private_key(self.key_file)]
        except (OSError, asyncssh.KeyImportError) as e:
            raise ConfigError(f"The hub cannot read its SSH key: {e}", reason="ssh-config") \
                from None

    def login_for(self, username: str) -> str:
        login = self.username_template.format(username=username)
        if not UNIX_NAME.fullmatch(login):
            raise OptionError("user", f"your hub name {username!r} gives no valid login name on "
                              f"the server ({login!r}); ask your admin.")
        return login

    # ---- users' own machines: only addresses that are theirs ------------------------------

    def _first_hop(self, own) -> tuple[str, str, int]:
        """(field, host, port) of the machine the hub itself connects to."""
        if own.jump:
            jump = JumpHost.parse(own.jump, own.username)
            return "resource_jump", jump.host, jump.port
        return "resource_host", own.host, own.port

    def literal_address_checked(self, host: str, field: str) -> bool:
        """True if ``host`` is an IP address and allowed (HostRefused if not); False for names,
        which need a lookup (:meth:`checked_address`)."""
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

    async def check_request(self, request: MachineRequest) -> None:
        if request.own is None:
            return
        if not self.allow_user_resources:
            raise OptionError("resource_host", "this hub does not serve on users' own machines")
        field, host, port = self._first_hop(request.own)
        if not self.literal_address_checked(host, field):
            await self.checked_address(host, port, field)

    async def acquire(self, request: MachineRequest, machine: Machine, report, persist) -> None:
        own = request.own
        machine.user = request.user
        if own is not None:
            await self.check_request(request)
            machine.own_resource = True
            machine.port, machine.username = own.port, own.username
            machine.jump = JumpHost.parse(own.jump, own.username)
            # the hub connects to the first hop itself: only to the checked address
            field, host, port = self._first_hop(own)
            checked = await self.checked_address(host, port, field)
            if machine.jump is None:
                machine.host = checked
            else:
                machine.host, machine.jump.host = own.host, checked
        elif self.host:
            target = JumpHost.parse(self.host, "")
            machine.host, machine.port = target.host, target.port
            machine.username = self.login_for(request.user)
            machine.jump = self.access.bastion(machine.username)
        else:
            raise OptionError("resource_host", "name the machine to serve on (host and user)")
        report(40, f"Using {machine.username}@{machine.host}")
        await persist()

    def client_keys(self, machine: Machine) -> list:
        if machine.own_resource:
            return [self.key_store().private_key(machine.user)]
        return self._admin_keys()

    def jump_keys(self, machine: Machine) -> list:
        if machine.own_resource:
            return self.client_keys(machine)
        return self.access.bastion_keys() or self._admin_keys()

    async def form_info(self, user: str) -> dict[str, str]:
        if not self.allow_user_resources:
            return {}
        return {"Hub key for your resource": self.key_store().public_line(user)}

"""What providers whose machines are reached over SSH share: keys, trust scopes, the bastion."""
from __future__ import annotations

import asyncssh

from ..hostkeys import HUB_SCOPE, user_scope
from ..hosts import SshHost
from ..record import Machine
from ..ssh import SshTarget
from .base import MachineProvider


class RemoteProvider(MachineProvider):
    """A provider whose machines are SSH hosts; subclasses say which keys open them."""

    def client_keys(self, machine: Machine) -> list:
        """Keys the hub logs in to the machine with; by default the per-acquisition key."""
        if not machine.sealed_private_key:
            return []
        return [asyncssh.import_private_key(self.access.secret_box.open(machine.sealed_private_key))]

    def jump_keys(self, machine: Machine) -> list:
        """Keys for the machine's jump host; by default the admin's bastion key."""
        return self.access.bastion_keys()

    def trust_scope(self, machine: Machine) -> str | None:
        """Where the machine's host key is kept beyond its record (None: with the record)."""
        if machine.own_resource:
            return user_scope(machine.user)
        return HUB_SCOPE if self.machines_outlive_use else None

    def host_for(self, machine: Machine, *, trust_new_key: bool = False) -> SshHost:
        scope = self.trust_scope(machine)
        jump = None
        if machine.jump is not None:
            jump = SshTarget(machine.jump.host, machine.jump.username, machine.jump.port,
                             self.jump_keys(machine), trust_scope=scope or HUB_SCOPE)
        target = SshTarget(machine.host, machine.username, machine.port,
                           self.client_keys(machine), jump, trust_scope=scope)
        return SshHost(target, machine.host_keys, self.access.host_keys,
                       python=self.access.bootstrap_python,
                       known_hosts_file=self.access.known_hosts_file or None,
                       trust_new_key=trust_new_key)

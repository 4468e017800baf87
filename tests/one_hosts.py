"""The hosts behind the OpenNebula double's VMs: a recording stand-in, or namespace hosts."""
from __future__ import annotations

import itertools
from typing import Any, Callable


class FakeHost:
    """A stand-in host for tests that need no network: records what the double did to it."""

    _addresses = itertools.count(2)

    def __init__(self, vm_id: int, context: dict[str, str]):
        n = next(self._addresses)
        self.name = f"vm{vm_id}"
        self.ip = f"10.99.{n // 250}.{n % 250 + 2}"
        self.authorized_keys = [k for k in context.get("SSH_PUBLIC_KEY", "").splitlines() if k]
        self.sshd_started = False
        self.destroyed = False

    def start_sshd(self) -> None:
        self.sshd_started = True

    def stop_sshd(self) -> None:
        self.sshd_started = False

    def set_authorized_keys(self, keys) -> None:
        self.authorized_keys = list(keys)

    def destroy(self) -> None:
        self.destroyed = True
        self.sshd_started = False


def network_host_factory(network, *, behind=None) -> Callable[[int, dict], Any]:
    """A host factory making each VM a namespace host of a ``tests.nethosts.TestNetwork``
    (behind ``behind``, a bastion, if given), with the VM's SSH_PUBLIC_KEY lines authorized
    and sshd not started until the VM is RUNNING."""
    def factory(vm_id: int, context: dict[str, str]):
        keys = [k for k in context.get("SSH_PUBLIC_KEY", "").splitlines() if k.strip()]
        return network.add_host(f"vm{vm_id}", behind=behind, authorized_keys=keys,
                                start_sshd=False)
    return factory

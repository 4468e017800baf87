"""The hosts behind the OpenNebula double's VMs (a recording stand-in, or namespace hosts), the
address lease oned gives their NIC, and what the guest's contextualization does with the
CONTEXT oned hands it.

Guest side, as the real images behave:

* Networking: one-context (``context-linux``, ``net-90-service-network`` /
  ``loc-10-network``) configures interfaces only from the ``ETHx_*`` variables, which oned
  writes into CONTEXT only when ``NETWORK = "YES"`` (``src/vm/VirtualMachineContext.cc``
  404-415 at release-7.3.80). cloud-init's OpenNebula datasource reads the same variables and
  otherwise falls back to DHCP, which the test network does not offer. So: without
  NETWORK=YES, or with an empty ``ETH0_IP`` (a NIC on an Ethernet-only address range), the
  guest's eth0 has no IPv4 address and nothing answers SSH at the NIC's IP.
* Login user: one-context creates ``USERNAME`` (``root`` when unset) and installs
  SSH_PUBLIC_KEY for it; cloud-init images ignore USERNAME and keep the image's default user.
  The namespace hosts share this machine's /etc/passwd, so the double does not create
  accounts: USERNAME must be an existing account (the tests use the network's ssh user);
  ``root`` never gets in (the test sshd has ``PermitRootLogin no``, where a real one-context
  image would let root in with the key).
"""
from __future__ import annotations

import ipaddress
import itertools
from typing import Any, Callable

ONE_CONTEXT, CLOUD_INIT = "one-context", "cloud-init"
IMAGE_KINDS = (ONE_CONTEXT, CLOUD_INIT)


class FakeHost:
    """A stand-in host for tests that need no network: records what the double did to it."""

    _addresses = itertools.count(2)

    def __init__(self, vm_id: int, context: dict[str, str]):
        n = next(self._addresses)
        self.name = f"vm{vm_id}"
        self.ip = f"10.99.{n // 250}.{n % 250 + 2}"
        self.subnet = "10.99.0.0/16"
        self.gateway_ip = "10.99.0.1"
        self.user = "root"
        self.authorized_keys = [k for k in context.get("SSH_PUBLIC_KEY", "").splitlines() if k]
        self.network_configured = True   # the guest's eth0 has self.ip
        self.sshd_started = False
        self.destroyed = False

    @property
    def sshd_running(self) -> bool:
        return self.sshd_started

    def start_sshd(self) -> None:
        self.sshd_started = True

    def stop_sshd(self) -> None:
        self.sshd_started = False

    def set_authorized_keys(self, keys) -> None:
        self.authorized_keys = list(keys)

    def unconfigure_network(self) -> None:
        self.network_configured = False

    def set_login_user(self, user: str) -> None:
        self.user = user

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


def lease_of(host) -> dict[str, str]:
    """The address range values oned knows for the host's NIC: IP, MAC (oned's default
    ``MAC_PREFIX`` 02:00 followed by the IPv4 octets, as the namespace hosts use),
    NETWORK_ADDRESS, NETWORK_MASK, GATEWAY."""
    behind = getattr(host, "behind", None)
    if behind is not None:
        subnet, gateway = behind.inner_subnet, behind.inner_ip
    elif hasattr(host, "network"):
        subnet, gateway = host.network.subnet, host.network.gateway_ip
    else:
        subnet, gateway = host.subnet, host.gateway_ip
    net = ipaddress.ip_network(subnet)
    mac = "02:00:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(host.ip).packed)
    return {"IP": host.ip, "MAC": mac, "NETWORK_ADDRESS": str(net.network_address),
            "NETWORK_MASK": str(net.netmask), "GATEWAY": str(gateway)}


def configure_guest(host, context: dict[str, str], image_kind: str,
                    default_user: str | None = None) -> None:
    """Do to ``host`` what the image's contextualization does with ``context`` (the CONTEXT
    as oned stores it): keep or drop eth0's address, pick the login user."""
    if context.get("NETWORK", "").upper() != "YES" or not context.get("ETH0_IP"):
        _unconfigure_network(host)
    if image_kind == ONE_CONTEXT:
        user = context.get("USERNAME") or "root"
    else:
        user = default_user or host.user
    if user != host.user:
        _set_login_user(host, user)


def _unconfigure_network(host) -> None:
    if hasattr(host, "unconfigure_network"):
        host.unconfigure_network()
        return
    from tests.nethosts.netns import run_ip  # namespace hosts only
    run_ip("-4", "addr", "flush", "dev", "eth0", netns=host.netns)


def _set_login_user(host, user: str) -> None:
    if hasattr(host, "set_login_user"):
        host.set_login_user(user)
        return
    # SshHost: sshd's AllowUsers is built from host.user; allow_login() rewrites the config.
    host.user = user
    host.allow_login()

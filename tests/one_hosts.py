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
* Home (NebulaHub's contract, what its START_SCRIPT_BASE64 does on a real one-context guest at
  boot): with ``NEBULAHUB_HOME_DISK = "<TARGET>"`` and ``NEBULAHUB_HOME = "<path>"``, the disk
  with that TARGET is formatted if blank (ext4: a fresh filesystem holds ``lost+found``) and
  mounted at the path, then given to USERNAME with mode 0700 (the script does that at every
  boot). With ``NEBULAHUB_HOME_FSTAB = "<fstab line>"`` and ``NEBULAHUB_HOME``, the line is
  added to /etc/fstab and the home mounted from it (``mount <path>``: the line's mount point
  must be that path). Here an image's content is a folder the double keeps per image, a share
  a folder given by ``OneDouble.shared_filesystem``; either is bind-mounted at the path in the
  VM host's own mount namespace (``SshHost.set_mounts``) before its sshd starts
  (``one_disks``). Nothing happens without a START_SCRIPT(_BASE64) (nothing would run on a
  real guest), on cloud-init images (to my knowledge their OpenNebula datasource runs no
  START_SCRIPT), or when the path does not exist (the double never creates directories on the
  machine it shares with the hosts). What a real guest would fail at (no such disk, no such
  export, a mount point other than the path) is recorded in ``OneDouble.host_errors`` and
  nothing is mounted.
"""
from __future__ import annotations

import ipaddress
import itertools
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
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
        self.mounts: list[tuple[str, str]] = []

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

    def set_mounts(self, mounts) -> None:
        self.mounts = list(mounts)

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


# ---------------------------------------------------------------- the home (NebulaHub contract)

class GuestHomeError(Exception):
    """What the guest's start script would fail at; nothing is mounted."""


@dataclass(frozen=True)
class GuestHome:
    """A home the guest mounts: ``source`` (the image's folder or the share's) at ``target``.
    ``image_id`` is set for a volume (formatted at first use, handed to ``owner``)."""
    source: Path
    target: str
    image_id: int | None = None
    owner: str = ""


def guest_home(context: dict[str, str], disks: list[dict[str, str]], *, image_kind: str,
               image_folder: Callable[[int], Path], shared: list[tuple[str, Path]],
               real: bool = True) -> GuestHome | None:
    """The home the guest's START_SCRIPT would mount, from the VM's CONTEXT and DISKs (see the
    module docstring); None when nothing would be mounted. Raises :class:`GuestHomeError`.
    ``real=False`` (a :class:`FakeHost`): the machine's folders are not looked at."""
    home = context.get("NEBULAHUB_HOME", "")
    script = context.get("START_SCRIPT_BASE64") or context.get("START_SCRIPT")
    if image_kind != ONE_CONTEXT or not home or not script:
        return None
    if not home.startswith("/") or (real and not os.path.isdir(home)):
        raise GuestHomeError(f"NEBULAHUB_HOME {home!r} is not an existing absolute directory "
                             "of the test machine (the double creates none)")
    if context.get("NEBULAHUB_HOME_DISK"):
        target = context["NEBULAHUB_HOME_DISK"]
        disk = next((d for d in disks if d.get("TARGET") == target), None)
        if disk is None:
            raise GuestHomeError(f"no disk /dev/{target} appeared (NEBULAHUB_HOME_DISK)")
        if not disk.get("IMAGE_ID"):
            raise GuestHomeError(f"disk {target} is volatile: the double mounts image disks "
                                 "only")
        return GuestHome(image_folder(int(disk["IMAGE_ID"])), home, int(disk["IMAGE_ID"]),
                         context.get("USERNAME", ""))
    if context.get("NEBULAHUB_HOME_FSTAB"):
        fields = context["NEBULAHUB_HOME_FSTAB"].split()
        if len(fields) < 3:
            raise GuestHomeError("NEBULAHUB_HOME_FSTAB is not an fstab line")
        source, mount_point = fields[0], fields[1]
        if mount_point.rstrip("/") != home.rstrip("/"):
            raise GuestHomeError(f"mount {home}: the fstab line mounts {mount_point}, "
                                 f"not {home}")
        for prefix, local_dir in shared:
            if source == prefix or source.startswith(prefix.rstrip("/") + "/"):
                folder = local_dir / source[len(prefix):].strip("/")
                if real and not folder.is_dir():
                    raise GuestHomeError(f"mounting {source} failed: no such directory on the "
                                         f"share (the double's {folder})")
                return GuestHome(folder, home)
        raise GuestHomeError(f"mounting {source} failed: no shared filesystem of the double "
                             "serves it (OneDouble.shared_filesystem)")
    return None


def prepare_home(home: GuestHome) -> None:
    """What the script does on the guest before and after mounting a volume: format a blank
    one (a folder with ``lost+found``, root's, 0700, as mkfs.ext4 leaves), then hand the
    mounted home to the login user with mode 0700 (every boot, as the script does)."""
    if home.image_id is None:
        return
    if not home.source.is_dir():
        home.source.mkdir(mode=0o755, parents=True)
        (home.source / "lost+found").mkdir(mode=0o700)
    if home.owner:
        try:
            pw = pwd.getpwnam(home.owner)
        except KeyError:
            raise GuestHomeError(f"chown {home.owner}: no such user (USERNAME)") from None
        os.chown(home.source, pw.pw_uid, pw.pw_gid)
    os.chmod(home.source, 0o700)


def mount_home(host, home: GuestHome | None) -> None:
    """Bind-mount the home in the host's own mount namespace (``[]`` without a home)."""
    mounts = [(str(home.source), home.target)] if home else []
    if hasattr(host, "set_mounts"):
        host.set_mounts(mounts)

"""Users' homes on OpenNebula VMs: a persistent volume per user (and named server), or a
directory on a filesystem the site already shares (NFS, CephFS).

Without either, a user's files would go with every VM. The volume is an empty persistent
DATABLOCK image created at the first spawn, tagged with the hub id, the user and the server, and
attached to every later VM of that server; it is never deleted with a VM. OpenNebula lets one VM
at a time use a persistent image, so a spawn whose previous VM is still shutting down waits for
it (and says so) instead of failing. The guest formats it at first use and mounts it at the login
user's home (the hub's start script in the VM's context); the shared-filesystem mode mounts the
user's directory there instead. Neither puts a secret into the context.
"""
from __future__ import annotations

import asyncio
import base64
import os
import pwd
import time

from opennebula import TAG_HUB_ID, TAG_SERVER, TAG_USER, OpenNebulaError

from ..errors import CapacityError, ConfigError, MachineError
from .cloud_errors import cloud_error

TAG_KIND = "NEBULAHUB_KIND"  # "home" on a user's home volume
TAG_RESIZE = "NEBULAHUB_RESIZE_MB"  # a size an admin asked for, applied at the next attach

# What the guest runs (one-context START_SCRIPT): format the volume at first use, mount it at
# the home, hand it to the login user. Values come from the context, never secrets.
VOLUME_SCRIPT = """#!/bin/sh
set -e
. /run/one-context/one_env 2>/dev/null || true
dev="/dev/$NEBULAHUB_HOME_DISK"; home="$NEBULAHUB_HOME"; user="$USERNAME"
for i in $(seq 60); do [ -b "$dev" ] && break; sleep 1; done
blkid "$dev" >/dev/null 2>&1 || mkfs.ext4 -q -L nebulahub-home "$dev"
mkdir -p "$home"
mountpoint -q "$home" || mount "$dev" "$home"
chown "$user:" "$home"; chmod 700 "$home"
"""
SHARED_SCRIPT = """#!/bin/sh
set -e
. /run/one-context/one_env 2>/dev/null || true
home="$NEBULAHUB_HOME"
mkdir -p "$home"
grep -qF "$NEBULAHUB_HOME_FSTAB" /etc/fstab || echo "$NEBULAHUB_HOME_FSTAB" >> /etc/fstab
mountpoint -q "$home" || mount "$home"
"""
_SECRET_WORDS = ("password", "passwd", "secret", "credentials=", "cred=", "token", "key=")


def script_b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class HomeStorage:
    """The home mode of one :class:`~machines.providers.opennebula.OpenNebulaProvider`."""

    def __init__(self, provider):
        self.p = provider

    @property
    def mode(self) -> str:
        return self.p.home_storage

    def home_path(self) -> str:
        return f"/home/{self.p.ssh_user}"

    # ---- the volume of a user's server ---------------------------------------------------

    def volume_tags(self, user: str, server: str) -> dict[str, str]:
        return {TAG_HUB_ID: self.p.hub_id, TAG_USER: user, TAG_SERVER: server,
                TAG_KIND: "home"}

    async def find_volume(self, user: str, server: str):
        try:
            volumes = await self.p.client.list_volumes(self.p.hub_id)
        except OpenNebulaError as e:
            raise cloud_error(e, "looking for your files' volume") from None
        want = self.volume_tags(user, server)
        mine = [v for v in volumes if all(v.tags.get(k) == val for k, val in want.items())]
        return min(mine, key=lambda v: v.id) if mine else None

    async def check_room(self, user: str, server: str) -> None:
        """Refuse, before any VM exists, a first volume that does not fit the storage quota."""
        if self.mode != "volume" or await self.find_volume(user, server) is not None:
            return
        try:
            quota = await self.p.client.datastore_quota(self.p.volume_datastore_id)
        except OpenNebulaError as e:
            raise cloud_error(e, "reading your storage quota") from None
        problems = []
        if quota.size_mb.shortfall(self.p.volume_size_mb):
            problems.append(f"it needs {self.p.volume_size_mb} MB but only "
                            f"{quota.size_mb.free:g} MB of your storage quota are free")
        if quota.images.shortfall(1):
            problems.append(f"your storage quota allows {quota.images.limit:g} volumes, all used")
        if problems:
            raise CapacityError("There is no room for your files' volume: " + "; ".join(problems)
                                + ". Ask your admin for more storage.")

    async def volume_for(self, user: str, server: str, machine, report, persist):
        """The server's volume, created at its first spawn; ready to attach (waits while a
        previous VM still holds it). Recorded in ``machine`` as soon as it exists."""
        volume = await self.find_volume(user, server)
        if volume is None:
            await self.check_room(user, server)
            report(4, "Creating the volume that keeps your files")
            try:
                machine.volume_id = await self.p.client.allocate_volume(
                    name=f"nebulahub-home-{user}-{server or 'default'}",
                    size_mb=self.p.volume_size_mb, datastore_id=self.p.volume_datastore_id,
                    tags=self.volume_tags(user, server))
            except OpenNebulaError as e:
                    raise cloud_error(e, "to create the volume for your files") from None
            await persist()
        else:
            machine.volume_id = volume.id
            await persist()
        await self._wait_free(machine.volume_id, report)
        return machine.volume_id

    async def _wait_free(self, volume_id: int, report) -> None:
        deadline = time.monotonic() + self.p.volume_wait_timeout
        told = False
        while True:
            try:
                volume = await self.p.client.image_info(volume_id)
            except OpenNebulaError as e:
                    raise cloud_error(e, "reading your files' volume") from None
            if volume.ready:
                return
            if volume.state_name in ("ERROR", "DISABLED"):
                raise MachineError(f"Your files' volume (image {volume_id}) is "
                                   f"{volume.state_name.lower()}; ask your admin.",
                                   reason="volume")
            if time.monotonic() > deadline:
                raise MachineError(
                    f"Your files' volume was still in use after {self.p.volume_wait_timeout:.0f}"
                    " s (by your previous VM, which is shutting down); try again shortly.",
                    reason="volume")
            if not told and volume.in_use:
                report(4, "Waiting for your previous VM to release the volume with your files")
                told = True
            await asyncio.sleep(self.p.poll_interval)

    async def apply_pending_resize(self, machine) -> None:
        """An admin's resize, recorded while the volume was detached, applied now it is."""
        if machine.volume_id is None:
            return
        try:
            volume = await self.p.client.image_info(machine.volume_id)
            wanted = int(float(volume.tags.get(TAG_RESIZE, 0) or 0))
            if wanted > volume.size_mb:
                info = await self.p.client.vm_info(machine.vm_id)
                await self.p.client.resize_disk(machine.vm_id, info.disk_ids.get(
                    machine.volume_id, 1), wanted)
                await self.p.client.tag_image(machine.volume_id, {TAG_RESIZE: "0"})
        except OpenNebulaError as e:
            self.p.log.warning("Could not resize volume %s: %s", machine.volume_id, e)

    # ---- what the VM gets ------------------------------------------------------------------

    def context(self, user: str) -> dict[str, str]:
        """CONTEXT attributes mounting the home (no secret ever: refused)."""
        if self.mode == "volume":
            return {"NEBULAHUB_HOME_DISK": self.p.volume_target,
                    "NEBULAHUB_HOME": self.home_path(),
                    "START_SCRIPT_BASE64": script_b64(VOLUME_SCRIPT)}
        if self.mode == "shared":
            line = self.p.shared_home_fstab.format(username=user, home=self.home_path())
            if any(word in line.lower() for word in _SECRET_WORDS):
                raise ConfigError("OpenNebulaProvider.shared_home_fstab carries a secret; the "
                                  "context is readable by anyone who can read the VM: use a "
                                  "credentials file baked into the image instead.")
            return {"NEBULAHUB_HOME_FSTAB": line, "NEBULAHUB_HOME": self.home_path(),
                    "START_SCRIPT_BASE64": script_b64(SHARED_SCRIPT)}
        return {}

    def disks(self, machine) -> list[dict[str, str]]:
        if self.mode == "volume" and machine.volume_id is not None:
            return [{"IMAGE_ID": str(machine.volume_id), "TARGET": self.p.volume_target}]
        return []

    async def prepare_shared(self, user: str) -> None:
        """Create the user's directory on the shared filesystem (as the hub sees it)."""
        if self.mode != "shared":
            return
        if not self.p.shared_home_root or not self.p.shared_home_fstab:
            raise ConfigError("Shared homes need OpenNebulaProvider.shared_home_root (the "
                              "hub's view of the shared filesystem) and shared_home_fstab.")
        path = self.p.shared_home_root.format(username=user)
        uid, gid = self._owner()

        def make():
            os.makedirs(path, exist_ok=True)
            st = os.lstat(path)
            if st.st_uid != uid:
                os.chown(path, uid, gid)
            os.chmod(path, 0o700)

        await asyncio.to_thread(make)

    def _owner(self) -> tuple[int, int]:
        owner = self.p.shared_home_owner or self.p.ssh_user
        if ":" in owner:
            uid, _, gid = owner.partition(":")
            return int(uid), int(gid)
        pw = pwd.getpwnam(owner)
        return pw.pw_uid, pw.pw_gid

"""VM DISKs of the OpenNebula double: the images a VM's DISKs name, acquired at instantiate
and released at DONE, ``one.vm.diskresize``, and the guest's home on its host (what
NebulaHub's start script would mount). Behaves like oned 7.3.80 (OpenNebula/one at tag
release-7.3.80, commit a8b9b798; line numbers checked):

* VM DISKs: ``TemplateAPI::instantiate_helper`` (``src/rm/api/TemplateAPI.cc`` 354-364: the
  extra template is merged with ``Template::merge``, ``src/template/Template.cc`` 675-698, which
  erases every attribute of a name it brings: an extra DISK replaces all the template's DISKs;
  410-421: USE on each image). Images are acquired when the VM is inserted, i.e. at instantiate
  (``VirtualMachine::insert`` ``src/vm/VirtualMachine.cc`` 1146-1153,
  ``VirtualMachineDisks::get_images`` ``src/vm/VirtualMachineDisk.cc`` 863-1105,
  ``ImagePool::acquire_disk`` ``src/image/ImagePool.cc`` 252-422,
  ``ImageManager::acquire_image`` ``src/image/ImageManagerActions.cc`` 88-221): a persistent
  image in use is refused with ALLOCATE ``Error allocating a new virtual machine template. DISK
  1: Cannot acquire image 7, it is persistent and already in use`` (the VM id is not used up,
  ``PoolSQL::allocate``); a LOCKED image is taken and the VM waits in CLONING (VirtualMachine.cc
  1164-1167) until it is READY (``LifeCycleManager::trigger_disk_lock_success``,
  ``src/lcm/LifeCycleStates.cc`` 2298-2390). Disk attributes: ``Image::disk_attribute``
  (``src/image/Image.cc`` 555-790), ``Datastore::disk_attribute``
  (``src/datastore/Datastore.cc`` 98-160); targets: ``assign_disk_targets``
  (VirtualMachineDisk.cc 818-858, 1030-1080; the context disk is the last CD, DISK_ID = number
  of disks).
* Release: ``DispatchManager::free_vm_resources`` (``src/dm/DispatchManagerActions.cc``
  187-292), i.e. at DONE: ``VirtualMachineDisks::release_images`` (VirtualMachineDisk.cc
  1110-1162: a grown disk grows its image, ``ImageManager::set_image_size``
  ImageManagerActions.cc 1138-1170, only while USED_PERS), ``ImageManager::release_image``
  (226-331: USED_PERS -> READY, or ERROR when the VM failed: ``VirtualMachine::
  release_disk_images`` VirtualMachine.cc 3520-3537 counts a VM ending from ACTIVE in any LCM
  state but EPILOG, e.g. CLEANUP_DELETE after a BOOT_FAILURE, as failed).
* ``one.vm.diskresize``: ``VirtualMachineAPI::disk_resize`` (``src/rm/api/VirtualMachineAPI.cc``
  2124-2300; the size is an XML-RPC string, ``src/rm/xml-rpc/VirtualMachineXRPC.cc`` 306-317)
  and ``DispatchManager::disk_resize`` (DispatchManagerActions.cc 2198-2274: only POWEROFF,
  UNDEPLOYED or ACTIVE/RUNNING, else ACTION ``Could not resize disk for VM 5, wrong state
  PROLOG.``); the image owner's quota grows at once for a persistent disk
  (``VirtualMachineDisk::resize_quotas`` VirtualMachineDisk.cc 543-576); the image's SIZE grows
  when the resize ends if its TM links it in place (LN_TARGET NONE, ``trigger_disk_resize_
  success`` LifeCycleStates.cc 2407-2485), else when the VM releases it (release_images above;
  the default datastore's TM ``local`` copies it: LN_TARGET SYSTEM).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from xmlrpc.client import Fault

from tests.one_errors import ACTION, ALLOCATE, AUTHORIZATION, OneFault, not_authorized
from tests.one_hosts import GuestHomeError, guest_home, mount_home, prepare_home
from tests.one_images import (CDROM, DATABLOCK, IMAGE_ERROR, IMAGE_LOCKED, IMAGE_LOCKED_USED,
                              IMAGE_LOCKED_USED_PERS, IMAGE_READY, IMAGE_TYPES, IMAGE_USED,
                              IMAGE_USED_PERS, OS, Image, image_state_str)
from tests.one_vms import (ACTIVE, DISK_RESIZE, DISK_RESIZE_POWEROFF, DISK_RESIZE_UNDEPLOYED,
                           EPILOG, LCM_INIT, POWEROFF, RUNNING, UNDEPLOYED, User, Vm, state_str)


class VmDisks:
    """The VM-disk half of :class:`tests.one_double.OneDouble` (a mixin). Uses the double's
    ``_lock``, ``users``, ``vms``, ``images``, ``host_errors``, ``_shared``, ``image_dir``,
    ``_ds_quota_add``/``_ds_quota_del`` (``one_storage``) and the life cycle's ``_vm``,
    ``_drive``, ``_remember_templates``."""

    # ------------------------------------------------------------ VM disks

    def _authorize_disks(self, user: User, tmpl: dict[str, Any]) -> None:
        """USE on every image a DISK names (``VirtualMachineDisk::authorize``: an image that
        does not exist is left to the acquisition)."""
        for disk in _as_list(tmpl.get("DISK")):
            image = self._disk_image(disk, user)
            if image is not None and user.id != 0 and image.owner is not user \
                    and not image.public:
                raise OneFault(AUTHORIZATION, not_authorized("USE", "IMAGE", image.id))

    def _disk_image(self, disk: dict[str, str], user: User) -> Image | None:
        if disk.get("IMAGE_ID", "") != "":
            try:
                return self.images.get(int(disk["IMAGE_ID"]))
            except ValueError:
                return None
        if disk.get("IMAGE"):
            uid = int(disk["IMAGE_UID"]) if disk.get("IMAGE_UID") else next(
                (u.id for u in self.users.values() if u.name == disk.get("IMAGE_UNAME")),
                user.id)
            return next((i for i in self.images.values()
                         if i.owner.id == uid and i.name == disk["IMAGE"]), None)
        return None

    def _acquire_disks(self, vm_id: int, user: User, tmpl: dict[str, Any]
                       ) -> tuple[list[dict[str, str]], bool, dict[str, str]]:
        """``VirtualMachineDisks::get_images``: the VM's DISKs as oned builds them, whether
        one waits for a LOCKED image (CLONING), and the context disk's DISK_ID/TARGET.
        Raises ALLOCATE (every image taken is given back)."""
        acquired: list[Image] = []
        disks: list[dict[str, str]] = []
        queues: dict[str, list[tuple[str, dict]]] = {"os": [], "cd": [], "data": []}
        used_targets: set[str] = set()
        try:
            for disk_id, asked in enumerate(_as_list(tmpl.get("DISK"))):
                disk = {k: str(v) for k, v in asked.items()}
                image = self._acquire_one(vm_id, user, disk, disk_id)
                if image is not None:
                    acquired.append(image)
                disk["DISK_ID"] = str(disk_id)
                disks.append(disk)
                prefix = disk.get("DEV_PREFIX", "sd")
                if disk.get("TARGET"):
                    if disk["TARGET"] in used_targets:
                        raise OneFault(ALLOCATE, "Two disks have defined the same target "
                                                 f"{disk['TARGET']}")
                    used_targets.add(disk["TARGET"])
                elif image is not None and image.type == OS and not queues["os"]:
                    queues["os"].append((prefix, disk))
                elif image is not None and image.type == CDROM:
                    queues["cd"].append((prefix or "hd", disk))
                else:
                    queues["data"].append((prefix, disk))
        except OneFault:
            for image in acquired:
                self._release_image(vm_id, image, failed=False)
            raise
        context: dict[str, str] = {}
        _assign_targets(queues["os"], used_targets)
        if isinstance(tmpl.get("CONTEXT"), dict):
            ctx = tmpl["CONTEXT"]
            context = {"DISK_ID": str(len(disks)), "TARGET": ctx.get("TARGET", "")}
            if not context["TARGET"]:
                queues["cd"].append((ctx.get("DEV_PREFIX") or "hd", context))
        _assign_targets(queues["cd"], used_targets)
        _assign_targets(queues["data"], used_targets)
        return disks, any(d.get("CLONING") == "YES" for d in disks), context

    def _acquire_one(self, vm_id: int, user: User, disk: dict[str, str], disk_id: int
                     ) -> Image | None:
        """``ImagePool::acquire_disk`` for one DISK (filled in place); None for a volatile
        disk. Raises ALLOCATE ``DISK <id>: <why>``."""
        def refuse(why: str):
            raise OneFault(ALLOCATE, f"DISK {disk_id}: {why}")

        if disk.get("IMAGE_ID", "") == "" and not disk.get("IMAGE"):
            kind = disk.get("TYPE", "").upper()
            if kind not in ("SWAP", "FS"):
                refuse(f"Unknown disk type {kind}")
            if not disk.get("SIZE", "").isdigit() or int(disk["SIZE"]) <= 0:
                refuse("SIZE attribute must be a positive integer value.")
            disk.setdefault("DEV_PREFIX", "sd")
            return None
        image = self._disk_image(disk, user)
        if image is None:
            if disk.get("IMAGE_ID", "") != "":
                refuse(f"Image with ID: {disk['IMAGE_ID']} does not exist")
            refuse(f"User {user.id} does not own an image with name: {disk['IMAGE']} . Set "
                   "IMAGE_UNAME or IMAGE_UID of owner in DISK.")
        why = self._acquire_image(vm_id, image)
        if why:
            refuse(why)
        size = disk.get("SIZE")
        if size is not None and (not size.isdigit() or int(size) != image.size_mb):
            problem = None
            if image.persistent:
                problem = f"SIZE attribute is not supported for persistent image [{image.id}]."
            elif size.isdigit() and int(size) < image.size_mb:
                problem = (f"SIZE of {size}MB is less than the image [{image.id}] size of "
                           f"{image.size_mb}MB.")
            if problem:
                self._release_image(vm_id, image, failed=False)
                refuse(problem)
        ds = image.datastore
        disk.update({"IMAGE": image.name, "IMAGE_ID": str(image.id), "SOURCE": image.source,
                     "ORIGINAL_SIZE": str(image.size_mb), "DISK_SNAPSHOT_TOTAL_SIZE": "0",
                     "DRIVER": image.format, "FORMAT": image.format,
                     "IMAGE_STATE": str(image.state), "READONLY": disk.get("READONLY", "NO"),
                     "TYPE": "FILE", "DATASTORE": ds.name, "DATASTORE_ID": str(ds.id),
                     "TM_MAD": ds.tm_mad, "CLUSTER_ID": "0", "CLONE_TARGET": ds.clone_target,
                     "LN_TARGET": ds.ln_target})
        disk.setdefault("SIZE", str(image.size_mb))
        disk.setdefault("DEV_PREFIX", str(image.template.get("DEV_PREFIX") or "sd"))
        if image.persistent:
            disk.update({"PERSISTENT": "YES", "CLONE": "NO", "SAVE": "YES"})
        else:
            disk.update({"CLONE": "YES", "SAVE": "NO"})
        if image.state in (IMAGE_LOCKED, IMAGE_LOCKED_USED, IMAGE_LOCKED_USED_PERS):
            disk["CLONING"] = "YES"
        return image

    def _acquire_image(self, vm_id: int, image: Image) -> str | None:
        """``ImageManager::acquire_image`` (not an attach): None, or why not."""
        if image.type not in (OS, DATABLOCK, CDROM):
            return (f"Image {image.id} ({image.name}) of type "
                    f"{next(k for k, v in IMAGE_TYPES.items() if v == image.type)} cannot be "
                    "used as DISK.")
        shareable = str(image.template.get("PERSISTENT_TYPE", "")).upper() == "SHAREABLE"
        state = image.state
        if state in (IMAGE_USED_PERS, IMAGE_LOCKED_USED_PERS) and not shareable:
            return f"Cannot acquire image {image.id}, it is persistent and already in use"
        if state == IMAGE_READY:
            image.set_state(IMAGE_USED_PERS if image.persistent else IMAGE_USED)
        elif state == IMAGE_LOCKED:
            image.set_state(IMAGE_LOCKED_USED_PERS if image.persistent else IMAGE_LOCKED_USED)
        elif state not in (IMAGE_USED, IMAGE_USED_PERS, IMAGE_LOCKED_USED,
                           IMAGE_LOCKED_USED_PERS):
            return f"Cannot acquire image {image.id}, it is in state: {image_state_str(state)}"
        image.vm_ids.add(vm_id)
        return None

    def _release_image(self, vm_id: int, image: Image, failed: bool) -> None:
        """``ImageManager::release_image``."""
        if vm_id not in image.vm_ids:
            return
        image.vm_ids.discard(vm_id)
        if image.state in (IMAGE_USED_PERS, IMAGE_LOCKED_USED_PERS):
            image.modtime = int(time.time())
            if failed:
                image.set_state(IMAGE_ERROR)
            elif not image.vm_ids:
                image.set_state(IMAGE_READY if image.state == IMAGE_USED_PERS
                                else IMAGE_LOCKED)
        elif image.state in (IMAGE_USED, IMAGE_LOCKED_USED) and not image.vm_ids:
            image.set_state(IMAGE_READY if image.state == IMAGE_USED else IMAGE_LOCKED)

    def _release_disks(self, vm: Vm) -> None:
        """``VirtualMachine::release_disk_images`` at DONE (``vm`` still in its last state)."""
        failed = (vm.state == ACTIVE and vm.lcm_state != EPILOG)
        for disk in vm.disks:
            image = self.images.get(int(disk["IMAGE_ID"])) if disk.get("IMAGE_ID") else None
            if image is None:
                continue
            if int(disk.get("SIZE", 0)) > int(disk.get("ORIGINAL_SIZE", 0)):
                self._set_image_size(image, int(disk["SIZE"]))
            self._release_image(vm.id, image, failed)

    def _set_image_size(self, image: Image, size: int) -> None:
        if image.type in (OS, DATABLOCK) and image.state == IMAGE_USED_PERS:
            image.size_mb = size

    # ------------------------------------------------------------ one.vm.diskresize

    def _rpc_vm_diskresize(self, user, vm_id, disk_id, size):
        if not isinstance(size, str):
            # xmlrpc-c's paramList::getString (param_list.cpp): an XML-RPC fault, not an answer
            raise Fault(-501, "Parameter that is supposed to be a string is not")
        try:
            new_size = int(size.strip())
        except ValueError:
            raise OneFault(ACTION, "Disk SIZE is not a valid integer") from None
        with self._lock:
            vm = self._vm(vm_id, user, "MANAGE")
            disk = next((d for d in vm.disks if d.get("DISK_ID") == str(disk_id)), None)
            if disk is None:
                raise OneFault(ACTION, "VM disk does not exist")
            current = int(disk.get("SIZE", 0))
            if new_size <= current:
                raise OneFault(ACTION, "New disk size has to be greater than current one")
            image = self.images.get(int(disk["IMAGE_ID"])) if disk.get("IMAGE_ID") else None
            target = disk.get("LN_TARGET") if disk.get("CLONE") == "NO" else \
                disk.get("CLONE_TARGET")
            charged = image is not None and (image.persistent or target == "NONE")
            if charged:
                if user.id != 0 and image.owner is not user and not image.public:
                    raise OneFault(AUTHORIZATION, not_authorized("USE", "IMAGE", image.id))
                refusal = self._ds_quota_add(image.owner, image.datastore.id,
                                             new_size - current, 0)
                if refusal:
                    raise OneFault(AUTHORIZATION, refusal)
            allowed = {(POWEROFF, LCM_INIT): DISK_RESIZE_POWEROFF,
                       (UNDEPLOYED, LCM_INIT): DISK_RESIZE_UNDEPLOYED,
                       (ACTIVE, RUNNING): DISK_RESIZE}
            lcm = allowed.get((vm.state, vm.lcm_state))
            if lcm is None:
                if charged:
                    self._ds_quota_del(image.owner, image.datastore.id, new_size - current, 0)
                raise OneFault(ACTION, f"Could not resize disk for VM {vm_id}, wrong state "
                                       f"{state_str(vm.state, vm.lcm_state)}.")
            disk.update({"SIZE_PREV": str(current), "SIZE": str(new_size), "RESIZE": "YES"})
            vm.set_state(ACTIVE, lcm)
            self._remember_templates(vm)
            self._drive(vm)
        return vm_id

    def _disk_resize_done(self, vm: Vm) -> None:
        """``trigger_disk_resize_success``: the VM is back where it was; a persistent image
        linked in place (LN_TARGET NONE) grows now."""
        for disk in vm.disks:
            if disk.pop("RESIZE", None) is None:
                continue
            disk.pop("SIZE_PREV", None)
            image = self.images.get(int(disk["IMAGE_ID"])) if disk.get("IMAGE_ID") else None
            if (image is not None and disk.get("PERSISTENT") == "YES"
                    and disk.get("LN_TARGET") == "NONE"):
                self._set_image_size(image, int(disk["SIZE"]))

    # ------------------------------------------------------------ the guest's home

    def _mount_guest_home(self, vm: Vm) -> None:
        """Before the VM's sshd starts (the guest booting): what its START_SCRIPT would mount
        at the home, in the host's own mount namespace (see ``one_hosts``)."""
        context = vm.template.get("CONTEXT") if isinstance(vm.template.get("CONTEXT"),
                                                            dict) else {}
        real = hasattr(vm.host, "netns")   # a namespace host, not a recording FakeHost
        try:
            home = guest_home(context, vm.disks, image_kind=vm.image_kind,
                              image_folder=lambda iid: Path(self.image_dir(iid)),
                              shared=list(self._shared), real=real)
            if home is not None and real:
                prepare_home(home)
        except (GuestHomeError, OSError) as exc:
            self.host_errors.append(f"vm {vm.id}: home: {exc}")
            home = None
        try:
            mount_home(vm.host, home)
        except Exception as exc:  # noqa: BLE001 - a test inspects host_errors
            self.host_errors.append(f"vm {vm.id}: mount home: {exc}")


def _as_list(value: Any) -> list[dict[str, str]]:
    items = value if isinstance(value, list) else [value] if value is not None else []
    return [i for i in items if isinstance(i, dict)]


def _assign_targets(queue: list[tuple[str, dict]], used: set[str]) -> None:
    """``assign_disk_targets``: the prefix and the first free letter (a..z, aa...)."""
    for prefix, disk in queue:
        index = 0
        while True:
            letters, n = "", index
            while True:
                letters = chr(ord("a") + n % 26) + letters
                n = n // 26 - 1
                if n < 0:
                    break
            target = prefix + letters
            index += 1
            if target not in used:
                break
        disk["TARGET"] = target
        used.add(target)

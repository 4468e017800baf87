"""Storage of the OpenNebula double: ``one.image.*``, ``one.imagepool.info``, datastore quota,
the images of VM DISKs (acquired at instantiate, released at DONE), ``one.vm.diskresize``, and
the guest's home on its host. Behaves like oned 7.3.80 (OpenNebula/one at tag release-7.3.80,
commit a8b9b798; line numbers checked):

* ``one.image.allocate``: ``ImageAllocateAPI::allocate`` (``src/rm/api/ImageAPI.cc`` 692-976):
  a template that does not parse is INTERNAL (742-747); no datastore NO_EXISTS ``Error getting
  datastore [7].`` (777-783); a SYSTEM/BACKUP datastore ALLOCATE (754-759); SIZE by
  ``ImageManager::stat_image`` (``src/image/ImageManagerActions.cc`` 981-1015: a DATABLOCK
  without SOURCE/PATH needs an integer SIZE, else INTERNAL ``Cannot parse image SIZE: Wrong
  number or missing SIZE attribute.``); ``Not enough space in datastore`` ACTION (871-876);
  SOURCE is restricted for non-admins (892-900, oned.conf ``IMAGE_RESTRICTED_ATTR``); the
  datastore quota (916-921, AUTHORIZATION ``User [2] : user [2] limit of 1024 reached for
  SIZE quota in DATASTORE with ID: 1.``: ``SharedAPI::user_quota_authorization`` prefixes
  ``user [uid] ``); persistent-only datastores (925-932); then ``ImagePool::allocate``
  (``src/image/ImagePool.cc`` 78-222: NAME checks and ``NAME is already taken by IMAGE 5.``,
  ALLOCATE). The image is LOCKED until the datastore's mkfs answers
  (``ImageManager::register_image`` ImageManagerActions.cc 861-881, ``_mkfs``
  ``src/image/ImageManagerProtocol.cc`` 256-330: READY; failure 373-429: ERROR with
  ``<time> : Error creating datablock``).
* ``one.image.delete``: ``ImageAPI::del_image`` (ImageAPI.cc 29-69: a LOCKED* image needs
  ``force``, else INTERNAL ``Image locked, use --force flag ...`` with the id; force needs ADMIN),
  ``ImageManager::delete_image`` (ImageManagerActions.cc 462-668: in use -> ``There are N VMs
  using it.``, which ``SharedAPI::delete_object`` (``src/rm/api/SharedAPI.cc`` 1565-1601) turns
  into ACTION ``Cannot delete image. There are 1 VMs using it.``); the image goes DELETE and is
  dropped when the datastore answers (``_rm`` ImageManagerProtocol.cc 433-525), which frees the
  quota (line 515).
* ``one.image.info``/``update``/``enable``: ``SharedAPI::info`` 177-219, ``update`` 223-271
  (``Cannot update template. ...`` INTERNAL), ``ImageManager::enable_image``
  (ImageManagerActions.cc 393-457, ``Image::set_state_unlock`` ``src/image/Image.cc`` 1080-1136).
* VM DISKs: ``TemplateAPI::instantiate_helper`` (``src/rm/api/TemplateAPI.cc`` 354-364: the
  extra template is merged with ``Template::merge``, ``src/template/Template.cc`` 675-698, which
  erases every attribute of a name it brings: an extra DISK replaces all the template's DISKs;
  410-421: USE on each image). Images are acquired when the VM is inserted, i.e. at
  instantiate (``VirtualMachine::insert`` ``src/vm/VirtualMachine.cc`` 1146-1153,
  ``VirtualMachineDisks::get_images`` ``src/vm/VirtualMachineDisk.cc`` 863-1105,
  ``ImagePool::acquire_disk`` ``ImagePool.cc`` 252-410, ``ImageManager::acquire_image``
  ImageManagerActions.cc 88-221): a persistent image in use is refused with ALLOCATE
  ``Error allocating a new virtual machine template. DISK 1: Cannot acquire image 7, it is
  persistent and already in use`` (the VM id is not used up, ``PoolSQL::allocate``); a LOCKED
  image is taken and the VM waits in CLONING (VirtualMachine.cc 1164-1167) until it is READY
  (``LifeCycleManager::trigger_disk_lock_success``, ``src/lcm/LifeCycleStates.cc`` 2298-2390).
  Disk attributes: ``Image::disk_attribute`` (Image.cc 555-790), ``Datastore::disk_attribute``
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

import hashlib
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from xmlrpc.client import Fault

from tests.one_errors import (ACTION, ALLOCATE, AUTHORIZATION, INTERNAL, NO_EXISTS, XML_RPC_API,
                              OneFault, not_authorized)
from tests.one_hosts import GuestHomeError, guest_home, mount_home, prepare_home
from tests.one_images import (BACKUP_DS, CDROM, DATABLOCK, DATASTORE_TYPES, FILE_DS,
                              IMAGE_DELETE, IMAGE_DISABLED, IMAGE_ERROR, IMAGE_LOCKED,
                              IMAGE_LOCKED_USED, IMAGE_LOCKED_USED_PERS, IMAGE_READY,
                              IMAGE_STATE_NAMES, IMAGE_TYPES, IMAGE_USED, IMAGE_USED_PERS, OS,
                              SYSTEM_DS, TM_TARGETS, Datastore, DatastoreQuota, Image,
                              effective_limit, image_state_str, image_xml)
from tests.one_vms import (ACTIVE, CLONING, CLONING_FAILURE, DISK_RESIZE, DISK_RESIZE_POWEROFF,
                           DISK_RESIZE_UNDEPLOYED, EPILOG, HOLD, LCM_INIT, PENDING, POWEROFF,
                           RUNNING, UNDEPLOYED, User, Vm, state_str)
from tests.one_xml import (DEFAULT, UNLIMITED, TemplateSyntaxError, first, merge_template,
                           parse_template)

_INVALID_NAME_CHARS = "&|:\\\";/'#{}$<>\t\n\v\f\r"          # PoolObjectSQL.cc 27
_TAKEN_BY_INSERT = ("NAME", "TYPE", "PERSISTENT", "SIZE", "FS", "PATH", "SOURCE", "FORMAT",
                    "TM_MAD", "DRIVER")                       # Image::insert, Image.cc 100-176
_DS_METRICS = ("SIZE", "IMAGES")                              # QuotaDatastore.cc 25


class ImageStore:
    """The storage half of :class:`tests.one_double.OneDouble` (a mixin). Uses the double's
    ``_lock``, ``users``, ``vms``, ``step_seconds``, ``_stopped``, ``host_errors`` and
    ``_image`` (the VM image kind), and the :class:`tests.one_vms.VmLifecycle` half."""

    # ------------------------------------------------------------ set-up

    def _init_storage(self, images_dir: str | Path | None) -> None:
        self.datastores: dict[int, Datastore] = {
            0: Datastore(0, "system", SYSTEM_DS), 1: Datastore(1, "default"),
            2: Datastore(2, "files", FILE_DS)}
        self.images: dict[int, Image] = {}
        self._next_image_id = 0
        self._next_ds_id = 100                        # DatastorePool.cc 164-165
        self._image_delay = 0.0
        self._failing_mkfs: list[str] = []
        self._shared: list[tuple[str, Path]] = []
        self._images_dir = Path(images_dir) if images_dir else None
        self._own_images_dir = images_dir is None
        self._image_timers: list[threading.Timer] = []
        admin = self.users.get("oneadmin") or User(0, "oneadmin", "", gid=0, gname="oneadmin")
        os_image = Image(self._take_image_id(), admin, "nebulahub-os", OS, False, 2048,
                         self.datastores[1], {"DEV_PREFIX": "sd"}, state=IMAGE_READY,
                         prev_state=IMAGE_READY, public=True)
        os_image.source = _source(os_image)
        self.images[os_image.id] = os_image

    def _stop_storage(self) -> None:
        """Cancel image timers; remove the image folders if the double made their parent."""
        with self._lock:
            for timer in self._image_timers:
                timer.cancel()
            self._image_timers.clear()
        if self._own_images_dir and self._images_dir is not None:
            shutil.rmtree(self._images_dir, ignore_errors=True)
            self._images_dir = None

    def _take_image_id(self) -> int:
        self._next_image_id += 1
        return self._next_image_id - 1

    # ------------------------------------------------------------ knobs

    def add_datastore(self, name: str, ds_type: str = "IMAGE_DS", tm_mad: str = "local",
                      free_mb: float | None = 1024 * 1024, persistent_only: bool = False) -> int:
        """Add a datastore (ids from 100, as oned); return its id. ``tm_mad`` one of
        ``local``/``ssh`` (persistent images are copied to the host and back: the image's SIZE
        grows when the VM releases it) or ``shared``/``qcow2``/``ceph`` (linked in place: at
        the end of the resize). ``free_mb`` None: no capacity check."""
        if ds_type not in DATASTORE_TYPES or tm_mad not in TM_TARGETS:
            raise ValueError(f"ds_type is one of {sorted(DATASTORE_TYPES)}, tm_mad one of "
                             f"{sorted(TM_TARGETS)}")
        with self._lock:
            ds_id, self._next_ds_id = self._next_ds_id, self._next_ds_id + 1
            self.datastores[ds_id] = Datastore(ds_id, name, DATASTORE_TYPES[ds_type], tm_mad,
                                               free_mb, bool(persistent_only))
            return ds_id

    def set_datastore_free(self, datastore_id: int, free_mb: float | None) -> None:
        """What monitoring reports free on a datastore (None: no capacity check)."""
        with self._lock:
            self.datastores[int(datastore_id)].free_mb = free_mb

    def set_datastore_quota(self, user: str, datastore_id: int, images: float | None = None,
                            size_mb: float | None = None) -> None:
        """Set ``user``'s quota on a datastore: IMAGES and SIZE (MB) limits, -1 default, -2
        unlimited, None leaves one as it is. The entry is made if missing (oned keeps entries
        in the order they were made)."""
        with self._lock:
            u = self.users[user]
            entry = self._ds_entry(u, int(datastore_id), create=True)
            for metric, value in (("IMAGES", images), ("SIZE", size_mb)):
                if value is not None:
                    entry.limits[metric] = float(value)
            self._ds_cleanup(u, entry)

    def image_create_delay(self, seconds: float) -> None:
        """Extra time new images stay LOCKED (the datastore creating them) before READY."""
        with self._lock:
            self._image_delay = float(seconds)

    def fail_next_image_create(self, message: str = "") -> None:
        """The next image's mkfs fails: it goes to ERROR with oned's ``Error creating
        datablock`` (and ``message``) in its TEMPLATE/ERROR."""
        with self._lock:
            self._failing_mkfs.append(str(message))

    def set_image_state(self, image_id: int, state: int) -> None:
        """Put an image into any STATE (e.g. DISABLED or ERROR, as an admin or a failed
        datastore operation would); it stays there until an API call moves it."""
        with self._lock:
            self.images[int(image_id)].set_state(int(state))

    def shared_filesystem(self, source_prefix: str, local_dir: str) -> None:
        """A site's shared filesystem (NFS, CephFS) as guests see it: an fstab source
        ``<source_prefix>/<rest>`` is the folder ``<local_dir>/<rest>`` of this machine."""
        with self._lock:
            self._shared.append((str(source_prefix).rstrip("/"), Path(local_dir)))

    def image_dir(self, image_id: int) -> str:
        """The folder holding an image's content (made when a guest first formats it)."""
        with self._lock:
            if self._images_dir is None:
                self._images_dir = Path(tempfile.mkdtemp(prefix="nebulahub-one-images-"))
            return str(self._images_dir / f"image-{int(image_id)}")

    # ------------------------------------------------------------ one.image.* / imagepool

    def _image_of(self, iid: int, user: User, op: str) -> Image:
        image = self.images.get(iid)
        if image is None:
            raise OneFault(NO_EXISTS, resp_id=iid)
        if user.id != 0 and image.owner is not user and not (op == "USE" and image.public):
            raise OneFault(AUTHORIZATION, not_authorized(op, "IMAGE", iid))
        return image

    def _rpc_image_allocate(self, user, template, ds_id, skip_capacity_check=False):
        try:
            tmpl = parse_template(template)
        except TemplateSyntaxError as exc:
            raise OneFault(INTERNAL, str(exc)) from None
        with self._lock:
            ds = self.datastores.get(ds_id)
            if ds is None:
                raise OneFault(NO_EXISTS, resp_id=ds_id, obj="datastore")
            if ds.ds_type in (SYSTEM_DS, BACKUP_DS):
                raise OneFault(ALLOCATE, "New images can only be allocated in a files or image "
                                         "datastore.")
            kind = str(first(tmpl.get("TYPE", "")) or "OS").upper()
            if kind not in ("OS", "DATABLOCK") or tmpl.get("PATH") or tmpl.get("SOURCE"):
                raise OneFault(INTERNAL, "The OpenNebula double only creates empty OS or "
                                         "DATABLOCK images (no PATH, no SOURCE)")
            try:
                size = int(str(first(tmpl.get("SIZE", ""))).strip())
            except ValueError:
                raise OneFault(INTERNAL, "Cannot parse image SIZE: Wrong number or missing "
                                         "SIZE attribute.") from None
            check = ds.free_mb is not None and not (skip_capacity_check and user.id == 0)
            if check and size > ds.free_mb:
                raise OneFault(ACTION, "Not enough space in datastore")
            if user.id != 0 and "SOURCE" in tmpl:
                raise OneFault(AUTHORIZATION, "Template includes a restricted attribute SOURCE")
            refusal = self._ds_quota_add(user, ds.id, size, 1)
            if refusal:
                raise OneFault(AUTHORIZATION, refusal)
            persistent = str(first(tmpl.get("PERSISTENT", ""))).upper() == "YES"
            name = str(first(tmpl.get("NAME", "")))
            error = ("This Datastore only accepts persistent images."
                     if ds.persistent_only and not persistent else _name_error(name))
            taken = next((i.id for i in self.images.values()
                          if i.owner is user and i.name == name), None)
            if error is None and taken is not None:
                error = f"NAME is already taken by IMAGE {taken}."
            if error:
                self._ds_quota_del(user, ds.id, size, 1)
                raise OneFault(ALLOCATE, error)
            kept = {k: v for k, v in tmpl.items() if k not in _TAKEN_BY_INSERT}
            kept.setdefault("DEV_PREFIX", "sd")
            image = Image(self._take_image_id(), user, name, IMAGE_TYPES[kind], persistent,
                          size, ds, kept, fs=str(first(tmpl.get("FS", ""))))
            self.images[image.id] = image
            failure = self._failing_mkfs.pop(0) if self._failing_mkfs else None
            self._image_timer(image, self.step_seconds + self._image_delay,
                              self._mkfs_done, failure)
            return image.id

    def _mkfs_done(self, image: Image, failure: str | None) -> None:
        """The datastore's mkfs answered (``_mkfs``)."""
        effects: list = []
        if failure is not None:
            message = "Error creating datablock" + (f": {failure}" if failure else "")
            image.template["ERROR"] = f"{time.ctime()} : {message}"
            self._set_image_state(image, IMAGE_ERROR, effects)
        else:
            image.source = _source(image)
            if image.datastore.free_mb is not None:
                image.datastore.free_mb -= image.size_mb
            self._unlock_image(image, effects)
        return effects

    def _rpc_image_info(self, user, iid, decrypt=False):
        with self._lock:
            return image_xml(self._image_of(iid, user, "USE"))

    def _rpc_imagepool_info(self, user, who=-2, start=-1, end=-1):
        with self._lock:
            images = sorted(self.images.values(), key=lambda i: i.id)
            visible = [i for i in images if user.id == 0 or i.owner is user or i.public]
            if who == -3:
                visible = [i for i in visible if i.owner is user]
            elif who == -1:
                visible = [i for i in visible if i.owner is user or i.owner.gid == user.gid]
            elif who >= 0:
                visible = [i for i in visible if i.owner.id == who]
            if end < -1:   # pagination: start is the offset, -end the page size
                visible = visible[max(start, 0):max(start, 0) - end]
            else:
                visible = [i for i in visible
                           if (start < 0 or i.id >= start) and (end < 0 or i.id <= end)]
            return "<IMAGE_POOL>" + "".join(image_xml(i) for i in visible) + "</IMAGE_POOL>"

    def _rpc_image_update(self, user, iid, template, append=0):
        with self._lock:
            image = self._image_of(iid, user, "MANAGE")
            if int(append) not in (0, 1):
                raise OneFault(XML_RPC_API, "Wrong update type")
            try:
                new = parse_template(template)
            except TemplateSyntaxError as exc:
                raise OneFault(INTERNAL, f"Cannot update template. {exc}") from None
            if user.id != 0 and "SOURCE" in new:
                raise OneFault(INTERNAL, "Cannot update template. Template includes a "
                                         "restricted attribute SOURCE")
            image.template = merge_template(image.template, new) if append else new
            return iid

    def _rpc_image_enable(self, user, iid, enable):
        effects: list = []
        with self._lock:
            image = self._image_of(iid, user, "MANAGE")
            verb = "enable" if enable else "disable"
            if enable and image.state == IMAGE_DISABLED:
                self._set_image_state(image, IMAGE_READY, effects)
            elif enable and image.state == IMAGE_ERROR:
                image.template.pop("ERROR", None)
                self._unlock_image(image, effects)
            elif not enable and image.state in (IMAGE_READY, IMAGE_ERROR):
                self._set_image_state(image, IMAGE_DISABLED, effects)
            elif image.state != (IMAGE_READY if enable else IMAGE_DISABLED):
                raise OneFault(INTERNAL, f"Could not {verb} image: Image cannot be in state "
                                         f"{image_state_str(image.state)}.")
        self._run(effects)
        return iid

    def _rpc_image_delete(self, user, iid, force=False):
        with self._lock:
            image = self.images.get(iid)
            if image is None:
                raise OneFault(NO_EXISTS, resp_id=iid)
            locked = image.state in (IMAGE_LOCKED, IMAGE_LOCKED_USED, IMAGE_LOCKED_USED_PERS)
            if locked and not force:
                raise OneFault(INTERNAL, "Image locked, use --force flag to remove the image. "
                                         "Force delete may leave some files on Datastore", iid)
            self._image_of(iid, user, "ADMIN" if locked else "MANAGE")
            if image.state in (IMAGE_USED, IMAGE_USED_PERS, IMAGE_LOCKED_USED,
                               IMAGE_LOCKED_USED_PERS) or (image.state == IMAGE_READY
                                                           and image.running_vms):
                raise OneFault(ACTION, f"Cannot delete image. There are {image.running_vms} VMs "
                                       "using it.")
            image.generation += 1        # a pending mkfs answer finds the image gone
            if not image.source:         # nothing on the datastore yet: dropped at once
                self._drop_image(image)
            else:
                image.set_state(IMAGE_DELETE)
                self._image_timer(image, self.step_seconds, self._rm_done)
            return iid

    def _rm_done(self, image: Image) -> list:
        self._drop_image(image)
        if image.datastore.free_mb is not None:
            image.datastore.free_mb += image.size_mb
        return []

    def _drop_image(self, image: Image) -> None:
        """The image leaves the pool; its owner's quota and its folder are freed."""
        self.images.pop(image.id, None)
        self._ds_quota_del(image.owner, image.datastore.id, image.size_mb, 1)
        if self._images_dir is not None:
            shutil.rmtree(self._images_dir / f"image-{image.id}", ignore_errors=True)

    # ------------------------------------------------------------ image states

    def _image_timer(self, image: Image, delay: float, callback, *args) -> None:
        generation = image.generation

        def fire() -> None:
            with self._lock:
                if (self._stopped or image.generation != generation
                        or self.images.get(image.id) is not image):
                    return
                effects = callback(image, *args)
            self._run(effects or [])
        if self._stopped:
            return
        timer = threading.Timer(max(delay, 0.0), fire)
        timer.daemon = True
        self._image_timers.append(timer)
        self._image_timers[:] = [t for t in self._image_timers if t.is_alive() or t is timer]
        timer.start()

    def _set_image_state(self, image: Image, state: int, effects: list) -> None:
        """``Image::set_state``: ERROR from LOCKED_USED* fails the VMs waiting for it."""
        waiting = image.state in (IMAGE_LOCKED_USED, IMAGE_LOCKED_USED_PERS)
        image.set_state(state)
        if state == IMAGE_ERROR and waiting:
            for vm_id in sorted(image.vm_ids):
                vm = self.vms.get(vm_id)
                if vm is not None and vm.state == CLONING:
                    vm.set_state(CLONING_FAILURE, LCM_INIT)
                    self._remember_templates(vm)

    def _unlock_image(self, image: Image, effects: list) -> None:
        """``Image::set_state_unlock``: LOCKED -> READY, LOCKED_USED(_PERS)/ERROR -> in use
        (READY if no VM), and the VMs waiting in CLONING go on."""
        if image.state == IMAGE_LOCKED or (image.state == IMAGE_ERROR and not image.vm_ids):
            image.set_state(IMAGE_READY)
            return
        if image.state in (IMAGE_LOCKED_USED, IMAGE_LOCKED_USED_PERS, IMAGE_ERROR):
            image.set_state(IMAGE_USED_PERS if image.persistent else IMAGE_USED)
            for vm_id in sorted(image.vm_ids):
                vm = self.vms.get(vm_id)
                if vm is not None and vm.state in (CLONING, CLONING_FAILURE):
                    self._cloning_done(vm)

    def _cloning_done(self, vm: Vm) -> None:
        """``trigger_disk_lock_success``: once none of its images is locked, the VM is
        PENDING (HOLD if it was asked on hold)."""
        for disk in vm.disks:
            image = self.images.get(int(disk.get("IMAGE_ID", -1) or -1))
            if image is not None and image.state not in (IMAGE_USED, IMAGE_USED_PERS):
                return
            disk.pop("CLONING", None)
        vm.set_state(HOLD if vm.on_hold else PENDING, LCM_INIT)
        self._remember_templates(vm)
        self._drive(vm)

    # ------------------------------------------------------------ datastore quota

    def _ds_entry(self, user: User, ds_id: int, create: bool) -> DatastoreQuota | None:
        entry = next((e for e in user.ds_quota if e.ds_id == ds_id), None)
        if entry is None and create:
            entry = DatastoreQuota(ds_id)
            user.ds_quota.append(entry)
        return entry

    def _ds_cleanup(self, user: User, entry: DatastoreQuota) -> None:
        """Quota.cc 339-403: an entry at -1 limits with nothing used goes."""
        if (all(entry.limits[m] == DEFAULT for m in _DS_METRICS)
                and not any(entry.used[m] for m in _DS_METRICS)):
            user.ds_quota.remove(entry)

    def _ds_quota_add(self, user: User, ds_id: int, size: float, images: float) -> str | None:
        """Quota::check_quota for a DATASTORE request: oned's refusal text, or None and the
        usage charged. oneadmin has no quota."""
        if user.id == 0:
            return None
        entry = self._ds_entry(user, ds_id, create=True)
        request = {"SIZE": float(size), "IMAGES": float(images)}
        for metric in _DS_METRICS:
            limit = effective_limit(entry.limits[metric], None)
            if limit != UNLIMITED and entry.used[metric] + request[metric] > limit:
                self._ds_cleanup(user, entry)
                return (f"user [{user.id}] limit of {limit:g} reached for {metric} quota in "
                        f"DATASTORE with ID: {ds_id}")
        for metric in _DS_METRICS:
            entry.used[metric] += request[metric]
        return None

    def _ds_quota_del(self, user: User, ds_id: int, size: float, images: float) -> None:
        entry = self._ds_entry(user, ds_id, create=False) if user.id != 0 else None
        if entry is not None:
            entry.used["SIZE"] -= float(size)
            entry.used["IMAGES"] -= float(images)
            self._ds_cleanup(user, entry)

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


def _name_error(name: str) -> str | None:
    """``PoolObjectSQL::name_is_valid`` (PoolObjectSQL.cc 552-590)."""
    if not name:
        return "Invalid NAME, it cannot be empty"
    bad = next((c for c in name if c in _INVALID_NAME_CHARS), None)
    if bad is not None:
        return f"Invalid NAME, char '{bad}' is not allowed"
    if len(name) > 128:
        return "Invalid NAME, max length is 128 chars"
    return None


def _source(image: Image) -> str:
    """Where the fs datastore keeps the image (``<ds path>/<md5>``)."""
    digest = hashlib.md5(f"{image.id}-{image.regtime}".encode()).hexdigest()
    return f"/var/lib/one//datastores/{image.datastore.id}/{digest}"


__all__ = ["ImageStore", "IMAGE_STATE_NAMES"]

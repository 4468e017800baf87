"""Images of the OpenNebula double: ``one.image.*``, ``one.imagepool.info``, the datastore
knobs and the datastore quota. (The images of VM DISKs: ``one_disks``.) Behaves like oned
7.3.80 (OpenNebula/one at tag release-7.3.80, commit a8b9b798; line numbers checked):

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
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
from pathlib import Path

from tests.one_errors import (ACTION, ALLOCATE, AUTHORIZATION, INTERNAL, NO_EXISTS, XML_RPC_API,
                              OneFault, not_authorized)
from tests.one_images import (BACKUP_DS, DATASTORE_TYPES, FILE_DS, IMAGE_DELETE, IMAGE_DISABLED,
                              IMAGE_ERROR, IMAGE_LOCKED, IMAGE_LOCKED_USED,
                              IMAGE_LOCKED_USED_PERS, IMAGE_READY, IMAGE_TYPES, IMAGE_USED,
                              IMAGE_USED_PERS, OS, SYSTEM_DS, TM_TARGETS, Datastore,
                              DatastoreQuota, Image, effective_limit, image_state_str, image_xml)
from tests.one_vms import CLONING, CLONING_FAILURE, HOLD, LCM_INIT, PENDING, User, Vm
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
        self._next_ds_id = 100                        # DatastorePool.cc 165-166
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
        """Add a datastore (ids from 100 as oned's, DatastorePool.cc 165-166); return its id.
        ``tm_mad``: ``local``/``ssh`` copy persistent images to the host and back (the image's
        SIZE grows when the VM releases it), ``shared``/``qcow2``/``ceph`` link them in place
        (it grows at the end of the resize). ``free_mb`` None: no capacity check."""
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

"""Images, datastores and datastore quota of the OpenNebula double: the records, oned's numbers
and names, and the XML oned answers with. (What the API does with them: ``one_storage``.)

Sources (OpenNebula/one at tag release-7.3.80, commit a8b9b798; line numbers checked):

* Image TYPE and STATE: ``include/Image.h`` 37-47 (OS 0 ... FILESYSTEM 7) and 131-144 (INIT 0,
  READY 1, USED 2, DISABLED 3, LOCKED 4, ERROR 5, CLONE 6, DELETE 7, USED_PERS 8, LOCKED_USED 9,
  LOCKED_USED_PERS 10); ``state_to_str`` 151-168 names USED_PERS "USED" and LOCKED_USED_PERS
  "LOCKED_USED" (the words of "it is in state: ..." refusals).
* The ``<IMAGE>`` document: ``Image::to_xml`` (``src/image/Image.cc`` 392-446), element order of
  ``share/doc/xsd/image.xsd``; ``<VMS>`` is an ``ObjectCollection``
  (``src/pool/ObjectCollection.cc`` 86-101: ``<VMS><ID>5</ID></VMS>``); ``<SNAPSHOTS>`` a
  ``Snapshots`` template (``src/vm/Snapshots.cc`` 26-44: ALLOW_ORPHANS, CURRENT_BASE -1,
  NEXT_SNAPSHOT 0).
* What stays in an image's TEMPLATE: ``Image::insert`` (``Image.cc`` 84-290) takes NAME, TYPE,
  PERSISTENT, SIZE, FS, PATH, SOURCE, FORMAT, TM_MAD out and drops DRIVER; OS/DATABLOCK images get
  ``DEV_PREFIX`` (oned.conf ``DEFAULT_DEVICE_PREFIX = "sd"``, ``share/etc/oned.conf`` 399); an
  image made by mkfs has FORMAT "raw" (Image.cc 207-230) and state LOCKED (line 248).
* Datastores: ``src/datastore/DatastorePool.cc`` 60-166 bootstraps 0 "system" (SYSTEM_DS),
  1 "default" (IMAGE_DS, DS_MAD fs, TM_MAD local) and 2 "files" (FILE_DS); user datastores from
  ID 100. Types ``include/Datastore.h`` 37-43. TM_MAD_CONF (``share/etc/oned.conf`` 1137-1216)
  gives each TM its LN_TARGET (persistent disks) and CLONE_TARGET (non-persistent ones).
* Datastore quota: ``src/um/QuotaDatastore.cc`` 25 (metrics SIZE then IMAGES), 30-61 (a request
  is DATASTORE, SIZE, IMAGES default 1); ``src/um/Quota.cc`` 147-266 (a missing entry is created
  with -1 limits; refusal ``limit of L reached for M quota in DATASTORE with ID: D``, L printed
  by ``ostream`` i.e. ``%g``), 339-403 (an entry at -1 limits with nothing used is dropped);
  used figures written by ``one_util::float_to_str`` (``src/common/NebulaUtil.cc`` 295-311:
  fixed, no decimals for whole numbers). XML: ``share/doc/xsd/shared.xsd`` 47-61.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from tests.one_xml import DEFAULT, UNLIMITED, permissions, render_template

# Image TYPE (Image.h 37-47)
OS, CDROM, DATABLOCK, KERNEL, RAMDISK, CONTEXT, BACKUP, FILESYSTEM = range(8)
IMAGE_TYPES = {"OS": OS, "CDROM": CDROM, "DATABLOCK": DATABLOCK, "KERNEL": KERNEL,
               "RAMDISK": RAMDISK, "CONTEXT": CONTEXT, "BACKUP": BACKUP,
               "FILESYSTEM": FILESYSTEM}

# Image STATE (Image.h 131-144)
(IMAGE_INIT, IMAGE_READY, IMAGE_USED, IMAGE_DISABLED, IMAGE_LOCKED, IMAGE_ERROR, IMAGE_CLONE,
 IMAGE_DELETE, IMAGE_USED_PERS, IMAGE_LOCKED_USED, IMAGE_LOCKED_USED_PERS) = range(11)
IMAGE_STATE_NAMES = {IMAGE_INIT: "INIT", IMAGE_READY: "READY", IMAGE_USED: "USED",
                     IMAGE_DISABLED: "DISABLED", IMAGE_LOCKED: "LOCKED", IMAGE_ERROR: "ERROR",
                     IMAGE_CLONE: "CLONE", IMAGE_DELETE: "DELETE", IMAGE_USED_PERS: "USED_PERS",
                     IMAGE_LOCKED_USED: "LOCKED_USED",
                     IMAGE_LOCKED_USED_PERS: "LOCKED_USED_PERS"}
LOCKED_STATES = (IMAGE_LOCKED, IMAGE_LOCKED_USED, IMAGE_LOCKED_USED_PERS)   # Image.h 205-208


def image_state_str(state: int) -> str:
    """``Image::state_to_str``: how oned names a state in its messages."""
    return {IMAGE_USED_PERS: "USED", IMAGE_LOCKED_USED_PERS: "LOCKED_USED"}.get(
        state, IMAGE_STATE_NAMES.get(state, ""))


# Datastore TYPE (Datastore.h 37-43)
IMAGE_DS, SYSTEM_DS, FILE_DS, BACKUP_DS = 0, 1, 2, 3
DATASTORE_TYPES = {"IMAGE_DS": IMAGE_DS, "SYSTEM_DS": SYSTEM_DS, "FILE_DS": FILE_DS,
                   "BACKUP_DS": BACKUP_DS}
# TM_MAD_CONF (oned.conf 1137-1216): (LN_TARGET, CLONE_TARGET) of the TMs a site would use.
TM_TARGETS = {"local": ("SYSTEM", "SYSTEM"), "ssh": ("SYSTEM", "SYSTEM"),
              "shared": ("NONE", "SYSTEM"), "qcow2": ("NONE", "SYSTEM"),
              "ceph": ("NONE", "SELF"), "fs_lvm": ("SYSTEM", "SYSTEM"),
              "fs_lvm_ssh": ("SYSTEM", "SYSTEM")}
FILE_DISK_TYPE = 0          # Image::DiskType FILE (Image.h 81-95), what DS_MAD fs gives


@dataclass
class Datastore:
    """One datastore. ``free_mb`` is what monitoring reports free (``None``: not monitored,
    so no capacity check)."""
    id: int
    name: str
    ds_type: int = IMAGE_DS
    tm_mad: str = "local"
    free_mb: float | None = 1024 * 1024
    persistent_only: bool = False

    @property
    def ln_target(self) -> str:
        return TM_TARGETS[self.tm_mad][0]

    @property
    def clone_target(self) -> str:
        return TM_TARGETS[self.tm_mad][1]


@dataclass
class Image:
    """One image. ``owner`` is a :class:`tests.one_vms.User`; ``template`` what oned keeps in
    the image's TEMPLATE; ``vm_ids`` the VMS collection (RUNNING_VMS is its size)."""
    id: int
    owner: Any
    name: str
    type: int
    persistent: bool
    size_mb: int
    datastore: Datastore
    template: dict[str, Any]
    state: int = IMAGE_LOCKED
    prev_state: int = IMAGE_LOCKED
    vm_ids: set[int] = field(default_factory=set)
    source: str = ""
    format: str = "raw"
    fs: str = ""
    public: bool = False              # OTHER_U: anyone may USE it (the double's OS image)
    regtime: int = field(default_factory=lambda: int(time.time()))
    modtime: int = field(default_factory=lambda: int(time.time()))
    generation: int = 0               # bumped by delete: a pending mkfs answer gives up

    def set_state(self, state: int) -> None:
        self.prev_state, self.state = self.state, state

    @property
    def running_vms(self) -> int:
        return len(self.vm_ids)


@dataclass
class DatastoreQuota:
    """One ``<DATASTORE>`` entry of a user's DATASTORE_QUOTA: limits (-1 default, -2
    unlimited) and the usage oned counts (charged at allocate/resize, freed at delete)."""
    ds_id: int
    limits: dict[str, float] = field(default_factory=lambda: {"IMAGES": DEFAULT,
                                                               "SIZE": DEFAULT})
    used: dict[str, float] = field(default_factory=lambda: {"IMAGES": 0.0, "SIZE": 0.0})


def float_to_str(value: float) -> str:
    """``one_util::float_to_str``: ``1024``, ``-1``, ``0.50``."""
    value = float(value)
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def datastore_quota_xml(entries: list[DatastoreQuota]) -> str:
    """``<DATASTORE_QUOTA>`` with one ``<DATASTORE>`` per entry (values as CDATA, by name)."""
    body = "".join(
        render_template("DATASTORE", {
            "ID": str(e.ds_id), "IMAGES": float_to_str(e.limits["IMAGES"]),
            "IMAGES_USED": float_to_str(e.used["IMAGES"]),
            "SIZE": float_to_str(e.limits["SIZE"]), "SIZE_USED": float_to_str(e.used["SIZE"])})
        for e in entries)
    return f"<DATASTORE_QUOTA>{body}</DATASTORE_QUOTA>"


def effective_limit(limit: float, default: float | None) -> float:
    """A -1 limit means the default quota (unlimited when none is set)."""
    if limit == DEFAULT:
        return UNLIMITED if default is None else default
    return limit


def image_xml(image: Image) -> str:
    """oned's ``<IMAGE>`` document."""
    owner = image.owner
    perms = permissions().replace("<OTHER_U>0</OTHER_U>",
                                  f"<OTHER_U>{int(image.public)}</OTHER_U>")
    vms = "".join(f"<ID>{vm_id}</ID>" for vm_id in sorted(image.vm_ids))
    snapshots = render_template("SNAPSHOTS", {"ALLOW_ORPHANS": "NO", "CURRENT_BASE": "-1",
                                              "NEXT_SNAPSHOT": "0"})
    return (f"<IMAGE><ID>{image.id}</ID><UID>{owner.id}</UID><GID>{owner.gid}</GID>"
            f"<UNAME>{escape(owner.name)}</UNAME><GNAME>{escape(owner.gname)}</GNAME>"
            f"<NAME>{escape(image.name)}</NAME>{perms}<TYPE>{image.type}</TYPE>"
            f"<DISK_TYPE>{FILE_DISK_TYPE}</DISK_TYPE><PERSISTENT>{int(image.persistent)}"
            f"</PERSISTENT><REGTIME>{image.regtime}</REGTIME><MODTIME>{image.modtime}</MODTIME>"
            f"<SOURCE>{escape(image.source)}</SOURCE><PATH></PATH>"
            f"<FORMAT>{escape(image.format)}</FORMAT><FS>{escape(image.fs)}</FS>"
            f"<SIZE>{image.size_mb}</SIZE><STATE>{image.state}</STATE>"
            f"<PREV_STATE>{image.prev_state}</PREV_STATE>"
            f"<RUNNING_VMS>{image.running_vms}</RUNNING_VMS><CLONING_OPS>0</CLONING_OPS>"
            f"<CLONING_ID>-1</CLONING_ID><TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT>"
            f"<DATASTORE_ID>{image.datastore.id}</DATASTORE_ID>"
            f"<DATASTORE>{escape(image.datastore.name)}</DATASTORE>"
            f"<VMS>{vms}</VMS><CLONES></CLONES><APP_CLONES></APP_CLONES>"
            f"{render_template('TEMPLATE', image.template)}{snapshots}"
            "<BACKUP_INCREMENTS></BACKUP_INCREMENTS></IMAGE>")

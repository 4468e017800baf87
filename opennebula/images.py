"""Persistent images (users' home volumes) and datastore quota, for :class:`OpenNebulaClient`.

A home volume is an empty DATABLOCK image, PERSISTENT (its content survives every VM that uses
it; OpenNebula lets one VM at a time use it: USED_PERS), tagged in its TEMPLATE like VMs are.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict

from .models import TAG_HUB_ID, TAG_PREFIX, QuotaUsage
from .templates import as_xml_document, check_tags

IMAGE_STATES = {0: "INIT", 1: "READY", 2: "USED", 3: "DISABLED", 4: "LOCKED", 5: "ERROR",
                6: "CLONE", 7: "DELETE", 8: "USED_PERS", 9: "LOCKED_USED",
                10: "LOCKED_USED_PERS"}
READY, USED_PERS = 1, 8
_MINE = -3


class ImageInfo(BaseModel):
    """A snapshot of one image as OpenNebula reported it."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    state: int
    size_mb: float
    persistent: bool
    datastore_id: int
    vm_ids: list[int] = []
    tags: dict[str, str] = {}

    @property
    def state_name(self) -> str:
        return IMAGE_STATES.get(self.state, str(self.state))

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def in_use(self) -> bool:
        """Attached to a VM (or being saved back from one)."""
        return bool(self.vm_ids) or self.state in (2, 8, 9, 10)


class DatastoreQuota(BaseModel):
    """The hub user's quota on one datastore: images and their size (MB)."""

    model_config = ConfigDict(frozen=True)

    images: QuotaUsage
    size_mb: QuotaUsage


def _ids(value: Any) -> list[int]:
    raw = getattr(value, "ID", None) if value is not None else None
    if raw is None:
        return []
    return [int(x) for x in (raw if isinstance(raw, list) else [raw])]


def image_info(img: Any) -> ImageInfo:
    template = img.TEMPLATE if isinstance(getattr(img, "TEMPLATE", None), Mapping) else {}
    return ImageInfo(
        id=int(img.ID), name=str(img.NAME or ""), state=int(img.STATE),
        size_mb=float(img.SIZE or 0), persistent=str(img.PERSISTENT) in ("1", "YES", "True"),
        datastore_id=int(img.DATASTORE_ID if img.DATASTORE_ID is not None else -1),
        vm_ids=_ids(getattr(img, "VMS", None)),
        tags={k: "" if v is None else str(v) for k, v in template.items()
              if k.startswith(TAG_PREFIX) and not isinstance(v, (Mapping, list))})


def datastore_quota(user: Any, datastore_id: int) -> DatastoreQuota:
    section = getattr(user, "DATASTORE_QUOTA", None)
    entries = getattr(section, "DATASTORE", None) if section is not None else None
    entries = entries if isinstance(entries, list) else [entries] if entries is not None else []
    entry = next((e for e in entries if int(getattr(e, "ID", -99)) == datastore_id), None)

    def usage(metric: str) -> QuotaUsage:
        if entry is None:
            return QuotaUsage(used=0)
        try:
            limit = float(getattr(entry, metric))
        except (TypeError, ValueError):
            limit = -2.0
        used = float(getattr(entry, f"{metric}_USED", 0) or 0)
        return QuotaUsage(used=used, limit=None if limit < 0 else limit)

    return DatastoreQuota(images=usage("IMAGES"), size_mb=usage("SIZE"))


class ImagesMixin:
    """Image calls of :class:`~opennebula.client.OpenNebulaClient` (uses its ``_call``)."""

    async def allocate_volume(self, *, name: str, size_mb: int, datastore_id: int,
                              tags: Mapping[str, str]) -> int:
        """An empty persistent DATABLOCK of ``size_mb``, tagged; returns its id."""
        document = as_xml_document({"NAME": name, "TYPE": "DATABLOCK", "SIZE": str(int(size_mb)),
                                    "PERSISTENT": "YES", **check_tags(tags)})
        return int(await self._call(f"create the image {name!r}", self._server.image.allocate,
                                    document, int(datastore_id)))

    async def image_info(self, image_id: int) -> ImageInfo:
        img = await self._call(f"read image {image_id}", self._server.image.info, int(image_id),
                               object_kind="image", object_id=int(image_id))
        return image_info(img)

    async def list_volumes(self, hub_id: str) -> list[ImageInfo]:
        """The hub user's images tagged with ``hub_id``."""
        pool = await self._call("list images", self._server.imagepool.info, _MINE, -1, -1)
        found = [image_info(i) for i in (getattr(pool, "IMAGE", None) or [])]
        return [i for i in found if i.tags.get(TAG_HUB_ID) == hub_id]

    async def delete_image(self, image_id: int) -> None:
        await self._call(f"delete image {image_id}", self._server.image.delete, int(image_id),
                         object_kind="image", object_id=int(image_id))

    async def tag_image(self, image_id: int, tags: Mapping[str, str]) -> None:
        await self._call(f"tag image {image_id}", self._server.image.update, int(image_id),
                         as_xml_document(check_tags(tags)), 1,
                         object_kind="image", object_id=int(image_id))

    async def resize_disk(self, vm_id: int, disk_id: int, size_mb: int) -> None:
        await self._call(f"resize disk {disk_id} of VM {vm_id}", self._server.vm.diskresize,
                         int(vm_id), int(disk_id), str(int(size_mb)),
                         object_kind="VM", object_id=int(vm_id))

    async def datastore_quota(self, datastore_id: int) -> DatastoreQuota:
        user = await self._call("read the hub user's quota", self._server.user.info, -1)
        return datastore_quota(user, int(datastore_id))

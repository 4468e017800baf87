"""Turning pyone's generateDS objects into our models.

pyone gives TEMPLATE and USER_TEMPLATE as dicts (one child -> dict, several -> list), and the
quota figures as strings.
"""
from __future__ import annotations

from typing import Any, Mapping

from .models import TAG_PREFIX, Quota, QuotaUsage, VmInfo
from .states import failure_reason, phase_for

UNLIMITED = -2.0
DEFAULT = -1.0


def _as_list(value: Any) -> list:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _template(obj: Any, name: str) -> Mapping[str, Any]:
    value = getattr(obj, name, None)
    return value if isinstance(value, Mapping) else {}


def first_ip(template: Mapping[str, Any]) -> str | None:
    """The first NIC's address: IPv4, else a global or ULA IPv6, else None."""
    for nic in _as_list(template.get("NIC")):
        if not isinstance(nic, Mapping):
            continue
        for key in ("IP", "IP6_GLOBAL", "IP6_ULA", "IP6"):
            if nic.get(key):
                return str(nic[key])
        return None
    return None


def nic_without_ip(template: Mapping[str, Any]) -> bool:
    """The first NIC has no address at all (a network range that gives only MAC addresses)."""
    nics = [n for n in _as_list(template.get("NIC")) if isinstance(n, Mapping)]
    return bool(nics) and first_ip(template) is None


def disk_ids(template: Mapping[str, Any]) -> dict[int, int]:
    out = {}
    for disk in _as_list(template.get("DISK")):
        if isinstance(disk, Mapping) and disk.get("IMAGE_ID") not in (None, "") and \
                disk.get("DISK_ID") not in (None, ""):
            try:
                out[int(disk["IMAGE_ID"])] = int(disk["DISK_ID"])
            except (TypeError, ValueError):
                continue
    return out


def hub_tags(user_template: Mapping[str, Any]) -> dict[str, str]:
    """The VM's ``NEBULAHUB_*`` attributes."""
    return {k: ("" if v is None else str(v)) for k, v in user_template.items()
            if k.startswith(TAG_PREFIX) and not isinstance(v, (Mapping, list))}


def vm_info(vm: Any) -> VmInfo:
    """A :class:`VmInfo` from pyone's VM (``one.vm.info``) or VM_POOL entry."""
    state = int(vm.STATE)
    lcm_state = int(vm.LCM_STATE or 0)
    template = _template(vm, "TEMPLATE")
    user_template = _template(vm, "USER_TEMPLATE")
    cloud_error = user_template.get("ERROR")
    sched = user_template.get("SCHED_MESSAGE")
    return VmInfo(
        id=int(vm.ID), name=str(vm.NAME or ""), state=state, lcm_state=lcm_state,
        phase=phase_for(state, lcm_state), ip=first_ip(template),
        nic_without_ip=nic_without_ip(template), disk_ids=disk_ids(template),
        tags=hub_tags(user_template),
        sched_message=str(sched) if isinstance(sched, str) and sched else None,
        failure=failure_reason(state, lcm_state,
                               str(cloud_error) if isinstance(cloud_error, str) else None),
    )


def _quota_entry(quota_section: Any, cluster_id: int | None = None) -> Any:
    """The global VM quota entry (no CLUSTER_IDS), or the entry of ``cluster_id``.

    OpenNebula 7 may list several ``<VM>`` entries, some per cluster; which one comes first is
    not fixed, so entries are chosen by their CLUSTER_IDS, never by position.
    """
    for entry in _as_list(getattr(quota_section, "VM", None)):
        clusters = str(getattr(entry, "CLUSTER_IDS", "") or "").strip()
        ids = {c.strip() for c in clusters.split(",") if c.strip()}
        if (cluster_id is None and not ids) or (cluster_id is not None and str(cluster_id) in ids):
            return entry
    return None


def _number(entry: Any, name: str, fallback: float) -> float:
    raw = getattr(entry, name, None) if entry is not None else None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return fallback


def quota(user: Any, cluster_id: int | None = None) -> Quota:
    """The VM quota in pyone's USER (``one.user.info``), with -1 resolved to the default: the
    global entry, or the entry of ``cluster_id`` (a cluster without its own entry has no
    cluster limit)."""
    own = _quota_entry(getattr(user, "VM_QUOTA", None), cluster_id)
    if own is None and cluster_id is not None:
        return Quota(vms=QuotaUsage(used=0), cpu=QuotaUsage(used=0),
                     memory_mb=QuotaUsage(used=0))
    defaults = _quota_entry(getattr(getattr(user, "DEFAULT_USER_QUOTAS", None), "VM_QUOTA", None))

    def usage(metric: str) -> QuotaUsage:
        limit = _number(own, metric, DEFAULT)
        if limit == DEFAULT:
            # oned: a default that is not set is unlimited.
            limit = _number(defaults, metric, UNLIMITED)
        used = _number(own, f"{metric}_USED", 0.0)
        return QuotaUsage(used=used, limit=None if limit < 0 else limit)

    return Quota(vms=usage("VMS"), cpu=usage("CPU"), memory_mb=usage("MEMORY"))

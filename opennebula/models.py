"""What the façade returns: VM snapshots, quota figures, and the tag names the hub uses.

Tags are custom attributes in a VM's USER_TEMPLATE; they let a restarted hub find its VMs.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .states import VmPhase

__all__ = [
    "TAG_PREFIX", "TAG_HUB_ID", "TAG_USER", "TAG_SERVER", "TAG_START_ID", "TAG_OWNER_KIND",
    "TAG_OWNER_ID", "HUB_TAGS",
    "VmPhase", "VmInfo", "QuotaUsage", "Quota",
]

TAG_PREFIX = "NEBULAHUB_"
TAG_HUB_ID = "NEBULAHUB_HUB_ID"
"""Which hub owns the VM (``list_tagged`` filters on it)."""
TAG_USER = "NEBULAHUB_USER"
"""The JupyterHub user the VM serves."""
TAG_SERVER = "NEBULAHUB_SERVER"
"""The JupyterHub server name ("" for the default server)."""
TAG_START_ID = "NEBULAHUB_START_ID"
"""A random id per spawn attempt, so a retried start can tell its VM from an older one."""
TAG_OWNER_KIND = "NEBULAHUB_OWNER_KIND"
"""Who the VM works for: ``server``, ``job-worker`` or ``dask-worker`` (absent: a server, as
written by the first release)."""
TAG_OWNER_ID = "NEBULAHUB_OWNER_ID"
"""The owner within its kind (``user/server`` for a server, the job id for a job worker)."""
HUB_TAGS = (TAG_HUB_ID, TAG_USER, TAG_SERVER, TAG_START_ID, TAG_OWNER_KIND, TAG_OWNER_ID)


class VmInfo(BaseModel):
    """A snapshot of one VM as OpenNebula reported it.

    ``ip`` is the first NIC's address (None before a NIC has one); ``tags`` are the VM's
    ``NEBULAHUB_*`` USER_TEMPLATE attributes; ``failure`` is a readable reason when
    ``phase`` is FAILED.
    """

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    state: int
    lcm_state: int
    phase: VmPhase
    ip: str | None = None
    nic_without_ip: bool = False      # a NIC exists but has no address (Ethernet-only range)
    disk_ids: dict[int, int] = {}     # IMAGE_ID -> DISK_ID of the VM's disks from images
    tags: dict[str, str] = {}
    failure: str | None = None
    sched_message: str | None = None  # why the scheduler cannot place it (while PENDING)

    @property
    def is_ready(self) -> bool:
        """True once the VM is RUNNING (its services may still be starting)."""
        return self.phase is VmPhase.RUNNING

    @property
    def is_gone(self) -> bool:
        """True when the VM is terminated."""
        return self.phase is VmPhase.DONE


def _fmt(number: float) -> str:
    return f"{number:g}"


class QuotaUsage(BaseModel):
    """Usage of one quota metric; ``limit`` is None when unlimited."""

    model_config = ConfigDict(frozen=True)

    used: float
    limit: float | None = None

    @property
    def free(self) -> float | None:
        """How much is left (never negative); None when unlimited."""
        if self.limit is None:
            return None
        return max(self.limit - self.used, 0.0)

    def shortfall(self, amount: float) -> bool:
        """True when ``amount`` more would go over the limit."""
        return self.limit is not None and self.used + amount > self.limit


class Quota(BaseModel):
    """The hub user's VM quota: number of VMs, CPU (cores, may be fractional), memory (MB).

    OpenNebula writes -2 for unlimited and -1 for "use the default quota"; the client resolves
    -1 through the defaults oned sends with the user (DEFAULT_USER_QUOTAS) and treats a default
    that is not set as unlimited, like oned does. Only the user's quota is read: a group quota
    can still refuse a VM that fits here.
    """

    model_config = ConfigDict(frozen=True)

    vms: QuotaUsage
    cpu: QuotaUsage
    memory_mb: QuotaUsage

    def check(self, cpu: float, memory_mb: float, vms: int = 1) -> list[str]:
        """Readable reasons why a VM of this size would not fit; empty when it fits.

        >>> Quota(vms=QuotaUsage(used=0, limit=2), cpu=QuotaUsage(used=3, limit=4),
        ...       memory_mb=QuotaUsage(used=0)).check(cpu=2, memory_mb=512)
        ['needs 2 CPU but only 1 of 4 is free']
        """
        reasons = []
        for usage, amount, unit in ((self.vms, vms, "VM"), (self.cpu, cpu, "CPU"),
                                    (self.memory_mb, memory_mb, "MB of memory")):
            if amount and usage.shortfall(amount):
                shown_unit = "VMs" if unit == "VM" and amount != 1 else unit
                reasons.append(f"needs {_fmt(amount)} {shown_unit} but only "
                               f"{_fmt(usage.free)} of {_fmt(usage.limit)} is free")
        return reasons

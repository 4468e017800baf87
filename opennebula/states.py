"""OpenNebula VM states (STATE, LCM_STATE) mapped to the few phases the hub cares about.

Numbers come from pyone's ``VM_STATE`` and ``LCM_STATE`` enums (the same order as oned's
``VirtualMachine.h``), so they follow OpenNebula 6/7 rather than a hand-copied table.
"""
from __future__ import annotations

import enum

from pyone import LCM_STATE, VM_STATE


class VmPhase(str, enum.Enum):
    """Where a VM is in its life, in the hub's words."""

    PENDING = "PENDING"    # waiting for the scheduler to pick a host
    HOLD = "HOLD"          # held: will not be scheduled until released
    PROLOG = "PROLOG"      # disks being copied to the host
    BOOT = "BOOT"          # hypervisor booting it
    RUNNING = "RUNNING"    # up (the guest may still be starting its services)
    FAILED = "FAILED"      # a *_FAILURE state: it will not come up by itself
    STOPPING = "STOPPING"  # shutting down, saving or cleaning up
    STOPPED = "STOPPED"    # powered off, suspended, stopped or undeployed
    DONE = "DONE"          # terminated; gone for good
    UNKNOWN = "UNKNOWN"    # the cloud lost contact with it (or a state we do not know)


_STATE_PHASE = {
    VM_STATE.INIT: VmPhase.PENDING,
    VM_STATE.PENDING: VmPhase.PENDING,
    VM_STATE.HOLD: VmPhase.HOLD,
    VM_STATE.STOPPED: VmPhase.STOPPED,
    VM_STATE.SUSPENDED: VmPhase.STOPPED,
    VM_STATE.DONE: VmPhase.DONE,
    VM_STATE.FAILED: VmPhase.FAILED,
    VM_STATE.POWEROFF: VmPhase.STOPPED,
    VM_STATE.UNDEPLOYED: VmPhase.STOPPED,
    VM_STATE.CLONING: VmPhase.PENDING,
    VM_STATE.CLONING_FAILURE: VmPhase.FAILED,
}

_L = LCM_STATE
_LCM_PHASE = {
    _L.LCM_INIT: VmPhase.PENDING,
    _L.PROLOG: VmPhase.PROLOG,
    _L.PROLOG_RESUME: VmPhase.PROLOG,
    _L.PROLOG_UNDEPLOY: VmPhase.PROLOG,
    _L.PROLOG_MIGRATE: VmPhase.PROLOG,
    _L.BOOT: VmPhase.BOOT,
    _L.BOOT_UNKNOWN: VmPhase.BOOT,
    _L.BOOT_POWEROFF: VmPhase.BOOT,
    _L.BOOT_SUSPENDED: VmPhase.BOOT,
    _L.BOOT_STOPPED: VmPhase.BOOT,
    _L.BOOT_UNDEPLOY: VmPhase.BOOT,
    _L.BOOT_MIGRATE: VmPhase.BOOT,
    _L.RUNNING: VmPhase.RUNNING,
    # A running VM being live-migrated, hot-plugged or snapshotted stays up.
    _L.MIGRATE: VmPhase.RUNNING,
    _L.HOTPLUG: VmPhase.RUNNING,
    _L.HOTPLUG_SNAPSHOT: VmPhase.RUNNING,
    _L.HOTPLUG_NIC: VmPhase.RUNNING,
    _L.HOTPLUG_SAVEAS: VmPhase.RUNNING,
    _L.HOTPLUG_RESIZE: VmPhase.RUNNING,
    _L.DISK_SNAPSHOT: VmPhase.RUNNING,
    _L.DISK_SNAPSHOT_REVERT: VmPhase.RUNNING,
    _L.DISK_SNAPSHOT_DELETE: VmPhase.RUNNING,
    _L.DISK_RESIZE: VmPhase.RUNNING,
    _L.UNKNOWN: VmPhase.UNKNOWN,
    _L.PROLOG_MIGRATE_UNKNOWN: VmPhase.UNKNOWN,
    # Going down.
    _L.SAVE_STOP: VmPhase.STOPPING,
    _L.SAVE_SUSPEND: VmPhase.STOPPING,
    _L.SAVE_MIGRATE: VmPhase.STOPPING,
    _L.EPILOG_STOP: VmPhase.STOPPING,
    _L.EPILOG: VmPhase.STOPPING,
    _L.EPILOG_UNDEPLOY: VmPhase.STOPPING,
    _L.SHUTDOWN: VmPhase.STOPPING,
    _L.SHUTDOWN_POWEROFF: VmPhase.STOPPING,
    _L.SHUTDOWN_UNDEPLOY: VmPhase.STOPPING,
    _L.CANCEL: VmPhase.STOPPING,
    _L.CLEANUP_RESUBMIT: VmPhase.STOPPING,
    _L.CLEANUP_DELETE: VmPhase.STOPPING,
    # Operations on a VM that is not running.
    _L.HOTPLUG_SAVEAS_POWEROFF: VmPhase.STOPPED,
    _L.HOTPLUG_SAVEAS_SUSPENDED: VmPhase.STOPPED,
    _L.HOTPLUG_SAVEAS_UNDEPLOYED: VmPhase.STOPPED,
    _L.HOTPLUG_SAVEAS_STOPPED: VmPhase.STOPPED,
    _L.HOTPLUG_PROLOG_POWEROFF: VmPhase.STOPPED,
    _L.HOTPLUG_EPILOG_POWEROFF: VmPhase.STOPPED,
    _L.HOTPLUG_NIC_POWEROFF: VmPhase.STOPPED,
    _L.PROLOG_MIGRATE_POWEROFF: VmPhase.STOPPED,
    _L.PROLOG_MIGRATE_SUSPEND: VmPhase.STOPPED,
    _L.DISK_SNAPSHOT_POWEROFF: VmPhase.STOPPED,
    _L.DISK_SNAPSHOT_REVERT_POWEROFF: VmPhase.STOPPED,
    _L.DISK_SNAPSHOT_DELETE_POWEROFF: VmPhase.STOPPED,
    _L.DISK_SNAPSHOT_SUSPENDED: VmPhase.STOPPED,
    _L.DISK_SNAPSHOT_REVERT_SUSPENDED: VmPhase.STOPPED,
    _L.DISK_SNAPSHOT_DELETE_SUSPENDED: VmPhase.STOPPED,
    _L.DISK_RESIZE_POWEROFF: VmPhase.STOPPED,
    _L.DISK_RESIZE_UNDEPLOYED: VmPhase.STOPPED,
}

# LCM states of OpenNebula 7.x that pyone 7.3.80 does not know (include/VirtualMachine.h):
# a backup of a running VM keeps it up; the others concern a powered-off VM.
_NEWER_LCM = {69: ("BACKUP", VmPhase.RUNNING), 70: ("BACKUP_POWEROFF", VmPhase.STOPPED),
              71: ("RESTORE", VmPhase.STOPPED)}

# Readable reasons for the failure states a student is most likely to meet.
_FAILURE_WORDS = {
    "BOOT_FAILURE": "the VM failed to boot",
    "PROLOG_FAILURE": "the VM's disks could not be copied to the host",
    "EPILOG_FAILURE": "the VM's disks could not be cleaned up after it stopped",
    "BOOT_MIGRATE_FAILURE": "the VM failed to boot after a migration",
    "PROLOG_MIGRATE_FAILURE": "the VM's disks could not be moved for a migration",
    "FAILURE": "the VM failed",
    "FAILED": "the VM failed",
    "CLONING_FAILURE": "the VM's disk images could not be cloned",
}


def lcm_name(lcm_state: int) -> str:
    """LCM_STATE number to its name (``str(number)`` if unknown)."""
    try:
        return LCM_STATE(lcm_state).name
    except ValueError:
        return _NEWER_LCM[lcm_state][0] if lcm_state in _NEWER_LCM else str(lcm_state)


def state_name(state: int) -> str:
    """STATE number to its name (``str(number)`` if unknown)."""
    try:
        return VM_STATE(state).name
    except ValueError:
        return str(state)


def phase_for(state: int, lcm_state: int) -> VmPhase:
    """The phase for an OpenNebula STATE and LCM_STATE pair.

    LCM_STATE only means something while STATE is ACTIVE (3); every ``*_FAILURE`` state
    is :attr:`VmPhase.FAILED`.
    """
    if state == VM_STATE.ACTIVE:
        if lcm_name(lcm_state).endswith("FAILURE"):
            return VmPhase.FAILED
        if lcm_state in _NEWER_LCM:
            return _NEWER_LCM[lcm_state][1]
        try:
            return _LCM_PHASE.get(LCM_STATE(lcm_state), VmPhase.UNKNOWN)
        except ValueError:
            return VmPhase.UNKNOWN
    try:
        return _STATE_PHASE.get(VM_STATE(state), VmPhase.UNKNOWN)
    except ValueError:
        return VmPhase.UNKNOWN


def failure_reason(state: int, lcm_state: int, cloud_error: str | None = None) -> str | None:
    """A readable sentence for a FAILED VM, e.g. ``the VM failed to boot (BOOT_FAILURE)``.

    ``cloud_error`` is the ERROR attribute oned leaves in the VM's USER_TEMPLATE, if any.
    Returns None when the VM is not failed.
    """
    if phase_for(state, lcm_state) is not VmPhase.FAILED:
        return None
    name = lcm_name(lcm_state) if state == VM_STATE.ACTIVE else state_name(state)
    words = _FAILURE_WORDS.get(name, f"the VM entered the failure state {name.lower()}")
    text = f"{words} ({name})"
    if cloud_error:
        text += f": {cloud_error}"
    return text

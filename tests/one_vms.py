"""VMs of the OpenNebula double: states, user and VM records, VM quota, and the life cycle oned
drives on timers. Sources: OpenNebula/one at tag release-7.3.80 (commit a8b9b798), line
numbers checked.

* States: ``include/VirtualMachine.h`` 55-69 (STATE; 7 FAILED is commented out in 7.x) and
  74-148 (LCM_STATE, up to 69 BACKUP, 70 BACKUP_POWEROFF, 71 RESTORE, which pyone 7.3.80's
  enum does not know; its parser takes any integer). Names in refusals come from
  ``VirtualMachine::state_str`` (``src/vm/VirtualMachine.cc`` 614-624): the LCM name while
  ACTIVE, else the STATE name.
* Terminate: ``DispatchManager::terminate`` (``src/dm/DispatchManagerActions.cc`` 297-383) and
  ``LifeCycleManager::trigger_shutdown`` (``src/lcm/LifeCycleActions.cc`` 450-575):
  RUNNING/UNKNOWN (and SHUTDOWN when hard) -> SHUTDOWN -> (driver done,
  ``LifeCycleStates.cc`` 479-531) EPILOG -> (``LifeCycleStates.cc`` 920-1005) DONE;
  SUSPENDED/POWEROFF/STOPPED/UNDEPLOYED -> EPILOG -> DONE (hard ignored);
  INIT/PENDING/HOLD/CLONING/CLONING_FAILURE -> DONE at once (``free_vm_resources``);
  the ``*_FAILURE`` states -> ``trigger_delete`` (``LifeCycleActions.cc`` 889-949): CLEANUP_DELETE
  then DONE; DONE: accepted, nothing happens (``case DONE: break``, line 331); every other
  state: ACTION ``Error performing action "terminate-hard": Could not terminate VM 5, wrong
  state PROLOG.`` (line 370 and ``src/rm/api/VirtualMachineAPI.cc`` 838-843).
* Recover delete: ``DispatchManager::delete_vm`` (``DispatchManagerActions.cc`` 979-1031).
* Quota: the VM's VMS/CPU/MEMORY are charged at instantiate (``src/rm/api/TemplateAPI.cc``
  420-436, with RUNNING_*) and released only in ``free_vm_resources``
  (``DispatchManagerActions.cc`` 187-295, ``Quotas::vm_del`` line 254), i.e. at DONE.
  RUNNING_* count while ``VirtualMachine::is_running_quota`` (``VirtualMachine.cc``
  4322-4343). Entries: ``src/um/QuotaVirtualMachine.cc`` 43-108 (cluster entry checked only
  for a VM with a CLUSTER_ID, i.e. at deploy, then the global one), ``src/um/Quota.cc``
  147-268 (``check_quota``: a missing global entry is created with -1 limits; message
  ``limit of L reached for M quota in VM[ with ID: C]``) and 339-405 (``cleanup_quota``).
  The deploy-time cluster check is ``VirtualMachineAPI.cc`` 649-664; a refused deploy leaves
  the VM PENDING with ``ERROR`` set by ``src/schedm/PlanManager.cc`` 337-350.
* Messages with a time: ``VirtualMachine::set_template_error_message`` (``VirtualMachine.cc``
  3080-3102) writes ``<ctime>: <message>`` (``one_util::log_time``, ``src/common/NebulaUtil.cc``
  66-79). SCHED_MESSAGE: ``src/schedm/SchedulerManagerDriver.cc`` 140-150 and 188.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tests.one_errors import ACTION, AUTHORIZATION, OneFault
from tests.one_xml import DEFAULT, UNLIMITED

# STATE (VirtualMachine.h 55-69)
INIT, PENDING, HOLD, ACTIVE, STOPPED, SUSPENDED, DONE = 0, 1, 2, 3, 4, 5, 6
POWEROFF, UNDEPLOYED, CLONING, CLONING_FAILURE = 8, 9, 10, 11
STATE_NAMES = {INIT: "INIT", PENDING: "PENDING", HOLD: "HOLD", ACTIVE: "ACTIVE",
               STOPPED: "STOPPED", SUSPENDED: "SUSPENDED", DONE: "DONE", POWEROFF: "POWEROFF",
               UNDEPLOYED: "UNDEPLOYED", CLONING: "CLONING", CLONING_FAILURE: "CLONING_FAILURE"}

# LCM_STATE (VirtualMachine.h 74-148; 13 CANCEL, 14 FAILURE, 55 and 58 are gone in 7.x)
LCM_STATE_NAMES = dict(enumerate("""LCM_INIT PROLOG BOOT RUNNING MIGRATE SAVE_STOP SAVE_SUSPEND
    SAVE_MIGRATE PROLOG_MIGRATE PROLOG_RESUME EPILOG_STOP EPILOG SHUTDOWN - - CLEANUP_RESUBMIT
    UNKNOWN HOTPLUG SHUTDOWN_POWEROFF BOOT_UNKNOWN BOOT_POWEROFF BOOT_SUSPENDED BOOT_STOPPED
    CLEANUP_DELETE HOTPLUG_SNAPSHOT HOTPLUG_NIC HOTPLUG_SAVEAS HOTPLUG_SAVEAS_POWEROFF
    HOTPLUG_SAVEAS_SUSPENDED SHUTDOWN_UNDEPLOY EPILOG_UNDEPLOY PROLOG_UNDEPLOY BOOT_UNDEPLOY
    HOTPLUG_PROLOG_POWEROFF HOTPLUG_EPILOG_POWEROFF BOOT_MIGRATE BOOT_FAILURE
    BOOT_MIGRATE_FAILURE PROLOG_MIGRATE_FAILURE PROLOG_FAILURE EPILOG_FAILURE
    EPILOG_STOP_FAILURE EPILOG_UNDEPLOY_FAILURE PROLOG_MIGRATE_POWEROFF
    PROLOG_MIGRATE_POWEROFF_FAILURE PROLOG_MIGRATE_SUSPEND PROLOG_MIGRATE_SUSPEND_FAILURE
    BOOT_UNDEPLOY_FAILURE BOOT_STOPPED_FAILURE PROLOG_RESUME_FAILURE PROLOG_UNDEPLOY_FAILURE
    DISK_SNAPSHOT_POWEROFF DISK_SNAPSHOT_REVERT_POWEROFF DISK_SNAPSHOT_DELETE_POWEROFF
    DISK_SNAPSHOT_SUSPENDED - DISK_SNAPSHOT_DELETE_SUSPENDED DISK_SNAPSHOT - DISK_SNAPSHOT_DELETE
    PROLOG_MIGRATE_UNKNOWN PROLOG_MIGRATE_UNKNOWN_FAILURE DISK_RESIZE DISK_RESIZE_POWEROFF
    DISK_RESIZE_UNDEPLOYED HOTPLUG_NIC_POWEROFF HOTPLUG_RESIZE HOTPLUG_SAVEAS_UNDEPLOYED
    HOTPLUG_SAVEAS_STOPPED BACKUP BACKUP_POWEROFF RESTORE""".split()))
LCM_STATE_NAMES = {n: name for n, name in LCM_STATE_NAMES.items() if name != "-"}
_LCM = {name: n for n, name in LCM_STATE_NAMES.items()}
LCM_INIT, PROLOG, BOOT, RUNNING = 0, 1, 2, 3
EPILOG, SHUTDOWN, UNKNOWN, CLEANUP_DELETE = 11, 12, 16, 23
BOOT_FAILURE, PROLOG_FAILURE, EPILOG_FAILURE = 36, 39, 40
BACKUP, BACKUP_POWEROFF, RESTORE = 69, 70, 71
DISK_RESIZE, DISK_RESIZE_POWEROFF, DISK_RESIZE_UNDEPLOYED = (
    _LCM["DISK_RESIZE"], _LCM["DISK_RESIZE_POWEROFF"], _LCM["DISK_RESIZE_UNDEPLOYED"])

# DispatchManagerActions.cc 342-356: terminate of these goes through trigger_delete.
_DELETE_ON_TERMINATE = {_LCM[n] for n in """BOOT_FAILURE BOOT_MIGRATE_FAILURE
    PROLOG_MIGRATE_FAILURE PROLOG_FAILURE EPILOG_FAILURE EPILOG_STOP_FAILURE
    EPILOG_UNDEPLOY_FAILURE PROLOG_MIGRATE_POWEROFF_FAILURE PROLOG_MIGRATE_SUSPEND_FAILURE
    BOOT_UNDEPLOY_FAILURE BOOT_STOPPED_FAILURE PROLOG_RESUME_FAILURE PROLOG_UNDEPLOY_FAILURE
    PROLOG_MIGRATE_UNKNOWN_FAILURE""".split()}
# VirtualMachine.cc 4328-4342: ACTIVE states that do not hold RUNNING_* quota.
_NOT_RUNNING_LCM = {_LCM[n] for n in """HOTPLUG_SAVEAS_POWEROFF HOTPLUG_SAVEAS_SUSPENDED
    DISK_SNAPSHOT_POWEROFF DISK_SNAPSHOT_REVERT_POWEROFF DISK_SNAPSHOT_DELETE_POWEROFF
    DISK_SNAPSHOT_SUSPENDED DISK_SNAPSHOT_DELETE_SUSPENDED DISK_RESIZE_POWEROFF
    DISK_RESIZE_UNDEPLOYED HOTPLUG_NIC_POWEROFF HOTPLUG_SAVEAS_UNDEPLOYED HOTPLUG_SAVEAS_STOPPED
    HOTPLUG_PROLOG_POWEROFF HOTPLUG_EPILOG_POWEROFF""".split()}
GUEST_STOPPED_STATES = {POWEROFF, SUSPENDED, STOPPED, UNDEPLOYED}
# trigger_disk_resize_success: where a VM goes when its disk is resized
_AFTER_RESIZE = {DISK_RESIZE: (ACTIVE, RUNNING), DISK_RESIZE_POWEROFF: (POWEROFF, LCM_INIT),
                 DISK_RESIZE_UNDEPLOYED: (UNDEPLOYED, LCM_INIT)}
# QuotaVirtualMachine.cc 30-36: the order oned checks the metrics in.
CHECK_ORDER = ("VMS", "RUNNING_VMS", "CPU", "RUNNING_CPU", "MEMORY", "RUNNING_MEMORY",
               "PCI_DEV", "RUNNING_PCI_DEV", "PCI_NIC", "RUNNING_PCI_NIC", "SYSTEM_DISK_SIZE")


def state_str(state: int, lcm_state: int) -> str:
    """``VirtualMachine::state_str``: the LCM name while ACTIVE, else the STATE name."""
    if state == ACTIVE:
        return LCM_STATE_NAMES.get(lcm_state, str(lcm_state))
    return STATE_NAMES.get(state, str(state))


def log_time_message(message: str) -> str:
    """``<ctime>: message`` as ``set_template_error_message`` writes ERROR/SCHED_MESSAGE."""
    return f"{time.ctime()}: {message}"


@dataclass
class QuotaEntry:
    """One ``<VM>`` entry of a user's VM_QUOTA: the global one (``cluster_ids == ""``) or one
    for a set of clusters (``"100,101"``, normalised: unique, sorted)."""
    cluster_ids: str
    limits: dict[str, float]

    def covers(self, cluster_id: int | None) -> bool:
        return cluster_id is not None and str(cluster_id) in self.cluster_ids.split(",")


@dataclass
class User:
    id: int
    name: str
    password: str
    gid: int = 1
    gname: str = "users"
    quota: list[QuotaEntry] = field(default_factory=list)  # oned's order: insertion
    admin_own_vms: bool = False       # DEFAULT_UMASK 177: owners lack ADMIN
    may_create_templates: bool = True
    ds_quota: list = field(default_factory=list)   # DATASTORE_QUOTA entries (one_images)


@dataclass
class Vm:
    id: int
    owner: User
    name: str
    template: dict[str, Any]
    user_template: dict[str, Any]
    host: Any = None
    state: int = PENDING
    lcm_state: int = LCM_INIT
    prev_state: int = PENDING
    prev_lcm_state: int = LCM_INIT
    stime: int = field(default_factory=lambda: int(time.time()))
    etime: int = 0
    fail_boot: bool = False
    cpu: float = 0.0
    memory: float = 0.0
    cluster_id: int | None = None     # set at deploy (a HISTORY record exists from then on)
    deploy_id: str = ""
    history_action: int = 0
    host_destroyed: bool = False
    entered: float = field(default_factory=time.monotonic)
    generation: int = 0               # bumped on every state change: stale timers give up
    timer: threading.Timer | None = None
    disks: list[dict[str, str]] = field(default_factory=list)  # the DISKs oned built
    on_hold: bool = False             # asked on hold (HOLD once its images are unlocked)
    image_kind: str = "one-context"   # what its guest's contextualization is

    def set_state(self, state: int, lcm_state: int) -> None:
        self.prev_state, self.prev_lcm_state = self.state, self.lcm_state
        self.state, self.lcm_state = state, lcm_state
        self.entered = time.monotonic()
        self.generation += 1

    @property
    def running_quota(self) -> bool:
        """``VirtualMachine::is_running_quota``."""
        return (self.state in (PENDING, CLONING, CLONING_FAILURE, HOLD)
                or (self.state == ACTIVE and self.lcm_state not in _NOT_RUNNING_LCM))

    def usage(self) -> dict[str, float]:
        """What this VM holds in its owner's quota now (nothing once DONE)."""
        if self.state == DONE:
            return {}
        out = {"VMS": 1.0, "CPU": self.cpu, "MEMORY": self.memory}
        if self.running_quota:
            out.update({"RUNNING_VMS": 1.0, "RUNNING_CPU": self.cpu,
                        "RUNNING_MEMORY": self.memory})
        return out


Effect = Callable[[], None]   # host work done after the lock is released


class VmLifecycle:
    """The VM half of :class:`tests.one_double.OneDouble` (a mixin): quota, the timers that
    move VMs through their states, terminate/delete by state, and the hosts' reactions.

    Uses the double's ``_lock``, ``vms``, ``default_limits``, ``step_seconds``,
    ``sshd_delay``, ``_delays`` (``prolog``/``boot``/``shutdown``), ``_ssh_never``,
    ``_unschedulable``, ``_cluster``, ``_stopped`` and ``host_errors``.
    """

    # ------------------------------------------------------------ quota

    def quota_used(self, user: User, entry: QuotaEntry) -> dict[str, float]:
        used: dict[str, float] = {}
        for vm in self.vms.values():
            if vm.owner is user and (not entry.cluster_ids or entry.covers(vm.cluster_id)):
                for metric, amount in vm.usage().items():
                    used[metric] = used.get(metric, 0.0) + amount
        return used

    def quota_entries(self, user: User) -> list[tuple[str, dict[str, float], dict[str, float]]]:
        """(cluster_ids, limits, used) of each VM_QUOTA entry, in oned's order."""
        return [(e.cluster_ids, e.limits, self.quota_used(user, e)) for e in user.quota]

    def _entry(self, user: User, cluster_ids: str) -> QuotaEntry | None:
        return next((e for e in user.quota if e.cluster_ids == cluster_ids), None)

    def _check_quota(self, user: User, request: dict[str, float], cluster_id: int | None,
                     ) -> str | None:
        """QuotaVirtualMachine::check: the cluster entry holding ``cluster_id`` (if any), then
        (unless ``cluster_id`` is given: a deploy) the global entry, created if missing.
        Returns oned's error text, or None."""
        if user.id == 0:  # oneadmin has no quota
            return None
        if cluster_id is not None:
            entry = next((e for e in user.quota if e.covers(cluster_id)), None)
        else:
            entry = self._entry(user, "")
            if entry is None:  # Quota.cc 175-197: a new global entry, every limit -1
                entry = QuotaEntry("", {})
                user.quota.append(entry)
        if entry is None:
            return None
        used = self.quota_used(user, entry)
        for metric in CHECK_ORDER:
            if metric not in request:
                continue
            limit = entry.limits.get(metric, UNLIMITED if entry.cluster_ids else DEFAULT)
            if limit == DEFAULT:
                limit = self.default_limits.get(metric, UNLIMITED)
            if limit != UNLIMITED and used.get(metric, 0.0) + request[metric] > limit:
                where = f" with ID: {entry.cluster_ids}" if entry.cluster_ids else ""
                return (f"user [{user.id}] limit of {limit:g} reached for {metric} quota "
                        f"in VM{where}")
        return None

    def _cleanup_quota(self, user: User) -> None:
        """Quota.cc 339-405: drop a global entry back at defaults with nothing used, and a
        cluster entry whose limits are all unlimited."""
        keep = []
        for e in user.quota:
            if e.cluster_ids:
                gone = all(e.limits.get(m, UNLIMITED) == UNLIMITED for m in CHECK_ORDER)
            else:
                gone = (all(e.limits.get(m, DEFAULT) == DEFAULT for m in CHECK_ORDER)
                        and not any(self.quota_used(user, e).values()))
            if not gone:
                keep.append(e)
        user.quota[:] = keep

    # ------------------------------------------------------------ timers

    def _schedule(self, vm: Vm, delay: float) -> None:
        if self._stopped:
            return
        if vm.timer:
            vm.timer.cancel()
        vm.timer = threading.Timer(max(delay, 0.0), self._tick, args=(vm, vm.generation))
        vm.timer.daemon = True
        vm.timer.start()

    def _dwell(self, vm: Vm) -> float | None:
        """How long the VM stays in its state before the double moves it on (None: it stays
        until an API call or a knob moves it)."""
        step = self.step_seconds
        if vm.state == PENDING:
            return step
        if vm.state != ACTIVE:
            return None
        return {PROLOG: step + self._delays["prolog"], BOOT: step + self._delays["boot"],
                SHUTDOWN: step + self._delays["shutdown"], EPILOG: step,
                CLEANUP_DELETE: step, DISK_RESIZE: step, DISK_RESIZE_POWEROFF: step,
                DISK_RESIZE_UNDEPLOYED: step}.get(vm.lcm_state)

    def _drive(self, vm: Vm) -> None:
        """(Re)arm the VM's timer for its current state."""
        dwell = self._dwell(vm)
        if dwell is not None:
            self._schedule(vm, min(dwell, self.step_seconds))

    def _tick(self, vm: Vm, generation: int) -> None:
        effects: list[Effect] = []
        with self._lock:
            if self._stopped or vm.generation != generation:
                return
            dwell = self._dwell(vm)
            if dwell is None:
                return
            waited = time.monotonic() - vm.entered
            if vm.state != PENDING and waited < dwell:  # delays are read anew: knobs apply
                self._schedule(vm, min(dwell - waited, self.step_seconds))
                return
            self._advance(vm, effects)
            self._drive(vm)
        self._run(effects)

    def _advance(self, vm: Vm, effects: list[Effect]) -> None:
        if vm.state == PENDING:
            self._schedule_pending(vm)
        elif vm.lcm_state == PROLOG:
            vm.set_state(ACTIVE, BOOT)
            vm.deploy_id = f"one-{vm.id}"
        elif vm.lcm_state == BOOT:
            if vm.fail_boot:
                vm.set_state(ACTIVE, BOOT_FAILURE)
                vm.user_template["ERROR"] = log_time_message(
                    "Error deploying virtual machine: Could not create domain from "
                    f"/var/lib/one//datastores/0/{vm.id}/deployment.0")
                self._remember_templates(vm)
            else:
                vm.set_state(ACTIVE, RUNNING)
                effects.append(self._sshd_starter(vm))
        elif vm.lcm_state == SHUTDOWN:
            # The hypervisor driver reported the domain gone: the guest is no more.
            vm.set_state(ACTIVE, EPILOG)
            effects.append(self._destroyer(vm))
        elif vm.lcm_state in (EPILOG, CLEANUP_DELETE):
            self._to_done(vm, effects)
        elif vm.lcm_state in _AFTER_RESIZE:  # LifeCycleStates.cc 2407-2485
            self._disk_resize_done(vm)
            vm.set_state(*_AFTER_RESIZE[vm.lcm_state])
            self._remember_templates(vm)

    def _schedule_pending(self, vm: Vm) -> None:
        """The scheduler's pass over a PENDING VM, and oned's deploy of it."""
        if self._unschedulable:
            vm.user_template["SCHED_MESSAGE"] = log_time_message(self._unschedulable)
            self._remember_templates(vm)
            return
        refusal = self._check_quota(vm.owner, vm.usage(), self._cluster)
        if refusal:
            vm.user_template["ERROR"] = log_time_message(f"[deploy] User [0] : {refusal}.")
            self._remember_templates(vm)
            return
        vm.user_template.pop("SCHED_MESSAGE", None)  # PlanManager.cc 158-173
        vm.cluster_id = self._cluster
        vm.set_state(ACTIVE, PROLOG)

    # ------------------------------------------------------------ hosts

    def _run(self, effects: list[Effect]) -> None:
        for effect in effects:
            effect()

    def _host_call(self, vm: Vm, what: str) -> None:
        try:
            getattr(vm.host, what)()
        except Exception as exc:  # noqa: BLE001 - a test inspects host_errors
            self.host_errors.append(f"vm {vm.id}: {what}: {exc}")

    def _sshd_starter(self, vm: Vm) -> Effect:
        generation = vm.generation

        def start() -> None:
            if self._ssh_never:
                return
            timer = threading.Timer(self.sshd_delay, self._start_sshd, args=(vm, generation))
            timer.daemon = True
            timer.start()
        return start

    def _start_sshd(self, vm: Vm, generation: int) -> None:
        with self._lock:
            if self._stopped or vm.generation != generation or vm.host_destroyed:
                return
        self._mount_guest_home(vm)   # the guest's start script, before its sshd listens
        self._host_call(vm, "start_sshd")

    def _stopper(self, vm: Vm) -> Effect:
        return lambda: self._host_call(vm, "stop_sshd")

    def _destroyer(self, vm: Vm) -> Effect:
        vm.host_destroyed = True
        return lambda: self._host_call(vm, "destroy")

    # ------------------------------------------------------------ terminate / delete

    def _to_done(self, vm: Vm, effects: list[Effect]) -> None:
        """``free_vm_resources``: DONE, end time, quota released (the VM's usage is gone),
        the guest destroyed if it still exists."""
        if vm.timer:
            vm.timer.cancel()
        self._release_disks(vm)  # in its last state: a VM that failed leaves images in ERROR
        vm.set_state(DONE, LCM_INIT)
        vm.etime = int(time.time())
        self._cleanup_quota(vm.owner)
        if not vm.host_destroyed:
            effects.append(self._destroyer(vm))

    def _to_cleanup_delete(self, vm: Vm, effects: list[Effect]) -> None:
        """``trigger_delete`` -> ``clean_up_vm``: the domain is cancelled and cleaned now,
        DONE follows (``dm->trigger_done``)."""
        vm.set_state(ACTIVE, CLEANUP_DELETE)
        if vm.etime == 0:
            vm.etime = int(time.time())
        if not vm.host_destroyed:
            effects.append(self._destroyer(vm))
        self._drive(vm)

    def _terminate(self, vm: Vm, action: str, effects: list[Effect]) -> None:
        """DispatchManager::terminate's table (see the module docstring)."""
        hard = action == "terminate-hard"
        if vm.state in GUEST_STOPPED_STATES:
            vm.set_state(ACTIVE, EPILOG)
            if not vm.host_destroyed:
                effects.append(self._destroyer(vm))
            self._drive(vm)
        elif vm.state in (INIT, PENDING, HOLD, CLONING, CLONING_FAILURE):
            self._to_done(vm, effects)
        elif vm.state == DONE:
            pass
        elif vm.lcm_state in (RUNNING, UNKNOWN) or (vm.lcm_state == SHUTDOWN and hard):
            vm.set_state(ACTIVE, SHUTDOWN)   # a hard one overrides a frozen shutdown
            self._drive(vm)
        elif vm.lcm_state in _DELETE_ON_TERMINATE:
            self._to_cleanup_delete(vm, effects)
        else:
            raise OneFault(ACTION, f'Error performing action "{action}": Could not terminate '
                                   f"VM {vm.id}, wrong state "
                                   f"{state_str(vm.state, vm.lcm_state)}.")

    def _delete(self, vm: Vm, effects: list[Effect]) -> None:
        """DispatchManager::delete_vm (recover operation 3)."""
        if vm.state == DONE:
            return
        if vm.state == ACTIVE:
            if vm.lcm_state == CLEANUP_DELETE:
                return
            self._to_cleanup_delete(vm, effects)
        else:
            self._to_done(vm, effects)

    def _check_admin(self, user: User, vm: Vm) -> None:
        # recover is in VM_ADMIN_OPERATIONS (oned.conf 783-784); the owner has no ADMIN bit
        # under DEFAULT_UMASK 177 (oned.conf 753) unless a test grants it.
        if user.id != 0 and not (vm.owner is user and user.admin_own_vms):
            raise OneFault(AUTHORIZATION, f"Not authorized to perform ADMIN VM [{vm.id}]")

    # ------------------------------------------------------------ forced states

    def _force_state(self, vm: Vm, state: int, lcm_state: int, resume: bool) -> list[Effect]:
        effects: list[Effect] = []
        if vm.timer:
            vm.timer.cancel()
        if state == DONE:
            self._to_done(vm, effects)
            return effects
        vm.set_state(state, 0 if state != ACTIVE else lcm_state)
        if state == ACTIVE and vm.cluster_id is None:
            vm.cluster_id = self._cluster
        if state in GUEST_STOPPED_STATES and not vm.host_destroyed:
            effects.append(self._stopper(vm))
        elif ((state, lcm_state) == (ACTIVE, RUNNING) and not vm.host_destroyed
              and not getattr(vm.host, "sshd_running", False)):
            effects.append(self._sshd_starter(vm))
        if resume:
            self._drive(vm)
        return effects

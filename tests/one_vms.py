"""VMs of the OpenNebula double: user and VM records, quota bookkeeping, and the life cycle
PENDING -> PROLOG -> BOOT -> RUNNING (or BOOT_FAILURE) -> DONE driven by timers, with the
VM's host made on allocation, its sshd started once RUNNING and destroyed on DONE."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tests.one_errors import ALLOCATE, AUTHORIZATION, INTERNAL, OneFault
from tests.one_xml import DEFAULT, UNLIMITED, first, render_template

PENDING, HOLD, ACTIVE, DONE = 1, 2, 3, 6                      # VM STATE
LCM_INIT, PROLOG, BOOT, RUNNING, BOOT_FAILURE = 0, 1, 2, 3, 36  # LCM_STATE
_WELL_KNOWN = {"CPU", "VCPU", "MEMORY", "DISK", "NIC", "NIC_ALIAS", "CONTEXT", "GRAPHICS", "OS",
               "FEATURES", "INPUT", "RAW", "SCHED_REQUIREMENTS", "SCHED_DS_REQUIREMENTS",
               "SCHED_RANK", "MEMORY_UNIT_COST", "CPU_COST", "MEMORY_COST", "DISK_COST",
               "VMGROUP", "TOPOLOGY", "NUMA_NODE", "PCI", "HYPERVISOR", "TEMPLATE_ID",
               "AS_UID", "AS_GID", "VROUTER_ID", "SECURITY_GROUP_RULE", "AUTOMATIC_REQUIREMENTS"}


@dataclass
class User:
    id: int
    name: str
    password: str
    gid: int = 1
    gname: str = "users"
    limits: dict[str, float] = field(default_factory=lambda: {"VMS": DEFAULT, "CPU": DEFAULT,
                                                              "MEMORY": DEFAULT})
    used: dict[str, float] = field(default_factory=lambda: {"VMS": 0.0, "CPU": 0.0,
                                                            "MEMORY": 0.0})
    quota_touched: bool = False


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
    usage: dict[str, float] = field(default_factory=dict)
    timer: threading.Timer | None = None

    def set_state(self, state: int, lcm_state: int) -> None:
        self.prev_state, self.prev_lcm_state = self.state, self.lcm_state
        self.state, self.lcm_state = state, lcm_state


def _mac(ip: str) -> str:
    octets = [int(x) for x in ip.split(".")] if ip.count(".") == 3 else [0, 0, 0, 0]
    return "02:00:" + ":".join(f"{o:02x}" for o in octets)


class VmLifecycle:
    """The VM half of :class:`tests.one_double.OneDouble` (a mixin).

    Uses the double's ``_lock``, ``vms``, ``_vm_ids``, ``default_limits``, ``host_factory``,
    ``step_seconds``, ``sshd_delay``, ``_boot_delay``, ``_ssh_never``, ``_fail_next_boot``,
    ``_stopped``, ``host_errors`` and ``_templates_history``.
    """

    def _allocate(self, user: User, method: str, tmpl: dict[str, Any], name: str | None,
                  hold: bool, *, default_name: str) -> int:
        for required in ("CPU", "MEMORY"):
            if required not in tmpl:
                raise OneFault(ALLOCATE, f"Error allocating a new virtual machine template. "
                                         f"No {required} in template.")
        try:
            usage = {"VMS": 1.0, "CPU": float(first(tmpl["CPU"])),
                     "MEMORY": float(first(tmpl["MEMORY"]))}
        except ValueError:
            raise OneFault(ALLOCATE, "Error allocating a new virtual machine template. "
                                     "CPU and MEMORY must be numbers.") from None
        with self._lock:
            self._charge(user, usage)
            vm_id = next(self._vm_ids)
            fail_boot, self._fail_next_boot = self._fail_next_boot, False
        context = dict(tmpl["CONTEXT"]) if isinstance(tmpl.get("CONTEXT"), dict) else {}
        try:
            host = self.host_factory(vm_id, context)
        except Exception as exc:  # noqa: BLE001 - reported to the caller like a driver error
            with self._lock:
                self._release(user, usage)
            raise OneFault(INTERNAL, f"Cannot create the VM's host: {exc}") from None
        template = {k: v for k, v in tmpl.items() if k in _WELL_KNOWN}
        user_template = {k: v for k, v in tmpl.items() if k not in _WELL_KNOWN}
        nics = template.get("NIC")
        first_nic = dict(first(nics)) if isinstance(first(nics), dict) else {"NETWORK_ID": "0"}
        first_nic.update({"IP": host.ip, "MAC": _mac(host.ip), "NETWORK": "nebulahub-test",
                          "NIC_ID": "0", "BRIDGE": "br0", "TARGET": f"one-{vm_id}-0"})
        template["NIC"] = [first_nic] + nics[1:] if isinstance(nics, list) else first_nic
        if "CONTEXT" in template:
            ctx = dict(template["CONTEXT"])
            if ctx.get("NETWORK", "").upper() == "YES":
                ctx.update({"ETH0_IP": host.ip, "ETH0_MAC": first_nic["MAC"]})
            ctx.update({"DISK_ID": "1", "TARGET": "hda"})
            template["CONTEXT"] = ctx
        template["VMID"] = str(vm_id)
        vm = Vm(vm_id, user, name or f"{default_name}-{vm_id}", template, user_template,
                host=host, fail_boot=fail_boot, usage=usage)
        with self._lock:
            self.vms[vm_id] = vm
            self._remember_templates(vm)
            if hold:
                vm.set_state(HOLD, LCM_INIT)
            else:
                self._schedule(vm, self.step_seconds, self._step)
        return vm_id

    # ------------------------------------------------------------ quota

    def _charge(self, user: User, usage: dict[str, float]) -> None:
        if user.id == 0:  # oneadmin has no quota
            return
        for metric in ("VMS", "CPU", "MEMORY"):
            limit = user.limits[metric]
            if limit == DEFAULT:
                limit = self.default_limits[metric]
            if limit != UNLIMITED and user.used[metric] + usage[metric] > limit:
                raise OneFault(AUTHORIZATION, f"User [{user.id}] : user [{user.id}] limit of "
                                              f"{limit:g} reached for {metric} quota in VM.")
        for metric in usage:
            user.used[metric] += usage[metric]
        user.quota_touched = True

    def _release(self, user: User, usage: dict[str, float]) -> None:
        if user.id == 0:
            return
        for metric, amount in usage.items():
            user.used[metric] = max(user.used[metric] - amount, 0.0)

    # ------------------------------------------------------------ life cycle

    def _remember_templates(self, vm: Vm) -> None:
        self._templates_history.append(render_template("TEMPLATE", vm.template))
        self._templates_history.append(render_template("USER_TEMPLATE", vm.user_template))

    def _schedule(self, vm: Vm, delay: float, fn: Callable[[Vm], None]) -> None:
        vm.timer = threading.Timer(delay, fn, args=(vm,))
        vm.timer.daemon = True
        vm.timer.start()

    def _step(self, vm: Vm) -> None:
        with self._lock:
            if vm.state == DONE or self._stopped:
                return
            if vm.state == PENDING:
                vm.set_state(ACTIVE, PROLOG)
                self._schedule(vm, self.step_seconds, self._step)
            elif vm.lcm_state == PROLOG:
                vm.set_state(ACTIVE, BOOT)
                self._schedule(vm, self.step_seconds + self._boot_delay, self._step)
            elif vm.lcm_state == BOOT:
                if vm.fail_boot:
                    vm.set_state(ACTIVE, BOOT_FAILURE)
                    vm.user_template["ERROR"] = (
                        f"{time.ctime()} : Error deploying virtual machine: Could not create "
                        f"domain from /var/lib/one//datastores/0/{vm.id}/deployment.0")
                    self._remember_templates(vm)
                    return
                vm.set_state(ACTIVE, RUNNING)
                if not self._ssh_never:
                    self._schedule(vm, self.sshd_delay, self._start_sshd)

    def _start_sshd(self, vm: Vm) -> None:
        with self._lock:
            if vm.state == DONE or self._stopped:
                return
        try:
            vm.host.start_sshd()
        except Exception as exc:  # noqa: BLE001 - a test inspects host_errors
            self.host_errors.append(f"vm {vm.id}: start_sshd: {exc}")

    def _destroy_host(self, vm: Vm) -> None:
        try:
            vm.host.destroy()
        except Exception as exc:  # noqa: BLE001
            self.host_errors.append(f"vm {vm.id}: destroy: {exc}")

    def _to_done(self, vm: Vm) -> None:
        if vm.timer:
            vm.timer.cancel()
        vm.set_state(DONE, LCM_INIT)
        vm.etime = int(time.time())
        self._release(vm.owner, vm.usage)

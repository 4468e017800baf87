"""The XML-RPC surface of the OpenNebula double: dispatch, authentication, injected failures,
the ``double.*`` control methods, and the ``one.template.*``, ``one.vm.*``, ``one.vmpool.*``,
``one.user.*`` and ``one.system.*`` handlers, answering the way oned 7.3.80 does.

Sources (OpenNebula/one, tag release-7.3.80, line numbers checked):
``src/rm/api/TemplateAPI.cc`` 315-470 (``instantiate_helper``: a non-empty extra template
needs CREATE on TEMPLATE, lines 395-420; quota lines 420-436), 562-594 (``merge``: an extra
template that does not parse is INTERNAL); ``src/rm/api/SharedAPI.cc`` 87-91 (vm.allocate: a
template that does not parse is INTERNAL); ``src/rm/api/VirtualMachineAPI.cc`` 250-365
(``update``: type 0/1 else RPC_API, unparsable text ACTION), 727-858 (``action``), 3220-3309
(``recover``), 4051-4114 (``vm_authorization``: NO_EXISTS before the permission check);
``src/vm/VirtualMachine.cc`` 960-995 and 1303-1311 (CPU/MEMORY checks, ALLOCATE).
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from tests.one_errors import (ACTION, ALLOCATE, AUTHENTICATION, AUTHORIZATION, IMAGE_OBJECT,
                              INTERNAL, NO_EXISTS, TEMPLATE_OBJECT, USER_OBJECT, VM_OBJECT,
                              XML_RPC_API, OneFault, failure_message, not_authorized)
from tests.one_hosts import configure_guest, lease_of
from tests.one_images import datastore_quota_xml
from tests.one_vms import CLONING, DONE, HOLD, LCM_INIT, User, Vm
from tests.one_xml import (PERMISSIONS, TemplateSyntaxError, first, merge_template,
                           network_context, parse_template, render_template, user_xml, vm_xml)

REDACTED = "REDACTED"
_WELL_KNOWN = {"CPU", "VCPU", "MEMORY", "DISK", "NIC", "NIC_ALIAS", "CONTEXT", "GRAPHICS", "OS",
               "FEATURES", "INPUT", "RAW", "SCHED_REQUIREMENTS", "SCHED_DS_REQUIREMENTS",
               "SCHED_RANK", "MEMORY_UNIT_COST", "CPU_COST", "MEMORY_COST", "DISK_COST",
               "VMGROUP", "TOPOLOGY", "NUMA_NODE", "PCI", "HYPERVISOR", "TEMPLATE_ID",
               "TEMPLATE_NAME", "AS_UID", "AS_GID", "VROUTER_ID", "SECURITY_GROUP_RULE",
               "AUTOMATIC_REQUIREMENTS"}
# VM actions oned knows (include/VMActions.h) that the double does not perform.
_OTHER_ACTIONS = {"hold", "release", "stop", "suspend", "resume", "reboot", "reboot-hard",
                  "resched", "unresched", "poweroff", "poweroff-hard", "undeploy",
                  "undeploy-hard"}
_CONTROLS = {"fail_next_boot", "ssh_never", "boot_delay", "set_quota", "set_default_quota",
             "set_sshd_delay", "all_templates_text", "methods_called", "shutdown_delay",
             "prolog_delay", "set_vm_state", "unschedulable", "place_vms_in_cluster",
             "next_nic_without_ip", "image_kind", "grant_admin", "deny_template_create",
             "fail_next", "clear_failures", "add_datastore", "set_datastore_free",
             "set_datastore_quota", "image_create_delay", "fail_next_image_create",
             "set_image_state", "shared_filesystem", "image_dir"}


@dataclass(frozen=True)
class Call:
    """One XML-RPC call the double received; the session is replaced by ``REDACTED``."""
    method: str
    args: tuple


def _object_of(method: str) -> str:
    if method.startswith("one.template."):
        return TEMPLATE_OBJECT
    if method.startswith(("one.image.", "one.imagepool.")):
        return IMAGE_OBJECT
    return USER_OBJECT if method.startswith("one.user.") else VM_OBJECT


class OneApi:
    """The API half of :class:`tests.one_double.OneDouble` (a mixin; the XML-RPC server
    dispatches to :meth:`_dispatch`).

    Uses the double's ``_lock``, ``users``, ``templates``, ``vms``, ``calls``,
    ``default_limits``, ``_failures``, its knobs and the :class:`tests.one_vms.VmLifecycle`
    half.
    """

    def _dispatch(self, method: str, params: tuple):
        if method.startswith("double."):
            return self._control(method[len("double."):], params)
        self.calls.append(Call(method, (REDACTED,) + tuple(params[1:])))
        handler = getattr(self, "_rpc_" + method.replace("one.", "", 1).replace(".", "_"), None)
        if handler is None or not method.startswith("one."):
            raise Exception(f'method "{method}" not supported')  # becomes an XML-RPC fault
        user = self._authenticate(params[0] if params else "")
        try:
            if user is None:
                raise OneFault(AUTHENTICATION)
            self._injected_failure(method, params[1:])
            return [True, handler(user, *params[1:]), 0]
        except OneFault as fault:
            text = failure_message(method, fault, user.id if user else -1, _object_of(method))
            return [False, text, fault.code, fault.resp_id, 0]
        except TypeError as exc:
            return [False, f"[{method}] wrong parameters: {exc}", XML_RPC_API, -1, 0]

    def _injected_failure(self, method: str, args: tuple) -> None:
        with self._lock:
            queue = self._failures.get(method)
            if not queue:
                return
            code, message, left = queue[0]
            if left is not None:
                if left <= 1:
                    queue.pop(0)
                else:
                    queue[0] = (code, message, left - 1)
        resp_id = next((a for a in args if isinstance(a, int) and not isinstance(a, bool)), -1)
        raise OneFault(code, message, resp_id)

    def _control(self, name: str, params: tuple):
        if name == "api_down":
            threading.Thread(target=self.api_down, args=params, daemon=True).start()
            return True
        if name not in _CONTROLS:
            raise Exception(f'method "double.{name}" not supported')
        result = getattr(self, name)(*params)
        return True if result is None else result

    def _authenticate(self, session: str) -> User | None:
        name, _, password = str(session).partition(":")
        user = self.users.get(name)
        return user if user is not None and user.password == password else None

    # ------------------------------------------------------------ one.template.*

    def _template(self, tid: int) -> tuple[str, dict[str, Any]]:
        if tid not in self.templates:
            raise OneFault(NO_EXISTS, resp_id=tid)
        return self.templates[tid]

    def _rpc_template_info(self, user, tid, *_):
        name, attrs = self._template(tid)
        return (f"<VMTEMPLATE><ID>{tid}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>"
                f"<GNAME>oneadmin</GNAME><NAME>{escape(name)}</NAME>{PERMISSIONS}"
                f"<REGTIME>{int(time.time())}</REGTIME>{render_template('TEMPLATE', attrs)}"
                "</VMTEMPLATE>")

    def _rpc_template_instantiate(self, user, tid, name="", hold=False, extra="",
                                  persistent=False):
        tname, attrs = self._template(tid)
        try:
            uattrs = parse_template(extra)
        except TemplateSyntaxError as exc:
            raise OneFault(INTERNAL, str(exc)) from None
        tmpl = merge_template(attrs, uattrs)
        tmpl.update({"TEMPLATE_NAME": tname, "TEMPLATE_ID": str(tid)})
        if uattrs and user.id != 0 and not user.may_create_templates:
            raise OneFault(AUTHORIZATION, not_authorized("CREATE", "TEMPLATE"))
        return self._allocate(user, tmpl, name or None, hold, default_name=tname)

    # ------------------------------------------------------------ one.vm.*

    def _rpc_vm_allocate(self, user, template, hold=False):
        try:
            tmpl = parse_template(template)
        except TemplateSyntaxError as exc:
            raise OneFault(INTERNAL, str(exc)) from None
        name = tmpl.pop("NAME", None)
        return self._allocate(user, tmpl, first(name) if name else None, hold,
                              default_name="one")

    def _vm(self, vm_id: int, user: User, op: str) -> Vm:
        vm = self.vms.get(vm_id)
        if vm is None:
            raise OneFault(NO_EXISTS, resp_id=vm_id)
        if user.id != 0 and vm.owner is not user:
            raise OneFault(AUTHORIZATION, not_authorized(op, "VM", vm_id))
        return vm

    def _rpc_vm_info(self, user, vm_id, *_):
        with self._lock:
            return vm_xml(self._vm(vm_id, user, "USE"), extended=True)

    def _rpc_vm_action(self, user, action, vm_id):
        effects: list = []
        with self._lock:
            vm = self._vm(vm_id, user, "MANAGE")
            if action in ("terminate", "terminate-hard"):
                self._terminate(vm, action, effects)
            elif action in _OTHER_ACTIONS:
                raise OneFault(ACTION, f'Action "{action}" is not supported by the OpenNebula '
                                       "double")
            else:
                raise OneFault(ACTION, f'Action "{action}" is not supported')
        self._run(effects)
        return vm_id

    def _rpc_vm_recover(self, user, vm_id, operation):
        if operation not in range(6):
            raise OneFault(ACTION, "Wrong recovery operation code")
        effects: list = []
        with self._lock:
            vm = self._vm(vm_id, user, "ADMIN")
            self._check_admin(user, vm)
            if operation != 3:
                raise OneFault(ACTION, f"Recover operation {operation} is not supported by "
                                       "the OpenNebula double")
            self._delete(vm, effects)
        self._run(effects)
        return vm_id

    def _rpc_vm_update(self, user, vm_id, template, append=0):
        with self._lock:
            self._vm(vm_id, user, "MANAGE")
        if int(append) not in (0, 1):
            raise OneFault(XML_RPC_API, "Wrong update type")
        try:
            new = parse_template(template)
        except TemplateSyntaxError as exc:
            raise OneFault(ACTION, str(exc)) from None
        with self._lock:
            vm = self.vms[vm_id]
            vm.user_template = merge_template(vm.user_template, new) if append else new
            self._remember_templates(vm)
        return vm_id

    # ------------------------------------------------------------ creating VMs

    def _allocate(self, user: User, tmpl: dict[str, Any], name: str | None, hold: bool, *,
                  default_name: str) -> int:
        # One allocation at a time: the quota check and the new VM's usage must not interleave
        # with another allocation while the VM's host is being made (outside ``_lock``).
        with self._allocating:
            try:
                return self._allocate_now(user, tmpl, name, hold, default_name)
            except OneFault:
                with self._lock:
                    self._cleanup_quota(user)
                raise

    def _allocate_now(self, user: User, tmpl: dict[str, Any], name: str | None, hold: bool,
                      default_name: str) -> int:
        cpu, memory = _size(tmpl)
        with self._lock:
            self._authorize_disks(user, tmpl)
            request = {"VMS": 1.0, "RUNNING_VMS": 1.0, "CPU": cpu, "RUNNING_CPU": cpu,
                       "MEMORY": memory, "RUNNING_MEMORY": memory, "SYSTEM_DISK_SIZE": 0.0}
            refusal = self._check_quota(user, request, None)
            if refusal:
                raise OneFault(AUTHORIZATION, refusal)
            if cpu <= 0:
                raise OneFault(ALLOCATE, "CPU attribute must be a positive float or integer "
                                         "value.")
            if memory <= 0 or memory != int(memory):
                raise OneFault(ALLOCATE, "MEMORY attribute must be a positive integer value.")
            vm_id = self._next_vm_id   # taken only if the VM is made (PoolSQL::allocate)
            disks, cloning, context_disk = self._acquire_disks(vm_id, user, tmpl)
            self._next_vm_id += 1
            fail_boot, self._fail_next_boot = self._fail_next_boot, False
            no_ip, self._next_nic_without_ip = self._next_nic_without_ip, False
            image = self._image
        asked = _resolve(dict(tmpl["CONTEXT"]) if isinstance(tmpl.get("CONTEXT"), dict)
                         else {}, user)
        try:
            host = self.host_factory(vm_id, asked)
        except Exception as exc:  # noqa: BLE001 - reported to the caller like a driver error
            with self._lock:
                for disk in disks:
                    if disk.get("IMAGE_ID") and int(disk["IMAGE_ID"]) in self.images:
                        self._release_image(vm_id, self.images[int(disk["IMAGE_ID"])], False)
            raise OneFault(INTERNAL, f"Cannot create the VM's host: {exc}") from None
        template = {k: v for k, v in tmpl.items() if k in _WELL_KNOWN}
        user_template = {k: v for k, v in tmpl.items() if k not in _WELL_KNOWN}
        nics = [dict(n) for n in (template.get("NIC") if isinstance(template.get("NIC"), list)
                                  else [template["NIC"]] if "NIC" in template else [])]
        vnets = []
        for i, nic in enumerate(nics):
            lease = lease_of(host) if i == 0 else {}
            if no_ip and i == 0:  # an Ethernet-only address range: a MAC, no IP
                lease = {k: v for k, v in lease.items() if k != "IP"}
                lease["MAC"] = f"02:00:00:00:{vm_id >> 8 & 255:02x}:{vm_id & 255:02x}"
            nic.update({k: lease[k] for k in ("IP", "MAC") if k in lease})
            nic.update({"NIC_ID": str(i), "NAME": f"NIC{i}", "AR_ID": "0",
                        "NETWORK": "nebulahub-test", "NETWORK_ID": nic.get("NETWORK_ID", "0"),
                        "NETWORK_UNAME": "oneadmin", "BRIDGE": "br0", "VN_MAD": "bridge",
                        "SECURITY_GROUPS": "0", "TARGET": f"one-{vm_id}-{i}"})
            vnets.append(lease)
        if nics:
            template["NIC"] = nics if len(nics) > 1 else nics[0]
        context = None
        if "CONTEXT" in template:
            context = network_context(asked, nics, vnets)
            context.update(context_disk)
            template["CONTEXT"] = context
        template["VMID"] = str(vm_id)
        try:
            configure_guest(host, context or {}, *image)
        except Exception as exc:  # noqa: BLE001 - a test inspects host_errors
            self.host_errors.append(f"vm {vm_id}: configure_guest: {exc}")
        vm = Vm(vm_id, user, name or f"{default_name}-{vm_id}", template, user_template,
                host=host, fail_boot=fail_boot, cpu=cpu, memory=memory, disks=disks,
                on_hold=bool(hold), image_kind=image[0])
        with self._lock:
            self.vms[vm_id] = vm
            if cloning:   # an image is still LOCKED: the VM waits for it (CLONING)
                vm.set_state(CLONING, LCM_INIT)
            elif hold:
                vm.set_state(HOLD, LCM_INIT)
            else:
                self._drive(vm)
            self._remember_templates(vm)
        return vm_id

    def _remember_templates(self, vm: Vm) -> None:
        self._templates_history.append(render_template("TEMPLATE", vm.template))
        self._templates_history.append(render_template("USER_TEMPLATE", vm.user_template))

    # ------------------------------------------------------------ one.vmpool.*

    def _pool(self, user: User, who: int, start: int, end: int, state: int) -> list[Vm]:
        with self._lock:
            vms = sorted(self.vms.values(), key=lambda v: v.id)
        if who in (-3, -1) or (who == -2 and user.id != 0):
            vms = [v for v in vms if v.owner is user]
        elif who >= 0:
            vms = [v for v in vms if v.owner.id == who and (user.id == 0 or v.owner is user)]
        if state == -1:
            vms = [v for v in vms if v.state != DONE]
        elif state >= 0:
            vms = [v for v in vms if v.state == state]
        if end < -1:  # pagination: start is the offset, -end the page size
            return vms[max(start, 0):max(start, 0) - end]
        return [v for v in vms if (start < 0 or v.id >= start) and (end < 0 or v.id <= end)]

    def _pool_xml(self, user: User, who: int, start: int, end: int, state: int, *,
                  extended: bool) -> str:
        vms = self._pool(user, who, start, end, state)
        with self._lock:
            return "<VM_POOL>" + "".join(vm_xml(v, extended=extended) for v in vms) + "</VM_POOL>"

    def _rpc_vmpool_info(self, user, who=-2, start=-1, end=-1, state=-1, *_):
        return self._pool_xml(user, who, start, end, state, extended=False)

    def _rpc_vmpool_infoextended(self, user, who=-2, start=-1, end=-1, state=-1, *_):
        return self._pool_xml(user, who, start, end, state, extended=True)

    # ------------------------------------------------------------ one.user.*

    def _rpc_user_info(self, user, uid=-1, *_):
        with self._lock:
            if uid == -1:
                target = user
            else:
                target = next((u for u in self.users.values() if u.id == uid), None)
                if target is None:
                    raise OneFault(NO_EXISTS, resp_id=uid)
                if user.id != 0 and target is not user:
                    raise OneFault(AUTHORIZATION, not_authorized("USE", "USER", uid))
            entries = self.quota_entries(target) if target.id != 0 else []
            return user_xml(target, entries, self.default_limits,
                            datastore_quota_xml(target.ds_quota))

    def _rpc_system_version(self, user):
        return "7.3.80"


def _size(tmpl: dict[str, Any]) -> tuple[float, float]:
    """CPU and MEMORY as numbers; a missing or unreadable one counts as 0 (refused later,
    after the quota check, as VirtualMachine::insert does)."""
    def number(name: str) -> float:
        try:
            return float(first(tmpl.get(name, "0")))
        except (TypeError, ValueError):
            return 0.0
    return number("CPU"), number("MEMORY")


_VARIABLE = re.compile(r"\$(USER\[[A-Z0-9_]+\]|UNAME|UID|GNAME|GID)")


def _resolve(context: dict[str, str], user: User) -> dict[str, str]:
    """The CONTEXT variables about the owner (``$USER[...]`` from the user's empty TEMPLATE,
    ``$UNAME``...), as oned's parse_context resolves them."""
    known = {"UNAME": user.name, "UID": str(user.id), "GNAME": user.gname, "GID": str(user.gid)}
    return {k: _VARIABLE.sub(lambda m: known.get(m.group(1), ""), str(v))
            for k, v in context.items()}

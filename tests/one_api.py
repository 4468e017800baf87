"""The XML-RPC surface of the OpenNebula double: dispatch, authentication, the ``double.*``
control methods, and the ``one.template.*``, ``one.vm.*``, ``one.vmpool.*``, ``one.user.*`` and
``one.system.*`` handlers, answering the way oned does."""
from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from tests.one_errors import (ACTION, ALLOCATE, AUTHENTICATION, AUTHORIZATION, INTERNAL,
                              NO_EXISTS, XML_RPC_API, OneFault)
from tests.one_vms import DONE, User, Vm
from tests.one_xml import (PERMISSIONS, first, merge_template, parse_template, render_template,
                           user_xml, vm_xml)

REDACTED = "REDACTED"


@dataclass(frozen=True)
class Call:
    """One XML-RPC call the double received; the session is replaced by ``REDACTED``."""
    method: str
    args: tuple


class OneApi:
    """The API half of :class:`tests.one_double.OneDouble` (a mixin; the XML-RPC server
    dispatches to :meth:`_dispatch`).

    Uses the double's ``_lock``, ``users``, ``templates``, ``vms``, ``calls``,
    ``default_limits``, its control methods and the :class:`tests.one_vms.VmLifecycle` half.
    """

    def _dispatch(self, method: str, params: tuple):
        if method.startswith("double."):
            return self._control(method[len("double."):], params)
        self.calls.append(Call(method, (REDACTED,) + tuple(params[1:])))
        handler = getattr(self, "_rpc_" + method.replace("one.", "", 1).replace(".", "_"), None)
        if handler is None or not method.startswith("one."):
            raise Exception(f'method "{method}" not supported')  # becomes an XML-RPC fault
        try:
            user = self._authenticate(params[0] if params else "")
            if user is None:
                raise OneFault(AUTHENTICATION, "User couldn't be authenticated, aborting call.")
            return [True, handler(user, *params[1:]), 0]
        except OneFault as fault:
            return [False, f"[{method}] {fault.message}", fault.code, fault.resp_id, 0]
        except TypeError as exc:
            return [False, f"[{method}] wrong parameters: {exc}", XML_RPC_API, -1, 0]

    def _control(self, name: str, params: tuple):
        allowed = {"fail_next_boot", "ssh_never", "boot_delay", "set_quota", "set_default_quota",
                   "set_sshd_delay", "all_templates_text", "methods_called"}
        if name == "api_down":
            threading.Thread(target=self.api_down, args=params, daemon=True).start()
            return True
        if name not in allowed:
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
            raise OneFault(NO_EXISTS, f"Error getting VM template [{tid}].", tid)
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
            tmpl = merge_template(attrs, parse_template(extra))
        except (ValueError, ET.ParseError) as exc:
            raise OneFault(INTERNAL, f"Error parsing extra template: {exc}") from None
        tmpl["TEMPLATE_ID"] = str(tid)
        return self._allocate(user, "one.template.instantiate", tmpl, name or None, hold,
                              default_name=tname)

    # ------------------------------------------------------------ one.vm.*

    def _rpc_vm_allocate(self, user, template, hold=False):
        try:
            tmpl = parse_template(template)
        except (ValueError, ET.ParseError) as exc:
            raise OneFault(ALLOCATE, f"Error allocating a new virtual machine template. "
                                     f"Parse error: {exc}") from None
        name = tmpl.pop("NAME", None)
        return self._allocate(user, "one.vm.allocate", tmpl, first(name) if name else None,
                              hold, default_name="one")

    def _vm(self, vm_id: int, user: User) -> Vm:
        vm = self.vms.get(vm_id)
        if vm is None:
            raise OneFault(NO_EXISTS, f"Error getting virtual machine [{vm_id}].", vm_id)
        if user.id != 0 and vm.owner is not user:
            raise OneFault(AUTHORIZATION, f"User [{user.id}] : Not authorized to perform "
                                          f"MANAGE VM [{vm_id}].", vm_id)
        return vm

    def _rpc_vm_info(self, user, vm_id, *_):
        with self._lock:
            return vm_xml(self._vm(vm_id, user), extended=True)

    def _rpc_vm_action(self, user, action, vm_id):
        with self._lock:
            vm = self._vm(vm_id, user)
            if action not in ("terminate", "terminate-hard"):
                raise OneFault(ACTION, f'Error performing action "{action}": not supported '
                                       f"by the OpenNebula double.", vm_id)
            if vm.state == DONE:
                raise OneFault(ACTION, f'Error performing action "{action}": Could not '
                                       f"terminate VM {vm_id}, wrong state DONE.", vm_id)
            self._to_done(vm)
        self._destroy_host(vm)
        return vm_id

    def _rpc_vm_recover(self, user, vm_id, operation):
        with self._lock:
            vm = self._vm(vm_id, user)
            if operation != 3 or vm.state == DONE:
                raise OneFault(ACTION, f"Error performing recover operation {operation} on "
                                       f"VM {vm_id}.", vm_id)
            self._to_done(vm)
        self._destroy_host(vm)
        return vm_id

    def _rpc_vm_update(self, user, vm_id, template, append=0):
        try:
            new = parse_template(template)
        except (ValueError, ET.ParseError) as exc:
            raise OneFault(INTERNAL, f"Error parsing template: {exc}", vm_id) from None
        with self._lock:
            vm = self._vm(vm_id, user)
            vm.user_template = merge_template(vm.user_template, new) if append else new
            self._remember_templates(vm)
        return vm_id

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
                    raise OneFault(NO_EXISTS, f"Error getting user [{uid}].", uid)
                if user.id != 0 and target is not user:
                    raise OneFault(AUTHORIZATION, f"User [{user.id}] : Not authorized to "
                                                  f"perform USE USER [{uid}].", uid)
            return user_xml(target, self.default_limits)

    def _rpc_system_version(self, user):
        return "7.0.0"

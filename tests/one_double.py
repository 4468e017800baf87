"""An OpenNebula XML-RPC double: oned's API surface that NebulaHub uses, served over HTTP.

In a test::

    double = OneDouble(users={"alice": "secret"}, step_seconds=0.05)
    endpoint = double.start()                       # http://127.0.0.1:PORT/RPC2
    ...                                             # pyone.OneServer(endpoint, "alice:secret")
    double.stop()

As a process (``python -m tests.one_double --user alice:secret --port 2633``) it serves until
killed; the control methods (``double.fail_next_boot``, ``double.set_quota``, ``double.api_down``
...) are then XML-RPC methods on the same endpoint.

Answers are built the way oned builds them (checked against oned's Request.cc / Quota.cc and
parsed by pyone's generateDS bindings in the tests): ``[True, value, 0]`` on success and
``[False, "[one.x.y] message", code, id, 0]`` on failure, objects as XML strings with template
values in CDATA. Quota refusals are AUTHORIZATION (0x200) errors like oned's
``[one.template.instantiate] User [2] : user [2] limit of 1 reached for VMS quota in VM.``

Every VM is a real host from ``host_factory(vm_id, context)`` (see :func:`network_host_factory`;
without one, :class:`FakeHost`). It steps PENDING -> PROLOG -> BOOT -> RUNNING on timers and the
double calls ``host.start_sshd()`` once RUNNING; terminate calls ``host.destroy()``.
"""
from __future__ import annotations

import argparse
import itertools
import signal
import socketserver
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Callable
from xml.sax.saxutils import escape
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from tests.one_xml import (DEFAULT, PERMISSIONS, UNLIMITED, first, merge_template, parse_template,
                           render_template, user_xml, vm_xml)

AUTHENTICATION, AUTHORIZATION, NO_EXISTS, ACTION, XML_RPC_API, INTERNAL, ALLOCATE = (
    0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000, 0x4000)
PENDING, HOLD, ACTIVE, DONE = 1, 2, 3, 6                      # VM STATE
LCM_INIT, PROLOG, BOOT, RUNNING, BOOT_FAILURE = 0, 1, 2, 3, 36  # LCM_STATE
REDACTED = "REDACTED"
_WELL_KNOWN = {"CPU", "VCPU", "MEMORY", "DISK", "NIC", "NIC_ALIAS", "CONTEXT", "GRAPHICS", "OS",
               "FEATURES", "INPUT", "RAW", "SCHED_REQUIREMENTS", "SCHED_DS_REQUIREMENTS",
               "SCHED_RANK", "MEMORY_UNIT_COST", "CPU_COST", "MEMORY_COST", "DISK_COST",
               "VMGROUP", "TOPOLOGY", "NUMA_NODE", "PCI", "HYPERVISOR", "TEMPLATE_ID",
               "AS_UID", "AS_GID", "VROUTER_ID", "SECURITY_GROUP_RULE", "AUTOMATIC_REQUIREMENTS"}


class OneFault(Exception):
    """An oned failure answer: ``[False, message, code, resp_id, 0]``."""

    def __init__(self, code: int, message: str, resp_id: int = -1):
        super().__init__(message)
        self.code, self.message, self.resp_id = code, message, resp_id


# ---------------------------------------------------------------- hosts

class FakeHost:
    """A stand-in host for tests that need no network: records what the double did to it."""

    _addresses = itertools.count(2)

    def __init__(self, vm_id: int, context: dict[str, str]):
        n = next(self._addresses)
        self.name = f"vm{vm_id}"
        self.ip = f"10.99.{n // 250}.{n % 250 + 2}"
        self.authorized_keys = [k for k in context.get("SSH_PUBLIC_KEY", "").splitlines() if k]
        self.sshd_started = False
        self.destroyed = False

    def start_sshd(self) -> None:
        self.sshd_started = True

    def stop_sshd(self) -> None:
        self.sshd_started = False

    def set_authorized_keys(self, keys) -> None:
        self.authorized_keys = list(keys)

    def destroy(self) -> None:
        self.destroyed = True
        self.sshd_started = False


def network_host_factory(network, *, behind=None) -> Callable[[int, dict], Any]:
    """A host factory making each VM a namespace host of a ``tests.nethosts.TestNetwork``
    (behind ``behind``, a bastion, if given), with the VM's SSH_PUBLIC_KEY lines authorized
    and sshd not started until the VM is RUNNING."""
    def factory(vm_id: int, context: dict[str, str]):
        keys = [k for k in context.get("SSH_PUBLIC_KEY", "").splitlines() if k.strip()]
        return network.add_host(f"vm{vm_id}", behind=behind, authorized_keys=keys,
                                start_sshd=False)
    return factory


# ---------------------------------------------------------------- records

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


@dataclass(frozen=True)
class Call:
    """One XML-RPC call the double received; the session is replaced by ``REDACTED``."""
    method: str
    args: tuple


# ---------------------------------------------------------------- the double

class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2", "/")

    def do_POST(self):
        if self.server.double._unavailable_503():
            self.send_response(503, "Service Unavailable")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_POST()

    def log_message(self, *args):  # keep test output quiet
        pass


class _Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class OneDouble:
    """The double. ``users`` maps user name to password (``oneadmin`` gets id 0, others 2, 3...).

    ``host_factory(vm_id, context) -> host`` makes each VM's host (default :class:`FakeHost`),
    or pass ``network`` (a TestNetwork) and optionally ``bastion`` for namespace hosts.
    ``step_seconds`` is the time per step PENDING -> PROLOG -> BOOT -> RUNNING; ``sshd_delay``
    the extra time between RUNNING and ``host.start_sshd()``.
    """

    def __init__(self, users: dict[str, str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, host_factory: Callable[[int, dict], Any] | None = None,
                 network=None, bastion=None, step_seconds: float = 0.3,
                 sshd_delay: float = 0.0):
        self.bind = (host, port)
        if host_factory is None:
            host_factory = (network_host_factory(network, behind=bastion) if network is not None
                            else FakeHost)
        self.host_factory = host_factory
        self.step_seconds = step_seconds
        self.sshd_delay = sshd_delay
        self.users: dict[str, User] = {}
        ids = itertools.count(2)
        for name, password in (users or {"oneadmin": "opennebula"}).items():
            uid = 0 if name == "oneadmin" else next(ids)
            self.users[name] = User(uid, name, password, gid=0 if uid == 0 else 1,
                                    gname="oneadmin" if uid == 0 else "users")
        self.default_limits = {"VMS": UNLIMITED, "CPU": UNLIMITED, "MEMORY": UNLIMITED}
        self.templates: dict[int, tuple[str, dict[str, Any]]] = {}
        self.add_template("nebulahub-small", {
            "CPU": "1", "VCPU": "1", "MEMORY": "512", "DISK": {"IMAGE_ID": "0"},
            "NIC": {"NETWORK_ID": "0"},
            "CONTEXT": {"NETWORK": "YES", "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]"}})
        self.add_template("nebulahub-large", {
            "CPU": "2", "VCPU": "2", "MEMORY": "2048", "DISK": {"IMAGE_ID": "0"},
            "NIC": {"NETWORK_ID": "0"}, "CONTEXT": {"NETWORK": "YES"}})
        self.vms: dict[int, Vm] = {}
        self.calls: list[Call] = []
        self.host_errors: list[str] = []
        self._templates_history: list[str] = []
        self._vm_ids = itertools.count(0)
        self._lock = threading.RLock()
        self._fail_next_boot = False
        self._ssh_never = False
        self._boot_delay = 0.0
        self._down_until = 0.0
        self._down_mode = "refuse"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._reopen: threading.Timer | None = None
        self._stopped = False

    # ------------------------------------------------------------ serving

    @property
    def endpoint(self) -> str:
        """``http://HOST:PORT/RPC2`` (after :meth:`start`)."""
        return f"http://{self.bind[0]}:{self.bind[1]}/RPC2"

    def start(self) -> str:
        """Start serving in a background thread; return the endpoint URL."""
        self._stopped = False
        self._listen()
        return self.endpoint

    def _listen(self) -> None:
        server = _Server(self.bind, requestHandler=_Handler, allow_none=False,
                         logRequests=False)
        server.double = self
        server.register_instance(self)  # dispatch goes through _dispatch below
        self.bind = server.server_address[:2]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="one-double", daemon=True)
        self._thread.start()

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def stop(self) -> None:
        """Stop serving, cancel timers and destroy the hosts of VMs that are not DONE."""
        self._stopped = True
        if self._reopen:
            self._reopen.cancel()
        self._close_listener()
        with self._lock:
            vms = [vm for vm in self.vms.values() if vm.state != DONE]
            for vm in vms:
                if vm.timer:
                    vm.timer.cancel()
        for vm in vms:
            self._destroy_host(vm)

    def __enter__(self) -> "OneDouble":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve until SIGTERM/SIGINT (for ``python -m tests.one_double``)."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        print(self.endpoint, flush=True)
        done.wait()
        self.stop()

    # ------------------------------------------------------------ failure injection

    def fail_next_boot(self) -> None:
        """The next VM created goes to ACTIVE/BOOT_FAILURE instead of RUNNING; no sshd."""
        with self._lock:
            self._fail_next_boot = True

    def ssh_never(self, never: bool = True) -> None:
        """VMs still reach RUNNING but their sshd is never started."""
        with self._lock:
            self._ssh_never = bool(never)

    def boot_delay(self, seconds: float) -> None:
        """Extra time VMs spend in BOOT before RUNNING."""
        with self._lock:
            self._boot_delay = float(seconds)

    def set_sshd_delay(self, seconds: float) -> None:
        """Extra time between RUNNING and ``host.start_sshd()``."""
        self.sshd_delay = float(seconds)

    def set_quota(self, user: str, vms: float | None = None, cpu: float | None = None,
                  memory: float | None = None) -> None:
        """Set a user's VM quota limits (-1 default, -2 unlimited; None leaves one as is)."""
        with self._lock:
            u = self.users[user]
            for metric, value in (("VMS", vms), ("CPU", cpu), ("MEMORY", memory)):
                if value is not None:
                    u.limits[metric] = float(value)
            u.quota_touched = True

    def set_default_quota(self, vms: float | None = None, cpu: float | None = None,
                          memory: float | None = None) -> None:
        """Set the default user quota (what a user limit of -1 means)."""
        with self._lock:
            for metric, value in (("VMS", vms), ("CPU", cpu), ("MEMORY", memory)):
                if value is not None:
                    self.default_limits[metric] = float(value)

    def api_down(self, seconds: float, mode: str = "refuse") -> None:
        """Make the API unavailable for ``seconds``: ``refuse`` closes the listening socket
        (connection refused) and reopens it on the same port; ``503`` answers HTTP 503."""
        if mode not in ("refuse", "503"):
            raise ValueError("mode is 'refuse' or '503'")
        with self._lock:
            self._down_until = time.monotonic() + seconds
            self._down_mode = mode
        if mode == "refuse":
            if self._reopen:
                self._reopen.cancel()
            self._close_listener()
            self._reopen = threading.Timer(seconds, self._reopen_listener)
            self._reopen.daemon = True
            self._reopen.start()

    def _reopen_listener(self) -> None:
        if not self._stopped and self._server is None:
            self._listen()

    def _unavailable_503(self) -> bool:
        return self._down_mode == "503" and time.monotonic() < self._down_until

    def add_template(self, name: str, attributes: dict[str, Any]) -> int:
        """Register a VM template; return its id."""
        tid = len(self.templates)
        self.templates[tid] = (name, dict(attributes))
        return tid

    # ------------------------------------------------------------ inspection

    def all_templates_text(self) -> str:
        """Every TEMPLATE and USER_TEMPLATE XML any VM ever had, one per line."""
        with self._lock:
            return "\n".join(self._templates_history)

    def host_of(self, vm_id: int):
        """The host object made for the VM."""
        return self.vms[vm_id].host

    def methods_called(self) -> list[str]:
        """Names of the XML-RPC methods received, in order."""
        return [c.method for c in self.calls]

    # ------------------------------------------------------------ dispatch

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

    def _to_done(self, vm: Vm) -> None:
        if vm.timer:
            vm.timer.cancel()
        vm.set_state(DONE, LCM_INIT)
        vm.etime = int(time.time())
        self._release(vm.owner, vm.usage)

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

    def _rpc_vmpool_info(self, user, who=-2, start=-1, end=-1, state=-1, *_):
        vms = self._pool(user, who, start, end, state)
        with self._lock:
            return "<VM_POOL>" + "".join(vm_xml(v, extended=False) for v in vms) + "</VM_POOL>"

    def _rpc_vmpool_infoextended(self, user, who=-2, start=-1, end=-1, state=-1, *_):
        vms = self._pool(user, who, start, end, state)
        with self._lock:
            return "<VM_POOL>" + "".join(vm_xml(v, extended=True) for v in vms) + "</VM_POOL>"

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


def _mac(ip: str) -> str:
    octets = [int(x) for x in ip.split(".")] if ip.count(".") == 3 else [0, 0, 0, 0]
    return "02:00:" + ":".join(f"{o:02x}" for o in octets)


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.one_double --user alice:secret [--port 2633] [--step 0.3]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2633)
    parser.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD")
    parser.add_argument("--step", type=float, default=0.3, help="seconds per VM state step")
    parser.add_argument("--network-prefix", help="make VMs namespace hosts of a TestNetwork "
                                                 "with this prefix (needs root)")
    parser.add_argument("--network-subnet", default="10.213.128.0/24")
    args = parser.parse_args(argv)
    users = dict(u.split(":", 1) for u in args.user) or None
    network = None
    if args.network_prefix:
        from tests.nethosts import TestNetwork
        network = TestNetwork(prefix=args.network_prefix, subnet=args.network_subnet).setup()
    try:
        OneDouble(users, host=args.host, port=args.port, network=network,
                  step_seconds=args.step).serve_forever()
    finally:
        if network is not None:
            network.teardown()


if __name__ == "__main__":
    main()

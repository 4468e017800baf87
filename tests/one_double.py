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

Modules: this one (construction, serving, control knobs, the command line), ``one_api``
(XML-RPC handlers), ``one_vms`` (VM records, life cycle, quota), ``one_hosts`` (the VMs' hosts),
``one_errors`` (oned's error codes), ``one_xml`` (template syntax and XML answers).
"""
from __future__ import annotations

import argparse
import itertools
import signal
import socketserver
import threading
import time
from typing import Any, Callable
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from tests.one_api import REDACTED, Call, OneApi
from tests.one_errors import (ACTION, ALLOCATE, AUTHENTICATION, AUTHORIZATION, INTERNAL,
                              NO_EXISTS, XML_RPC_API, OneFault)
from tests.one_hosts import FakeHost, network_host_factory
from tests.one_vms import (ACTIVE, BOOT, BOOT_FAILURE, DONE, HOLD, LCM_INIT, PENDING, PROLOG,
                           RUNNING, User, Vm, VmLifecycle)
from tests.one_xml import (DEFAULT, PERMISSIONS, UNLIMITED, first, merge_template, parse_template,
                           render_template, user_xml, vm_xml)

__all__ = [
    "OneDouble", "FakeHost", "network_host_factory", "main",
    "OneFault", "AUTHENTICATION", "AUTHORIZATION", "NO_EXISTS", "ACTION", "XML_RPC_API",
    "INTERNAL", "ALLOCATE", "PENDING", "HOLD", "ACTIVE", "DONE", "LCM_INIT", "PROLOG", "BOOT",
    "RUNNING", "BOOT_FAILURE", "REDACTED", "User", "Vm", "Call",
    "DEFAULT", "PERMISSIONS", "UNLIMITED", "first", "merge_template", "parse_template",
    "render_template", "user_xml", "vm_xml",
]


# ---------------------------------------------------------------- serving

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


class OneDouble(OneApi, VmLifecycle):
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

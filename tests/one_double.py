"""An OpenNebula XML-RPC double: oned 7.x's API surface that NebulaHub uses, served over HTTP,
behaving like oned (OpenNebula/one tag release-7.3.80, the release matching pyone 7.3.80; each
module cites the oned source files and line numbers it follows).

In a test::

    double = OneDouble(users={"alice": "secret"}, step_seconds=0.05)
    endpoint = double.start()                       # http://127.0.0.1:PORT/RPC2
    ...                                             # pyone.OneServer(endpoint, "alice:secret")
    double.stop()

As a process (``python -m tests.one_double --user alice:secret --port 2633``) it serves until
killed; the control methods (``double.fail_next_boot``, ``double.set_quota``, ``double.api_down``
...) are then XML-RPC methods on the same endpoint.

What oned does, the double does by default (the knobs only make a scenario happen):

* VMs step PENDING -> PROLOG -> BOOT -> RUNNING on timers of ``step_seconds``; the VM's host
  gets its sshd once RUNNING.
* ``terminate``/``terminate-hard`` follow oned's table by state: refused with ACTION (0x800)
  in PROLOG, BOOT, EPILOG, MIGRATE... (``Error performing action "terminate-hard": Could not
  terminate VM 5, wrong state PROLOG.``); from RUNNING asynchronous: SHUTDOWN -> EPILOG -> DONE.
  The guest (host) is destroyed when EPILOG starts; the user's quota is released at DONE.
* ``one.vm.recover(id, 3)`` (delete) needs ADMIN on the VM, which owners lack under oned's
  default umask: AUTHORIZATION (0x200) ``User [2] : Not authorized to perform ADMIN VM [5].``
* Quota: VM_QUOTA holds a global entry and per-cluster entries (CLUSTER_IDS) in the order they
  were made; the global entry is enforced at instantiate, a cluster entry when a VM is deployed
  in that cluster (refused: the VM stays PENDING with ERROR).
* CONTEXT gets oned's ETHx_* values only with NETWORK="YES"; without it the guest has no
  address. one-context images honour USERNAME.
* Images (``one_storage``, ``one_disks``): ``one.image.allocate`` makes an empty OS/DATABLOCK
  image, LOCKED while the datastore creates it, then READY; datastore quota charged at allocate
  and freed when the image is gone; a persistent image serves one VM at a time (USED_PERS; a
  second VM is refused at instantiate) and is READY again only when its VM is DONE (ERROR if the
  VM failed); an extra template's DISK replaces the template's DISKs (oned's merge);
  ``one.vm.diskresize`` in RUNNING/POWEROFF/UNDEPLOYED. Image 0 is a public OS image (the
  templates' DISK); datastores 0 system, 1 default (IMAGE_DS, TM local), 2 files.
* The guest's home: with NebulaHub's CONTEXT (NEBULAHUB_HOME plus NEBULAHUB_HOME_DISK or
  NEBULAHUB_HOME_FSTAB, and a START_SCRIPT_BASE64) the image's folder (or a shared
  filesystem's) is bind-mounted at the home in the VM host's own mount namespace
  (``one_hosts``).

Knobs (all also XML-RPC ``double.<name>`` methods in process mode):
``fail_next_boot()``, ``ssh_never(bool)``, ``boot_delay(s)``, ``prolog_delay(s)``,
``shutdown_delay(s)``, ``set_sshd_delay(s)``, ``set_vm_state(vm_id, state, lcm_state=0,
resume=False)``, ``unschedulable(message | None)``, ``place_vms_in_cluster(cluster_id)``,
``next_nic_without_ip()``, ``image_kind("one-context" | "cloud-init", default_user=None)``,
``grant_admin(user, allowed=True)``, ``deny_template_create(user, denied=True)``,
``set_quota(user, vms, cpu, memory, cluster_ids=None, running_vms, running_cpu,
running_memory)``, ``set_default_quota(vms, cpu, memory)``, ``fail_next(method, code, message,
times=1)``, ``clear_failures(method=None)``, ``api_down(seconds, mode)``; storage:
``set_datastore_quota(user, datastore_id, images=None, size_mb=None)``,
``add_datastore(name, ds_type="IMAGE_DS", tm_mad="local", free_mb=1048576,
persistent_only=False)``, ``set_datastore_free(datastore_id, free_mb)``,
``image_create_delay(s)``, ``fail_next_image_create(message="")``,
``set_image_state(image_id, state)``, ``shared_filesystem(source_prefix, local_dir)``.
Inspection: ``vms``, ``images``, ``datastores``, ``calls``, ``methods_called()``,
``all_templates_text()``, ``host_of(vm_id)``, ``image_dir(image_id)``, ``host_errors``.

Modules: this one (construction, serving, knobs, the command line), ``one_api`` (XML-RPC
handlers, allocation), ``one_vms`` (states, VM records, life cycle, quota), ``one_storage``
(images, datastores, datastore quota), ``one_disks`` (VM DISKs, disk resize, the guest's
home), ``one_images`` (image and datastore records, their XML), ``one_hosts`` (the VMs'
hosts and what their guests do with the context), ``one_errors`` (oned's error codes and
wording), ``one_xml`` (template syntax, context, XML answers).
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
from tests.one_errors import (ACTION, ALLOCATE, AUTHENTICATION, AUTHORIZATION, CODE_NAMES,
                              INTERNAL, LOCKED, NO_EXISTS, XML_RPC_API, OneFault)
from tests.one_hosts import CLOUD_INIT, IMAGE_KINDS, ONE_CONTEXT, FakeHost, network_host_factory
from tests.one_images import (IMAGE_DELETE, IMAGE_DISABLED, IMAGE_ERROR, IMAGE_INIT, IMAGE_LOCKED,
                              IMAGE_LOCKED_USED, IMAGE_LOCKED_USED_PERS, IMAGE_READY,
                              IMAGE_STATE_NAMES, IMAGE_USED, IMAGE_USED_PERS)
from tests.one_disks import VmDisks
from tests.one_storage import ImageStore
from tests.one_vms import (ACTIVE, BACKUP, BACKUP_POWEROFF, BOOT, BOOT_FAILURE, CLEANUP_DELETE,
                           CLONING, CLONING_FAILURE, DONE, EPILOG, EPILOG_FAILURE, HOLD, INIT,
                           LCM_INIT, LCM_STATE_NAMES, PENDING, POWEROFF, PROLOG, PROLOG_FAILURE,
                           RESTORE, RUNNING, SHUTDOWN, STATE_NAMES, STOPPED, SUSPENDED,
                           UNDEPLOYED, UNKNOWN, DISK_RESIZE, DISK_RESIZE_POWEROFF,
                           DISK_RESIZE_UNDEPLOYED, QuotaEntry, User, Vm, VmLifecycle)
from tests.one_xml import (DEFAULT, PERMISSIONS, UNLIMITED, first, merge_template, parse_template,
                           render_template, user_xml, vm_xml)

__all__ = [
    "OneDouble", "FakeHost", "network_host_factory", "main", "ONE_CONTEXT", "CLOUD_INIT",
    "OneFault", "AUTHENTICATION", "AUTHORIZATION", "NO_EXISTS", "ACTION", "XML_RPC_API",
    "INTERNAL", "ALLOCATE", "LOCKED", "INIT", "PENDING", "HOLD", "ACTIVE", "STOPPED",
    "SUSPENDED", "DONE", "POWEROFF", "UNDEPLOYED", "CLONING", "CLONING_FAILURE", "LCM_INIT",
    "PROLOG", "BOOT", "RUNNING", "EPILOG", "SHUTDOWN", "UNKNOWN", "CLEANUP_DELETE",
    "BOOT_FAILURE", "PROLOG_FAILURE", "EPILOG_FAILURE", "BACKUP", "BACKUP_POWEROFF", "RESTORE",
    "STATE_NAMES", "LCM_STATE_NAMES", "REDACTED", "User", "Vm", "Call", "QuotaEntry",
    "DEFAULT", "PERMISSIONS", "UNLIMITED", "first", "merge_template", "parse_template",
    "render_template", "user_xml", "vm_xml", "DISK_RESIZE", "DISK_RESIZE_POWEROFF",
    "DISK_RESIZE_UNDEPLOYED", "IMAGE_INIT", "IMAGE_READY", "IMAGE_USED", "IMAGE_DISABLED",
    "IMAGE_LOCKED", "IMAGE_ERROR", "IMAGE_DELETE", "IMAGE_USED_PERS", "IMAGE_LOCKED_USED",
    "IMAGE_LOCKED_USED_PERS", "IMAGE_STATE_NAMES",
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


class OneDouble(OneApi, VmLifecycle, ImageStore, VmDisks):
    """The double. ``users`` maps user name to password (``oneadmin`` gets id 0, others 2, 3...).

    ``host_factory(vm_id, context) -> host`` makes each VM's host (default :class:`FakeHost`),
    or pass ``network`` (a TestNetwork) and optionally ``bastion`` for namespace hosts.
    ``step_seconds`` is the time per life-cycle step (PENDING -> PROLOG -> BOOT -> RUNNING,
    SHUTDOWN -> EPILOG -> DONE); ``sshd_delay`` the extra time between RUNNING and
    ``host.start_sshd()``. Defaults follow oned: terminate is asynchronous and refused in
    transitional states, quota is freed at DONE, owners lack ADMIN on their VMs.
    ``images_dir`` is where images' contents live as folders (default: a temporary folder the
    double makes when first needed and removes at :meth:`stop`).
    """

    def __init__(self, users: dict[str, str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, host_factory: Callable[[int, dict], Any] | None = None,
                 network=None, bastion=None, step_seconds: float = 0.3,
                 sshd_delay: float = 0.0, images_dir: str | None = None):
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
        self.default_limits: dict[str, float] = {}   # DEFAULT_USER_QUOTAS: unset = unlimited
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
        self._next_vm_id = 0
        self._lock = threading.RLock()
        self._allocating = threading.Lock()
        self._fail_next_boot = False
        self._ssh_never = False
        self._delays = {"prolog": 0.0, "boot": 0.0, "shutdown": 0.0}
        self._unschedulable = ""
        self._cluster = 0
        self._next_nic_without_ip = False
        self._image: tuple[str, str | None] = (ONE_CONTEXT, None)
        self._failures: dict[str, list[tuple[int, str, int | None]]] = {}
        self._down_until = 0.0
        self._down_mode = "refuse"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._reopen: threading.Timer | None = None
        self._stopped = False
        self._init_storage(images_dir)

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
        """Stop serving, cancel timers and destroy every VM host not destroyed yet."""
        self._stopped = True
        if self._reopen:
            self._reopen.cancel()
        self._close_listener()
        with self._lock:
            vms = [vm for vm in self.vms.values() if not vm.host_destroyed]
            for vm in self.vms.values():
                vm.generation += 1
                if vm.timer:
                    vm.timer.cancel()
            for vm in vms:
                vm.host_destroyed = True
        for vm in vms:
            self._host_call(vm, "destroy")
        self._stop_storage()   # after the hosts: no namespace mounts an image folder any more

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

    # ------------------------------------------------------------ life-cycle knobs

    def fail_next_boot(self) -> None:
        """The next VM created goes to ACTIVE/BOOT_FAILURE instead of RUNNING; no sshd."""
        with self._lock:
            self._fail_next_boot = True

    def ssh_never(self, never: bool = True) -> None:
        """VMs still reach RUNNING but their sshd is never started."""
        with self._lock:
            self._ssh_never = bool(never)

    def boot_delay(self, seconds: float) -> None:
        """Extra time VMs spend in BOOT before RUNNING (applies to VMs already booting)."""
        with self._lock:
            self._delays["boot"] = float(seconds)

    def prolog_delay(self, seconds: float) -> None:
        """Extra time VMs spend in PROLOG (disks being copied), e.g. to act on a VM while
        oned refuses to terminate it. Applies to VMs already in PROLOG."""
        with self._lock:
            self._delays["prolog"] = float(seconds)

    def shutdown_delay(self, seconds: float) -> None:
        """Extra time VMs spend in SHUTDOWN after terminate/terminate-hard (a slow or frozen
        hypervisor); the guest keeps running meanwhile. Applies to VMs already shutting down."""
        with self._lock:
            self._delays["shutdown"] = float(seconds)

    def set_sshd_delay(self, seconds: float) -> None:
        """Extra time between RUNNING and ``host.start_sshd()``."""
        self.sshd_delay = float(seconds)

    def set_vm_state(self, vm_id: int, state: int, lcm_state: int = 0,
                     resume: bool = False) -> None:
        """Put a VM into any (STATE, LCM_STATE). POWEROFF, SUSPENDED, STOPPED and UNDEPLOYED
        stop its guest's sshd, ACTIVE/RUNNING starts it again, DONE ends the VM (quota
        released, host destroyed, images released as oned releases them from the VM's state:
        from ACTIVE in any LCM state but EPILOG a persistent image goes to ERROR). The VM then
        stays there until an API call or another knob moves it, unless ``resume``: then the
        life cycle carries on from that state."""
        with self._lock:
            effects = self._force_state(self.vms[vm_id], int(state), int(lcm_state),
                                        bool(resume))
            self._remember_templates(self.vms[vm_id])
        self._run(effects)

    def unschedulable(self, message: str | None = "Cannot dispatch VM: No hosts enabled to "
                                                  "run VMs") -> None:
        """The scheduler cannot place VMs: PENDING VMs stay PENDING with
        ``USER_TEMPLATE/SCHED_MESSAGE = "<ctime>: <message>"``, renewed each pass.
        ``None`` or ``""`` lifts it (the next pass deploys them and clears SCHED_MESSAGE)."""
        with self._lock:
            self._unschedulable = message or ""

    def place_vms_in_cluster(self, cluster_id: int) -> None:
        """The cluster of the host VMs are deployed on from now on (default 0): its
        per-cluster quota entry applies at deploy."""
        with self._lock:
            self._cluster = int(cluster_id)

    # ------------------------------------------------------------ network and image knobs

    def next_nic_without_ip(self) -> None:
        """The next VM's first NIC is leased from an Ethernet-only address range: a MAC and
        no IP in TEMPLATE/NIC, an empty ETH0_IP, and no address in the guest."""
        with self._lock:
            self._next_nic_without_ip = True

    def image_kind(self, kind: str = ONE_CONTEXT, default_user: str | None = None) -> None:
        """The image of VMs created from now on: ``"one-context"`` (default; honours
        CONTEXT/USERNAME) or ``"cloud-init"`` (ignores USERNAME; login user ``default_user``,
        by default the host's own ssh user)."""
        if kind not in IMAGE_KINDS:
            raise ValueError(f"image kind is one of {IMAGE_KINDS}")
        with self._lock:
            self._image = (kind, default_user or None)

    # ------------------------------------------------------------ permissions and quota

    def grant_admin(self, user: str, allowed: bool = True) -> None:
        """Give ``user`` ADMIN rights on its own VMs (e.g. an ACL or a chmod), which
        ``one.vm.recover`` needs; by default owners have USE and MANAGE only."""
        with self._lock:
            self.users[user].admin_own_vms = bool(allowed)

    def deny_template_create(self, user: str, denied: bool = True) -> None:
        """``user`` lacks CREATE on TEMPLATE (a restricted group): template.instantiate with
        a non-empty extra template is refused with AUTHORIZATION."""
        with self._lock:
            self.users[user].may_create_templates = not denied

    def set_quota(self, user: str, vms: float | None = None, cpu: float | None = None,
                  memory: float | None = None, cluster_ids=None,
                  running_vms: float | None = None, running_cpu: float | None = None,
                  running_memory: float | None = None) -> None:
        """Set a user's VM quota limits (-1 default, -2 unlimited; None leaves one as is).
        Without ``cluster_ids`` the global entry; with them (ids, or ``"100,101"``) the entry
        for those clusters, created after the existing ones (oned keeps entries in the order
        they were made). A cluster entry's unset limits are unlimited."""
        cids = _cluster_ids(cluster_ids)
        with self._lock:
            u = self.users[user]
            entry = self._entry(u, cids)
            if entry is None:
                entry = QuotaEntry(cids, {})
                u.quota.append(entry)
            for metric, value in (("VMS", vms), ("CPU", cpu), ("MEMORY", memory),
                                  ("RUNNING_VMS", running_vms), ("RUNNING_CPU", running_cpu),
                                  ("RUNNING_MEMORY", running_memory)):
                if value is not None:
                    entry.limits[metric] = float(value)
            if cids:
                for metric, value in entry.limits.items():
                    if value == DEFAULT:
                        entry.limits[metric] = UNLIMITED
            self._cleanup_quota(u)

    def set_default_quota(self, vms: float | None = None, cpu: float | None = None,
                          memory: float | None = None) -> None:
        """Set the default user quota (what a user limit of -1 means)."""
        with self._lock:
            for metric, value in (("VMS", vms), ("CPU", cpu), ("MEMORY", memory)):
                if value is not None:
                    self.default_limits[metric] = float(value)

    # ------------------------------------------------------------ failure injection

    def fail_next(self, method: str, code: int, message: str = "", times: int | None = 1
                  ) -> None:
        """The next ``times`` calls of ``method`` (e.g. ``"one.vm.action"``) fail with
        ``code`` (one of :data:`tests.one_errors.CODE_NAMES`) and ``message``, worded as oned
        words that code (``[method] message`` for ACTION/INTERNAL/RPC_API, ``User [id] :
        message.`` for AUTHORIZATION, ``Error allocating a new ... message`` for ALLOCATE,
        ``The resource ... is locked. [id].`` for LOCKED). ``times=None`` (or 0 over
        XML-RPC): until :meth:`clear_failures`, like a permanent template error."""
        if code not in CODE_NAMES:
            raise ValueError(f"code is one of {sorted(CODE_NAMES)}")
        with self._lock:
            self._failures.setdefault(method, []).append(
                (int(code), str(message), int(times) if times else None))

    def clear_failures(self, method: str | None = None) -> None:
        """Forget injected failures (of one method, or all)."""
        with self._lock:
            if method:
                self._failures.pop(method, None)
            else:
                self._failures.clear()

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


def _cluster_ids(value) -> str:
    """oned's normalised CLUSTER_IDS (QuotaVirtualMachine.cc 388-396): unique, sorted,
    comma separated; "" for the global entry."""
    if value is None or value == "" or value == []:
        return ""
    items = str(value).split(",") if isinstance(value, (str, int)) else list(value)
    return ",".join(str(i) for i in sorted({int(i) for i in items}))


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

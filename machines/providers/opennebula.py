"""``opennebula`` provider: one OpenNebula VM per acquisition, created with pyone over XML-RPC."""
from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time

from traitlets import Dict, Enum, Float, Integer, List, Unicode

from opennebula import (
    TAG_HUB_ID,
    TAG_OWNER_ID,
    TAG_OWNER_KIND,
    TAG_SERVER,
    TAG_START_ID,
    TAG_USER,
    CloudUnavailableError,
    NotFoundError,
    OpenNebulaClient,
    OpenNebulaError,
    VmPhase,
)

from ..cloudwatch import VmPoolWatch
from ..errors import (CapacityError, ConfigError, MachineFailed, MachineTimeout)
from ..keys import new_spawn_key
from ..record import Machine
from ..request import MachineRequest, OwnerKind
from .base import MachineStatus
from .cloud_errors import cloud_error
from .homes import HomeStorage
from .remote import RemoteProvider

# one client (and thread pool) and one VM-pool view per endpoint, account and hub, hub-wide
_CLIENTS: dict[tuple, OpenNebulaClient] = {}
_WATCHES: dict[tuple, VmPoolWatch] = {}
_LOG = [logging.getLogger(__name__)]  # the log of whoever made the clients (the hub's)

PHASE_PROGRESS = {
    VmPhase.PENDING: (10, "Waiting for the cloud to place your VM (pending)"),
    VmPhase.HOLD: (10, "Your VM is on hold in the cloud"),
    VmPhase.PROLOG: (20, "Copying the VM image (prolog)"),
    VmPhase.BOOT: (30, "Your VM is booting"),
    VmPhase.RUNNING: (40, "Your VM is running"),
}


# What each phase means for a machine that was running (oned's STATE/LCM_STATE, via VmPhase)
_STATUS = {
    VmPhase.RUNNING: MachineStatus.RUNNING,
    VmPhase.DONE: MachineStatus.GONE,
    VmPhase.STOPPING: MachineStatus.GONE,     # being terminated, saved away or cleaned up
    VmPhase.STOPPED: MachineStatus.PAUSED,    # poweroff, suspended, stopped, undeployed
    VmPhase.FAILED: MachineStatus.PAUSED,     # *_FAILURE: an admin can recover it
    VmPhase.PENDING: MachineStatus.PAUSED,    # rescheduled or resumed: on its way back
    VmPhase.HOLD: MachineStatus.PAUSED,
    VmPhase.PROLOG: MachineStatus.PAUSED,
    VmPhase.BOOT: MachineStatus.PAUSED,
    VmPhase.UNKNOWN: MachineStatus.UNKNOWN,   # LCM UNKNOWN or a state we cannot classify
}


class OpenNebulaProvider(RemoteProvider):
    """Creates a VM from a template, waits until it runs, terminates it on release."""

    name = "opennebula"
    login_hint = ("If the VM image uses cloud-init rather than OpenNebula's contextualization, "
                  "it ignores USERNAME: set OpenNebulaProvider.ssh_user to the image's own user.")

    endpoint = Unicode(
        "http://localhost:2633/RPC2",
        help="OpenNebula XML-RPC endpoint (http:// or https://).",
    ).tag(config=True)

    auth_file = Unicode(
        "",
        help="""File holding the hub's OpenNebula credentials as ``user:password`` (like
        ~/.one/one_auth). Read at start; never logged. Used when ``auth_env`` is not set.""",
    ).tag(config=True)

    auth_env = Unicode(
        "NEBULAHUB_ONE_AUTH",
        help="Environment variable holding ``user:password``; takes precedence over auth_file.",
    ).tag(config=True)

    template_id = Integer(
        -1,
        help="Default VM template id, used by sizes (profiles) that name none.",
    ).tag(config=True)

    hub_id = Unicode(
        "nebulahub",
        help="""Tag written to every VM this hub creates (USER_TEMPLATE NEBULAHUB_HUB_ID). Orphan
        reconciliation only ever terminates VMs with this tag: give each hub sharing an OpenNebula
        account its own id.""",
    ).tag(config=True)

    vm_name_template = Unicode(
        "nebulahub-{username}-{servername}-{start_id}",
        help="""Name of created VMs; {username}, {servername} (the owner within its kind, e.g.
        the server name or job id), {kind} and {start_id} are replaced.""",
    ).tag(config=True)

    context = Dict(
        {},
        help="""Extra CONTEXT attributes for every VM (never secrets: the context is readable by
        anyone who can read the VM). SSH_PUBLIC_KEY and USERNAME are set by the hub, and
        NETWORK="YES" is always sent (real guests configure their network only with it) unless
        this sets NETWORK to "" explicitly.""",
    ).tag(config=True)

    quota_cluster_ids = List(
        Integer(),
        help="""Clusters the templates place VMs in whose own quota entries (OpenNebula 7
        VM_QUOTA entries with CLUSTER_IDS) are checked too; the global entry always is.""",
    ).tag(config=True)

    ready_timeout = Float(
        300,
        help="Seconds a VM may take from creation to RUNNING before the request fails.",
    ).tag(config=True)

    poll_interval = Float(1.0, help="Seconds between VM state checks while starting.").tag(
        config=True
    )

    pool_max_age = Float(
        5.0,
        help="""Seconds a view of all this hub's VMs (one vmpool query) may be reused by checks
        of running machines: one query serves every server's poll.""",
    ).tag(config=True)

    api_timeout = Float(30, help="Seconds one OpenNebula API call may take.").tag(config=True)

    home_storage = Enum(
        ["volume", "shared", "none"], "volume",
        help="""Where users' files live on VMs. ``volume`` (default): a persistent OpenNebula
        image per user's server (an empty DATABLOCK of ``volume_size_mb`` in
        ``volume_datastore_id``), created at the first spawn, attached to every VM of that
        server and mounted at the login user's home; never deleted with a VM (``nebulahub
        volumes`` manages them). ``shared``: a directory per user on a filesystem the site
        shares (NFS, CephFS), mounted from ``shared_home_fstab``. ``none``: the VM's own disk
        (files go with the VM).""",
    ).tag(config=True)

    volume_size_mb = Integer(10240, help="Size of a new home volume (MB).").tag(config=True)

    volume_datastore_id = Integer(
        1, help="Image datastore home volumes are created in (its quota is shown on the form)."
    ).tag(config=True)

    volume_target = Unicode(
        "vdb", help="Device name the home volume gets in the VM (DISK TARGET)."
    ).tag(config=True)

    volume_wait_timeout = Float(
        300,
        help="""Seconds a spawn waits for the volume to be released by the server's previous VM
        (OpenNebula lets one VM at a time use it; it is freed when that VM is DONE).""",
    ).tag(config=True)

    shared_home_fstab = Unicode(
        "",
        help="""fstab line mounting a user's directory at their home on the VM, e.g.
        ``nfs.example.org:/export/homes/{username} {home} nfs defaults 0 0`` ({username}, {home}
        replaced). It goes into the VM's context: never put a secret in it.""",
    ).tag(config=True)

    shared_home_root = Unicode(
        "",
        help="""The same directories as the hub sees them, e.g. ``/srv/homes/{username}``: the
        hub creates a user's directory (mode 0700) before their first VM.""",
    ).tag(config=True)

    shared_home_owner = Unicode(
        "",
        help="""``uid:gid`` (or an account name) owning users' directories on the shared
        filesystem: the VMs' login user as the file server sees it (default: ssh_user).""",
    ).tag(config=True)

    @property
    def homes(self) -> HomeStorage:
        return HomeStorage(self)

    ssh_user = Unicode(
        "jovyan",
        help="""Login user on the VMs. Sent as USERNAME in the context so OpenNebula's
        contextualization creates it and installs the per-acquisition SSH key for it.""",
    ).tag(config=True)

    @property
    def _key(self) -> tuple:
        return (self.endpoint, self.auth_env, self.auth_file, self.api_timeout)

    @property
    def client(self) -> OpenNebulaClient:
        # credentials are read once per client, not on every call
        if self._key not in _CLIENTS:
            _LOG[0] = self.log
            _CLIENTS[self._key] = OpenNebulaClient(self.endpoint, self._session(),
                                                   timeout=self.api_timeout)
        return _CLIENTS[self._key]

    @property
    def pool(self) -> VmPoolWatch:
        key = (*self._key, self.hub_id)
        if key not in _WATCHES:
            _WATCHES[key] = VmPoolWatch(self.client, self.hub_id, self.pool_max_age)
        return _WATCHES[key]

    def _session(self) -> str:
        value = os.environ.get(self.auth_env, "") if self.auth_env else ""
        if not value and self.auth_file:
            try:
                with open(os.path.expanduser(self.auth_file)) as f:
                    value = f.read().strip()
            except OSError as e:
                raise ConfigError(
                    f"The hub cannot read its OpenNebula credentials file ({e.strerror}).",
                    reason="cloud-config") from None
        if ":" not in value:
            raise ConfigError(
                "The hub has no OpenNebula credentials: the admin must set "
                f"${self.auth_env} or OpenNebulaProvider.auth_file to user:password.",
                reason="cloud-config")
        return value

    async def _quota_problems(self, request: MachineRequest) -> list[str]:
        size = request.size
        problems = []
        try:
            for cluster in [None, *self.quota_cluster_ids]:
                quota = await self.client.quota(cluster_id=cluster)
                where = "" if cluster is None else f" (cluster {cluster})"
                problems += [p + where for p in
                             quota.check(cpu=size.cpu, memory_mb=size.memory_mb, vms=1)]
        except OpenNebulaError as e:
            raise cloud_error(e, "reading your quota") from None
        return problems

    async def _shutting_down(self) -> int:
        """This hub's VMs on their way to DONE: their quota is freed when they get there."""
        try:
            _, vms = await self.pool.snapshot(newer_than=time.monotonic())
        except OpenNebulaError:
            return 0
        return sum(vm.phase is VmPhase.STOPPING for vm in vms.values())

    def _over_quota(self, request: MachineRequest, problems: list[str]) -> CapacityError:
        return CapacityError(
            f"The profile '{request.size.label or 'requested'}' does not fit in the cloud "
            f"quota: {'; '.join(problems)}. Stop another server or pick a smaller profile.")

    async def check_request(self, request: MachineRequest) -> None:
        await self.homes.check_room(request.user, self._server_of(request))
        problems = await self._quota_problems(request)
        # quota is freed only when a terminated VM reaches DONE: a VM still shutting down
        # will make room, so the spawn waits for it instead of being refused
        if problems and not await self._shutting_down():
            raise self._over_quota(request, problems)

    async def _wait_for_quota(self, request: MachineRequest, report) -> None:
        deadline = time.monotonic() + self.ready_timeout
        told = False
        while True:
            problems = await self._quota_problems(request)
            if not problems:
                return
            if not await self._shutting_down() or time.monotonic() > deadline:
                raise self._over_quota(request, problems)
            if not told:
                report(3, "Waiting for your previous VM to finish shutting down (the cloud "
                          "frees its quota when it is gone)")
                told = True
            await asyncio.sleep(self.poll_interval)

    async def form_info(self, user: str) -> dict[str, str]:
        try:
            q = await self.client.quota()
        except OpenNebulaError as e:
            return {"Cloud quota": f"unavailable ({e})"}

        def fmt(u, unit=""):
            if u.limit is None:
                return f"{u.used:g}{unit} used, no limit"
            return f"{u.used:g}{unit} used of {u.limit:g}{unit}, {u.free:g}{unit} free"

        info = {"VMs": fmt(q.vms), "CPU": fmt(q.cpu), "Memory": fmt(q.memory_mb, " MB")}
        if self.home_storage == "volume":
            try:
                ds = await self.client.datastore_quota(self.volume_datastore_id)
                info["Storage"] = fmt(ds.size_mb, " MB")
            except OpenNebulaError as e:
                info["Storage"] = f"unavailable ({e})"
        return info

    @staticmethod
    def _server_of(request: MachineRequest) -> str:
        """The server a request is for ("" for the default one): volumes are per server."""
        if request.owner_kind is OwnerKind.SERVER:
            return request.owner_id.split("/", 1)[-1]
        return request.owner_id

    async def acquire(self, request: MachineRequest, machine: Machine, report, persist) -> None:
        size = request.size
        template_id = size.template_id if size.template_id is not None else self.template_id
        if template_id is None or template_id < 0:
            raise ConfigError("No VM template is configured for this profile (ask your admin).",
                              reason="cloud-config")
        await self._wait_for_quota(request, report)
        machine.user = request.user
        # a user's home goes with their servers; a job's or a Dask worker's VM gets its files
        # from the job service (staged in and out), not the user's volume
        serves = request.owner_kind is OwnerKind.SERVER
        if serves and self.home_storage == "volume":
            await self.homes.volume_for(request.user, self._server_of(request), machine, report,
                                        persist)
        if serves:
            await self.homes.prepare_shared(request.user)
        private_key, public_key = new_spawn_key()
        machine.sealed_private_key = self.access.secret_box.seal(private_key)
        owner = self._server_of(request)
        name = self.vm_name_template.format(username=request.user, servername=owner or "default",
                                            kind=request.owner_kind.value,
                                            start_id=request.start_id)
        context = {"NETWORK": "YES", **self.context}
        context = {k: v for k, v in context.items() if v not in (None, "")}
        if serves:
            context.update(self.homes.context(request.user))
        context.update(request.context)  # the caller's (a job's id, the pool to join)
        context.update(SSH_PUBLIC_KEY=public_key, USERNAME=self.ssh_user)
        tags = {TAG_HUB_ID: self.hub_id, TAG_USER: request.user,
                TAG_SERVER: owner if request.owner_kind is OwnerKind.SERVER else "",
                TAG_START_ID: request.start_id, TAG_OWNER_KIND: request.owner_kind.value,
                TAG_OWNER_ID: request.owner_id}
        report(5, f"Asking the cloud for a VM ({size.label or 'default size'})")
        try:
            machine.vm_id = await self.client.instantiate(
                name=name, template_id=template_id, cpu=size.cpu, vcpu=size.vcpu,
                memory_mb=size.memory_mb, context=context, tags=tags,
                disks=self.homes.disks(machine),
            )
        except OpenNebulaError as e:
            raise cloud_error(e, "to create your VM") from None
        except ValueError as e:  # a secret-looking context attribute: never sent
            raise ConfigError(f"The hub's VM settings are refused: {e}",
                              reason="cloud-config") from None
        machine.username = self.ssh_user
        machine.jump = self.access.bastion(self.ssh_user)
        await persist()
        await self._wait_running(machine, report, persist)
        await self.homes.apply_pending_resize(machine)

    async def resume(self, machine: Machine, report, persist) -> None:
        """Wait for a machine whose acquisition was interrupted (a restarted service): found
        by its start id if its VM id was never learnt, then waited for until it runs."""
        if machine.vm_id is None:
            try:
                tagged = await self.client.list_tagged(self.hub_id)
            except OpenNebulaError as e:
                raise cloud_error(e, "to look for your VM") from None
            found = [vm.id for vm in tagged if vm.tags.get(TAG_START_ID) == machine.start_id]
            if not found:
                raise MachineFailed("The VM being made when the service stopped never came "
                                    "to exist.")
            machine.vm_id = found[0]
            await persist()
        await self._wait_running(machine, report, persist)

    async def _wait_running(self, machine: Machine, report, persist) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last_phase = None
        told = None  # the scheduler's last message the user has seen
        while True:
            try:
                info = await self.client.vm_info(machine.vm_id)
            except CloudUnavailableError:
                info = None  # transient: keep waiting within the deadline
            except OpenNebulaError as e:
                raise MachineFailed(f"The cloud lost track of your VM: {e}") from None
            if info is not None:
                if info.phase != last_phase and info.phase in PHASE_PROGRESS:
                    report(*PHASE_PROGRESS[info.phase])
                    last_phase = info.phase
                if info.phase == VmPhase.PENDING and info.sched_message and \
                        info.sched_message != told:
                    told = info.sched_message
                    report(10, f"The cloud cannot place your VM yet: {told}")
                if info.phase == VmPhase.RUNNING and info.ip:
                    machine.host = info.ip
                    await persist()
                    return
                if info.phase == VmPhase.RUNNING and info.nic_without_ip:
                    raise MachineFailed(
                        "Your VM runs but has no IP address: its network gives out only "
                        "Ethernet addresses. Ask your admin for a template whose network "
                        "assigns IPs.", reason="no-ip")
                if info.phase in (VmPhase.FAILED, VmPhase.DONE, VmPhase.STOPPED,
                                  VmPhase.STOPPING):
                    reason = info.failure or f"the VM ended up {info.phase.value}"
                    raise MachineFailed(f"Your VM could not start: {reason}.")
            if time.monotonic() > deadline:
                why = f" The cloud said: {told}" if told else ""
                raise MachineTimeout(
                    f"Your VM was not running after {self.ready_timeout:.0f} s "
                    f"(last state: {last_phase.value if last_phase else 'unknown'}).{why}")
            await asyncio.sleep(self.poll_interval)

    async def release(self, machine: Machine) -> None:
        if machine.vm_id is None:
            if not machine.start_id:
                return
            # the caller stopped between asking for the VM and learning its id (a hub killed
            # mid-spawn): the VM is found by the start id it was tagged with at creation
            try:
                tagged = await self.client.list_tagged(self.hub_id)
            except OpenNebulaError as e:
                raise cloud_error(e, "to look for your VM") from None
            found = [vm.id for vm in tagged if vm.tags.get(TAG_START_ID) == machine.start_id]
            if not found:
                return
            machine.vm_id = found[0]
        try:
            await self.client.terminate(machine.vm_id)
        except NotFoundError:
            pass
        except OpenNebulaError as e:
            raise cloud_error(e, f"to terminate VM {machine.vm_id}") from None
        self.log.info("Terminated VM %s", machine.vm_id)

    async def check(self, machine: Machine) -> MachineStatus:
        if machine.vm_id is None:
            return MachineStatus.GONE
        try:
            _, vms = await self.pool.snapshot()
            info = vms.get(machine.vm_id)
            if info is None:  # not in the hub's live VMs: ask once about this one
                info = await self.client.vm_info(machine.vm_id)
        except NotFoundError:
            return MachineStatus.GONE
        except OpenNebulaError:
            return MachineStatus.UNKNOWN
        return _STATUS.get(info.phase, MachineStatus.UNKNOWN)

    async def close(self) -> None:
        await close_clients()


async def close_clients() -> None:
    """Close every OpenNebula client of this process (hub shutdown)."""
    close_clients_now()


def close_clients_now() -> None:
    clients = list(_CLIENTS.values())
    _CLIENTS.clear()
    _WATCHES.clear()
    for c in clients:
        c.shutdown()
    if clients:
        _LOG[0].info("Closed %d OpenNebula client(s)", len(clients))


atexit.register(close_clients_now)  # the hub's shutdown: no spawner hook exists for it

"""``opennebula`` provider: one OpenNebula VM per server, created with pyone over XML-RPC."""
from __future__ import annotations

import asyncio
import os
import time

from traitlets import Dict, Float, Integer, Unicode

from opennebula import (
    TAG_HUB_ID,
    TAG_SERVER,
    TAG_START_ID,
    TAG_USER,
    CloudUnavailableError,
    NotFoundError,
    OpenNebulaClient,
    OpenNebulaError,
    VmPhase,
)

from ..profiles import VmProfile
from ..state import ServerState
from .base import HostProvider, MachineStatus, ProviderError, SpawnContext

_CLIENTS: dict[tuple, OpenNebulaClient] = {}

PHASE_PROGRESS = {
    VmPhase.PENDING: (10, "Waiting for the cloud to place your VM (pending)"),
    VmPhase.HOLD: (10, "Your VM is on hold in the cloud"),
    VmPhase.PROLOG: (20, "Copying the VM image (prolog)"),
    VmPhase.BOOT: (30, "Your VM is booting"),
    VmPhase.RUNNING: (40, "Your VM is running"),
}


class OpenNebulaProvider(HostProvider):
    """Creates a VM from a template, waits until it runs, terminates it on stop."""

    name = "opennebula"
    uses_spawn_key = True

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
        help="Default VM template id, used by profiles that name none.",
    ).tag(config=True)

    hub_id = Unicode(
        "nebulahub",
        help="""Tag written to every VM this hub creates (USER_TEMPLATE NEBULAHUB_HUB_ID). Orphan
        reconciliation only ever terminates VMs with this tag: give each hub sharing an OpenNebula
        account its own id.""",
    ).tag(config=True)

    vm_name_template = Unicode(
        "nebulahub-{username}-{servername}-{start_id}",
        help="Name of created VMs; {username}, {servername}, {start_id} are replaced.",
    ).tag(config=True)

    context = Dict(
        {"NETWORK": "YES"},
        help="""Extra CONTEXT attributes for every VM (never secrets: the context is readable by
        anyone who can read the VM). SSH_PUBLIC_KEY and USERNAME are set by the hub.""",
    ).tag(config=True)

    ready_timeout = Float(
        300,
        help="Seconds a VM may take from creation to RUNNING before the spawn fails.",
    ).tag(config=True)

    poll_interval = Float(1.0, help="Seconds between VM state checks while starting.").tag(
        config=True
    )

    api_timeout = Float(30, help="Seconds one OpenNebula API call may take.").tag(config=True)

    ssh_user = Unicode(
        "jovyan",
        help="""Login user on the VMs. Sent as USERNAME in the context so OpenNebula's
        contextualization creates it and installs the per-spawn SSH key for it.""",
    ).tag(config=True)

    @property
    def client(self) -> OpenNebulaClient:
        # One client (and one thread pool) per endpoint and account for the whole hub; the
        # credentials are read once, not on every call.
        key = (self.endpoint, self.auth_env, self.auth_file, self.api_timeout)
        if key not in _CLIENTS:
            _CLIENTS[key] = OpenNebulaClient(self.endpoint, self._session(),
                                             timeout=self.api_timeout)
        return _CLIENTS[key]

    def _session(self) -> str:
        value = os.environ.get(self.auth_env, "") if self.auth_env else ""
        if not value and self.auth_file:
            try:
                with open(os.path.expanduser(self.auth_file)) as f:
                    value = f.read().strip()
            except OSError as e:
                raise ProviderError(
                    f"The hub cannot read its OpenNebula credentials file ({e.strerror}).",
                    reason="cloud-config",
                ) from None
        if ":" not in value:
            raise ProviderError(
                "The hub has no OpenNebula credentials: the admin must set "
                f"${self.auth_env} or OpenNebulaProvider.auth_file to user:password.",
                reason="cloud-config",
            )
        return value

    async def check_capacity(self, spawner, profile: VmProfile) -> None:
        try:
            quota = await self.client.quota()
        except OpenNebulaError as e:
            raise ProviderError(f"Could not read your cloud quota: {e}", reason="cloud") from None
        problems = quota.check(cpu=profile.cpu, memory_mb=profile.memory_mb, vms=1)
        if problems:
            raise ProviderError(
                f"The profile '{profile.name}' does not fit in the cloud quota: "
                + "; ".join(problems) + ". Stop another server or pick a smaller profile.",
                reason="quota",
            )

    async def form_info(self, spawner) -> dict[str, str]:
        try:
            q = await self.client.quota()
        except OpenNebulaError as e:
            return {"Cloud quota": f"unavailable ({e})"}

        def fmt(u, unit=""):
            if u.limit is None:
                return f"{u.used:g}{unit} used, no limit"
            return f"{u.used:g}{unit} used of {u.limit:g}{unit}, {u.free:g}{unit} free"

        return {"VMs": fmt(q.vms), "CPU": fmt(q.cpu), "Memory": fmt(q.memory_mb, " MB")}

    async def acquire(self, ctx: SpawnContext) -> None:
        sp, prof, state = ctx.spawner, ctx.profile, ctx.state
        template_id = prof.template_id if prof.template_id is not None else self.template_id
        if template_id is None or template_id < 0:
            raise ProviderError("No VM template is configured for this profile (ask your admin).",
                                reason="cloud-config")
        await self.check_capacity(sp, prof)
        name = self.vm_name_template.format(
            username=sp.user.name, servername=sp.name or "default", start_id=state.start_id
        )
        context = dict(self.context, SSH_PUBLIC_KEY=ctx.public_key, USERNAME=self.ssh_user)
        tags = {TAG_HUB_ID: self.hub_id, TAG_USER: sp.user.name, TAG_SERVER: sp.name or "",
                TAG_START_ID: state.start_id}
        ctx.report(5, f"Asking the cloud for a VM ({prof.name})")
        try:
            state.vm_id = await self.client.instantiate(
                name=name, template_id=template_id, cpu=prof.cpu, vcpu=prof.vcpu,
                memory_mb=prof.memory_mb, context=context, tags=tags,
            )
        except OpenNebulaError as e:
            raise ProviderError(f"The cloud refused to create your VM: {e}",
                                reason="cloud") from None
        except ValueError as e:  # a secret-looking context attribute: never sent
            raise ProviderError(f"The hub's VM settings are refused: {e}",
                                reason="cloud-config") from None
        state.username = self.ssh_user
        await ctx.persist()
        await self._wait_running(ctx)

    async def _wait_running(self, ctx: SpawnContext) -> None:
        state = ctx.state
        deadline = time.monotonic() + self.ready_timeout
        last_phase = None
        while True:
            try:
                info = await self.client.vm_info(state.vm_id)
            except CloudUnavailableError:
                info = None  # transient: keep waiting within the deadline
            except OpenNebulaError as e:
                raise ProviderError(f"The cloud lost track of your VM: {e}", reason="cloud")
            if info is not None:
                if info.phase != last_phase and info.phase in PHASE_PROGRESS:
                    ctx.report(*PHASE_PROGRESS[info.phase])
                    last_phase = info.phase
                if info.phase == VmPhase.RUNNING and info.ip:
                    state.host = info.ip
                    await ctx.persist()
                    return
                if info.phase in (VmPhase.FAILED, VmPhase.DONE, VmPhase.STOPPED,
                                  VmPhase.STOPPING):
                    reason = info.failure or f"the VM ended up {info.phase.value}"
                    raise ProviderError(f"Your VM could not start: {reason}.", reason="vm-failed")
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"Your VM was not running after {self.ready_timeout:.0f} s "
                    f"(last state: {last_phase.value if last_phase else 'unknown'}).",
                    reason="vm-timeout",
                )
            await asyncio.sleep(self.poll_interval)

    async def release(self, state: ServerState) -> None:
        if state.vm_id is None:
            return
        try:
            await self.client.terminate(state.vm_id)
        except NotFoundError:
            pass
        self.log.info("Terminated VM %s", state.vm_id)

    async def check(self, state: ServerState) -> MachineStatus:
        if state.vm_id is None:
            return MachineStatus.GONE
        try:
            info = await self.client.vm_info(state.vm_id)
        except NotFoundError:
            return MachineStatus.GONE
        except OpenNebulaError:
            return MachineStatus.UNKNOWN
        if info.phase == VmPhase.RUNNING:
            return MachineStatus.RUNNING
        if info.phase in (VmPhase.DONE, VmPhase.FAILED, VmPhase.STOPPED):
            return MachineStatus.GONE
        return MachineStatus.UNKNOWN


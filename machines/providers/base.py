"""The provider seam: where machines come from.

Implementations (one module each, modelled on dask-jobqueue's ``core.py`` + one module per
scheduler): ``opennebula`` (a VM per acquisition), ``ssh`` (a fixed host, or a machine the user
names), ``local`` (the hub's own machine, each user as their own Unix account). Callers (the
JupyterHub spawner, the job service, Dask clusters) never need to know which one they hold.
"""
from __future__ import annotations

import enum
from typing import Awaitable, Callable

from traitlets import Instance
from traitlets.config import LoggingConfigurable

from ..access import MachineAccess
from ..hosts import Host
from ..record import Machine
from ..request import MachineRequest

Report = Callable[[int, str], None]
Persist = Callable[[], Awaitable[None]]


class MachineStatus(enum.Enum):
    """What the provider knows about a machine (its workload is checked on the host)."""

    RUNNING = "running"
    PAUSED = "paused"      # exists but is not running now and may come back (powered off,
                           # suspended, stopped, undeployed, a recoverable failure): never
                           # given back by a poll
    GONE = "gone"          # terminated or never existed: nothing can run there any more
    UNKNOWN = "unknown"    # the provider cannot tell right now (its API did not answer, or a
                           # state it cannot classify): the machine itself is asked


class MachineProvider(LoggingConfigurable):
    """Contract.

    ``await check_request(request)``
        Refuse what the user named that may not be used (:class:`~machines.errors.OptionError`
        naming the field) and what does not fit the quota (:class:`~machines.errors.
        CapacityError`), before anything is created.
    ``await acquire(request, machine, report, persist)``
        Get a machine and fill the caller's ``machine`` record. Call ``await persist()`` as soon
        as something exists that must be given back; report progress with ``report(percent,
        message)``; raise a :class:`~machines.errors.MachineError` on failure (the caller then
        calls ``release``).
    ``await resume(machine, report, persist)``
        Finish an acquisition that was interrupted after ``persist()`` (a restarted caller):
        wait until the machine runs, or raise (the caller then calls ``release``).
    ``host_for(machine) -> Host``
        How to act on it (:class:`~machines.hosts.Host`).
    ``await check(machine) -> MachineStatus``
        Cheap: may answer from a view shared by all machines of this hub.
    ``await release(machine)``
        Give it back. Idempotent; works from any partial record.
    ``await form_info(user)``
        Facts for the user's choice (quota, their hub key), as ``{label: text}``.
    ``await close()``
        Release clients (hub shutdown).
    """

    name = "base"
    # the same machine from one use to the next: its SSH host key is pinned across uses
    machines_outlive_use = False
    # what to check when the hub's login to a new machine is refused
    login_hint = ""

    access = Instance(MachineAccess)

    async def check_request(self, request: MachineRequest) -> None:
        return None

    async def acquire(self, request: MachineRequest, machine: Machine, report: Report,
                      persist: Persist) -> None:
        raise NotImplementedError

    async def resume(self, machine: Machine, report: Report, persist: Persist) -> None:
        return None  # machines that exist once acquired (a host, a local account)

    def host_for(self, machine: Machine, *, trust_new_key: bool = False) -> Host:
        raise NotImplementedError

    async def check(self, machine: Machine) -> MachineStatus:
        return MachineStatus.RUNNING

    async def release(self, machine: Machine) -> None:
        return None

    async def form_info(self, user: str) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        return None

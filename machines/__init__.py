"""NebulaHub's machine layer: get a machine, reach it, bootstrap Python on it, give it back.

Used by the JupyterHub spawner (a user's server), and by the job service and Dask clusters
(worker machines); it never imports JupyterHub and never receives a spawner::

    access = MachineAccess(config=cfg)                       # bastion, pinned keys, crypt key
    provider = provider_class("opennebula")(config=cfg, access=access)
    request = MachineRequest(user="ann", owner_id="ann/", start_id=new_start_id(),
                             size=MachineSize(cpu=1, memory_mb=2048))
    machine = Machine(provider=provider.name, start_id=request.start_id)
    await provider.acquire(request, machine, report, persist)   # persist(): save `machine`
    host = provider.host_for(machine)
    await host.open(wait=access.ssh_timeout)
    result = await host.bootstrap({...})                         # start a server, a job...
    await provider.release(machine)

Seams: providers (:mod:`machines.providers`: opennebula, ssh, local) and hosts
(:mod:`machines.hosts`: local, SSH); errors people see: :mod:`machines.errors`.
"""
import uuid

from .access import MachineAccess
from .errors import MachineError, is_transient
from .hosts import Host
from .providers import MachineProvider, MachineStatus, provider_class
from .record import JumpHost, Machine
from .request import MachineRequest, MachineSize, OwnerKind, OwnMachine


def new_start_id() -> str:
    """A fresh acquisition id (tagged on the machine before it exists)."""
    return uuid.uuid4().hex[:12]


__all__ = ["MachineAccess", "MachineError", "is_transient", "Host", "MachineProvider",
           "MachineStatus", "provider_class", "JumpHost", "Machine", "MachineRequest",
           "MachineSize", "OwnerKind", "OwnMachine", "new_start_id"]

"""What a caller asks the machine layer for: a plain request, no JupyterHub object in it."""
from __future__ import annotations

import enum

from pydantic import BaseModel, Field, field_validator

from opennebula.templates import check_context


class OwnerKind(str, enum.Enum):
    """Who a machine works for. Written as a tag on cloud VMs, so that reconciliation asks the
    right source of truth whether the owner still lives (the hub for servers, the job service for
    job workers, the cluster manager for Dask workers)."""

    SERVER = "server"
    JOB_WORKER = "job-worker"
    DASK_WORKER = "dask-worker"


class MachineSize(BaseModel):
    """How big a machine: OpenNebula's CPU share, virtual CPUs, memory, and the template."""

    cpu: float = 1.0
    vcpu: int = 1
    memory_mb: int = 2048
    template_id: int | None = None  # None: the provider's default
    label: str = ""                 # the size's name, for messages ("Small")


class OwnMachine(BaseModel):
    """A machine the user names themselves (VISPA-style): reached with their hub key."""

    host: str
    port: int = 22
    username: str
    jump: str = ""                  # "[user@]host[:port]" of a jump host, or ""
    trust_new_host_key: bool = False


class MachineRequest(BaseModel):
    """One request for a machine.

    ``owner_id`` identifies the owner within its kind (``user/server`` for servers, a job id for
    job workers); ``start_id`` is fresh per acquisition and tags the machine before it exists, so
    a sweep never takes a machine being made for an orphan. ``python_env`` is the environment the
    workload will run from, for machines that must be able to read it (the hub's own machine).
    ``context`` holds extra attributes the machine's contextualization reads (e.g. the job a
    worker VM serves, the pool it joins): names in upper case, never a secret (the VM's
    context is readable by anyone who can see the VM). Providers with a VM context
    (``opennebula``) add them to it; the others have no context and ignore them.
    """

    user: str
    owner_kind: OwnerKind = OwnerKind.SERVER
    owner_id: str
    start_id: str
    size: MachineSize = Field(default_factory=MachineSize)
    own: OwnMachine | None = None
    python_env: str = ""
    context: dict[str, str] = Field(default_factory=dict)

    @field_validator("context")
    @classmethod
    def _no_secrets_in_context(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_context(value)


def checked_context(context: dict[str, str]) -> dict[str, str]:
    """Context attributes a request may carry, or ValueError saying which one may not (a name
    that is not an upper-case attribute name, one that looks like a secret, a value holding a
    private key or an API token)."""
    return check_context(context)

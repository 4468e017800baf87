"""NebulaHub's async façade over OpenNebula's XML-RPC API (through pyone).

    client = OpenNebulaClient("http://one.example.org:2633/RPC2", "hub:secret")
    vm_id = await client.instantiate(name="jupyter-alice", template_id=7,
                                     context={"SSH_PUBLIC_KEY": key, "NETWORK": "YES"},
                                     tags={TAG_HUB_ID: "hub-1", TAG_USER: "alice"})
    info = await client.vm_info(vm_id)      # info.phase, info.ip, info.failure
    await client.terminate(vm_id)
"""
from .client import OpenNebulaClient
from .errors import (AllocationError, AuthenticationError, AuthorizationError,
                     CloudUnavailableError, LockedError, NotFoundError, OpenNebulaError,
                     QuotaExceededError, VmBusyError)
from .models import (HUB_TAGS, TAG_HUB_ID, TAG_OWNER_ID, TAG_OWNER_KIND, TAG_PREFIX, TAG_SERVER,
                     TAG_START_ID, TAG_USER, Quota, QuotaUsage, VmInfo)
from .states import VmPhase, failure_reason, phase_for

__all__ = [
    "OpenNebulaClient", "VmInfo", "VmPhase", "Quota", "QuotaUsage",
    "OpenNebulaError", "AuthenticationError", "AuthorizationError", "NotFoundError",
    "QuotaExceededError", "CloudUnavailableError", "VmBusyError", "LockedError",
    "AllocationError",
    "TAG_PREFIX", "TAG_HUB_ID", "TAG_USER", "TAG_SERVER", "TAG_START_ID", "TAG_OWNER_KIND",
    "TAG_OWNER_ID", "HUB_TAGS",
    "phase_for", "failure_reason",
]

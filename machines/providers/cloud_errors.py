"""OpenNebula's errors as machine-layer errors (one place for every OpenNebula module here)."""
from __future__ import annotations

from opennebula import (CloudUnavailableError, LockedError, OpenNebulaError, QuotaExceededError,
                        VmBusyError)

from ..errors import CapacityError, CloudUnavailable, MachineBusy, MachineError


def cloud_error(e: OpenNebulaError, doing: str) -> MachineError:
    """The cloud's error as a machine-layer error saying whether waiting may help."""
    if isinstance(e, CloudUnavailableError):
        return CloudUnavailable(f"The cloud did not answer while {doing}: {e}")
    if isinstance(e, QuotaExceededError):
        return CapacityError(f"The cloud refused {doing}: {e}")
    if isinstance(e, (VmBusyError, LockedError)):
        return MachineBusy(f"The cloud cannot act on the VM yet ({doing}): {e}")
    return MachineError(f"The cloud refused {doing}: {e}", reason="cloud")

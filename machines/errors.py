"""What can go wrong with a machine, as sentences people can act on.

One tree for every caller of the machine layer (the JupyterHub spawner, the job service, Dask
clusters). Each class says what happened in the user's words; ``reason`` is a short code for logs
and metrics; ``transient`` says whether the same request may work later without anybody changing
anything (the cloud, the network or SSH not answering). Only transient errors may be waited out;
anything else that is not a :class:`MachineError` is a bug and is reported as one.
"""
from __future__ import annotations


class MachineError(Exception):
    """Base class. ``str(error)`` is meant for the person who asked for the machine."""

    reason = "machine"
    transient = False

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        if reason:
            self.reason = reason


class ConfigError(MachineError):
    """An admin setting is missing or wrong (credentials, keys, templates)."""

    reason = "config"


class OptionError(MachineError):
    """A value the user gave cannot be used; ``field`` names it (e.g. ``resource_host``)."""

    reason = "options"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class HostRefused(OptionError):
    """A user-named machine is not allowed: the hub itself, loopback, metadata, or outside the
    admin's networks."""


class CapacityError(MachineError):
    """The request does not fit the quota (checked before anything is created)."""

    reason = "quota"


class AccountError(MachineError):
    """The Unix account a workload must run as cannot be found, made or used."""

    reason = "account"


class SecretError(MachineError):
    """A stored key cannot be opened (the hub's crypt key changed)."""

    reason = "crypt-key"


class MachineFailed(MachineError):
    """The machine could not start (boot failure, refused by the cloud)."""

    reason = "vm-failed"


class MachineTimeout(MachineError):
    """The machine did not become ready in the time allowed."""

    reason = "vm-timeout"


class CloudUnavailable(MachineError):
    """The cloud's API did not answer; waiting may help."""

    reason = "cloud"
    transient = True


class MachineBusy(MachineError):
    """The cloud cannot act on the machine in its current state (e.g. terminate while its image
    is copied); it can once the machine leaves that state."""

    reason = "busy"
    transient = True


class HostUnreachable(MachineError):
    """The machine did not accept an SSH login in time."""

    reason = "ssh"
    transient = True


class HostKeyChanged(MachineError):
    """The machine presented a host key other than the pinned one; ``target`` is the hop."""

    reason = "host-key"

    def __init__(self, message: str, target=None):
        super().__init__(message)
        self.target = target


class BootstrapFailed(MachineError):
    """The bootstrap program could not run, or reported a failure, on the machine."""

    reason = "bootstrap"
    transient = True  # while polling, usually a broken channel; a failed start says why anyway
    log = ""          # the last lines of the server's log, when the program reported a failure


class TunnelError(MachineError):
    """A port could not be carried between the hub and the machine."""

    reason = "tunnel"
    transient = True


def is_transient(error: BaseException) -> bool:
    """Cloud, SSH or network trouble that may pass by itself (never a programming error)."""
    import asyncio

    import asyncssh

    if isinstance(error, MachineError):
        return error.transient
    return isinstance(error, (OSError, asyncio.TimeoutError, asyncssh.Error))

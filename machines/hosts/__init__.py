"""Hosts: acting on a machine (bootstrap, ports each way, liveness), locally or over SSH."""
from .base import CommandResult, Host
from .local import LocalHost
from .ssh import SshHost

__all__ = ["CommandResult", "Host", "LocalHost", "SshHost"]

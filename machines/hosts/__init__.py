"""Hosts: acting on a machine (bootstrap, ports each way, liveness), locally or over SSH."""
from .base import Host
from .local import LocalHost
from .ssh import SshHost

__all__ = ["Host", "LocalHost", "SshHost"]

"""NebulaHub spawner: users' Jupyter servers on OpenNebula VMs, SSH hosts or the hub machine."""
from .spawner import OpenNebulaSpawner

__all__ = ["OpenNebulaSpawner"]

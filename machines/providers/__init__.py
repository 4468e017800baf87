"""Machine providers, by the name admins use (``c.OpenNebulaSpawner.provider``)."""
from __future__ import annotations

from importlib import import_module

from .base import MachineProvider, MachineStatus

PROVIDERS = {
    "opennebula": "machines.providers.opennebula:OpenNebulaProvider",
    "ssh": "machines.providers.ssh:SshProvider",
    "local": "machines.providers.local:LocalProvider",
}


def provider_class(name: str) -> type[MachineProvider]:
    """The provider class for a configured name (imported lazily: pyone only when used)."""
    try:
        module, _, cls = PROVIDERS[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown machine provider {name!r}: use "
                         + ", ".join(PROVIDERS)) from None
    return getattr(import_module(module), cls)


__all__ = ["MachineProvider", "MachineStatus", "PROVIDERS", "provider_class"]

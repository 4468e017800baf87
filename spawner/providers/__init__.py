"""Host providers, by the name admins use in ``c.OpenNebulaSpawner.provider``."""
from .base import HostProvider, MachineStatus, ProviderError, SpawnContext


def provider_class(name: str) -> type[HostProvider]:
    """The provider class for a configured name (imported lazily: pyone only when used)."""
    if name == "opennebula":
        from .opennebula import OpenNebulaProvider

        return OpenNebulaProvider
    if name == "ssh":
        from .ssh import SshProvider

        return SshProvider
    if name == "local":
        from .local import LocalProvider

        return LocalProvider
    raise ValueError(f"unknown host provider {name!r}: use opennebula, ssh or local")


__all__ = ["HostProvider", "MachineStatus", "ProviderError", "SpawnContext", "provider_class"]

"""Reading the hub's config file outside the hub, and making its machine providers from it."""
from __future__ import annotations

from pathlib import Path


def load_config(path: str):
    """The hub's config file, evaluated as JupyterHub would (it may exit with its own message)."""
    from traitlets.config.loader import PyFileConfigLoader

    p = Path(path).resolve()
    return PyFileConfigLoader(p.name, str(p.parent)).load_config()


def machine_provider(name: str, cfg):
    """The provider ``name`` configured from ``cfg``, as the hub would make it."""
    from machines import MachineAccess, provider_class

    return provider_class(name)(config=cfg, access=MachineAccess(config=cfg))

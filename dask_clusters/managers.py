"""Which manager runs a backend: the one place that maps the admin's ``backend`` setting to its
module (imported only when used, so a server never loads dask-jobqueue for the local backend)."""
from __future__ import annotations

from .config import BACKENDS, DaskClusters, load_config
from .errors import ConfigProblem


def manager_class(backend: str):
    """The manager class of a backend name (``local``, ``slurm``, ``htcondor``)."""
    if backend == "local":
        from .local import LocalManager
        return LocalManager
    if backend == "slurm":
        from .slurm import SlurmManager
        return SlurmManager
    if backend == "htcondor":
        from .htcondor import HTCondorManager
        return HTCondorManager
    raise ConfigProblem(f"There is no Dask backend {backend!r}; choose one of "
                        f"{', '.join(BACKENDS)}.")


def manager_for(settings: DaskClusters | None = None):
    """A manager of the admin's backend (not started)."""
    settings = settings or load_config()
    return manager_class(settings.backend)(settings)

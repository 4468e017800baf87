"""Users' Dask clusters, configured by the admin: workers inside the user's server, or as SLURM
or HTCondor jobs started by dask-jobqueue, adaptive within per-user limits, watched, and never
outliving their owner.

* :func:`get_cluster` (:mod:`dask_clusters.notebook`): the cluster of this server, for notebooks
  (``cluster = get_cluster(); client = cluster.client``) and the plotting app;
* :func:`manager_for` (a fresh, not started :class:`~dask_clusters.base.ClusterManager` of the
  admin's backend), :class:`~dask_clusters.config.DaskClusters` (every setting),
  :func:`~dask_clusters.config.load_config`;
* errors: :mod:`dask_clusters.errors` (each a sentence for the user).

The seam is documented on :class:`dask_clusters.base.ClusterManager`; one module per backend
(``local``, ``slurm``, ``htcondor``).
"""
from __future__ import annotations

from .config import BACKENDS, DaskClusters, load_config
from .errors import ClusterError, ClusterUnavailable, ConfigProblem, LimitExceeded


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


def get_cluster(*args, **kwargs):
    """See :func:`dask_clusters.notebook.get_cluster`."""
    from .notebook import get_cluster as _get_cluster

    return _get_cluster(*args, **kwargs)


__all__ = ["BACKENDS", "ClusterError", "ClusterUnavailable", "ConfigProblem", "DaskClusters",
           "LimitExceeded", "get_cluster", "load_config", "manager_class", "manager_for"]

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
from .managers import manager_class, manager_for


def get_cluster(*args, **kwargs):
    """See :func:`dask_clusters.notebook.get_cluster`."""
    from .notebook import get_cluster as _get_cluster

    return _get_cluster(*args, **kwargs)


__all__ = ["BACKENDS", "ClusterError", "ClusterUnavailable", "ConfigProblem", "DaskClusters",
           "LimitExceeded", "get_cluster", "load_config", "manager_class", "manager_for"]

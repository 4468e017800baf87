"""What can go wrong with a Dask cluster, as sentences the researcher (or the admin) can act on.

One small tree, like the machine layer's and the batch backends': ``str(error)`` is meant for the
person who asked for the cluster; anything else escaping this package is a bug.
"""
from __future__ import annotations


class ClusterError(Exception):
    """Base class."""


class ConfigProblem(ClusterError):
    """An admin setting is wrong (a missing config file, an interface this machine does not have,
    a value out of range); the sentence names the setting."""


class LimitExceeded(ClusterError):
    """A request beyond the user's limits (workers, cores, memory); the sentence gives both."""


class ClusterUnavailable(ClusterError):
    """The cluster could not start or lost every worker: the sentence says why (the batch system
    refused, the workers could not reach the scheduler, the jobs were held ...)."""

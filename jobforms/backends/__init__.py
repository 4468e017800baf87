"""Batch backends of the jobs service: where a problem-oriented job runs.

One small contract (:class:`~.base.Backend`, documented there) and one module per batch system:
``local`` (the hub's own machine, the demo's default), ``slurm``, ``htcondor``, and ``cloud``
(per-job VMs from the machine layer). The service
picks a class by name from :data:`BACKENDS` and lists :data:`BACKEND_CLASSES` among its
application's configurable classes, so every setting shows in ``--help-all``.
"""
from .base import (Backend, account_host, BackendStatus, BatchJob, BatchState, FINAL_BATCH_STATES, Limits,
                   Resources)
from .cloud import CloudBackend
from .errors import BackendError, BackendUnavailable, CommandFailed, JobRefused
from .htcondor import HTCondorBackend
from .local import LocalBackend
from .slurm import SlurmBackend

BACKENDS = {cls.name: cls for cls in (LocalBackend, SlurmBackend, HTCondorBackend,
                                       CloudBackend)}
BACKEND_CLASSES = [Backend, *BACKENDS.values()]

__all__ = ["BACKENDS", "account_host", "BACKEND_CLASSES", "Backend", "BackendError", "BackendStatus",
           "BackendUnavailable", "BatchJob", "CloudBackend", "BatchState", "CommandFailed", "FINAL_BATCH_STATES",
           "HTCondorBackend", "JobRefused", "Limits", "LocalBackend", "Resources",
           "SlurmBackend"]

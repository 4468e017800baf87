"""Workers as SLURM jobs: dask-jobqueue's ``SLURMCluster``, one job (one worker) each."""
from __future__ import annotations

import os

from .base import LedgerJob
from .jobqueue import JobQueueManager, jobqueue_module

_slurm = jobqueue_module("dask_jobqueue.slurm")


class NebulaSLURMJob(LedgerJob, _slurm.SLURMJob):
    """SLURMJob whose id goes to the ledger at once."""


class SlurmManager(JobQueueManager):
    name = "slurm"
    label = "SLURM"
    cancel_command = ("scancel",)

    def make_cluster(self, common: dict):
        s = self.settings
        options = self.jobqueue_options(common)
        if s.slurm_partition:
            options["queue"] = s.slurm_partition
        if s.slurm_account:
            options["account"] = s.slurm_account
        options["job_extra_directives"] = list(s.slurm_directives)
        options["walltime"] = _hms(s.walltime_seconds)
        return _slurm.SLURMCluster(job_cls=NebulaSLURMJob, **options)

    def batch_backend(self):
        from jobforms.backends import SlurmBackend

        return SlurmBackend(host=self.status_host(), command_env=self.command_env())

    def job_log(self, job_id: str) -> str | None:
        # dask-jobqueue: "#SBATCH -e <log_directory>/<job name>-%J.err"
        return os.path.join(self.log_directory(), f"{self.job_name}-{job_id}.err")


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

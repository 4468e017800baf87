"""Workers as HTCondor jobs: dask-jobqueue's ``HTCondorCluster``, one job (one worker) each.

The wall time becomes ``allowed_execute_duration``: HTCondor holds a job that runs longer (the
watch reports it and replaces the worker; workers retire before, see ``--lifetime``).
"""
from __future__ import annotations

import os

from .base import LedgerJob
from .jobqueue import JobQueueManager, jobqueue_module

_htcondor = jobqueue_module("dask_jobqueue.htcondor")


class NebulaHTCondorJob(LedgerJob, _htcondor.HTCondorJob):
    """HTCondorJob whose id goes to the ledger at once."""


class HTCondorManager(JobQueueManager):
    name = "htcondor"
    label = "HTCondor"
    cancel_command = ("condor_rm",)

    def make_cluster(self, common: dict):
        s = self.settings
        options = self.jobqueue_options(common)
        options["disk"] = s.htcondor_disk
        options["job_extra_directives"] = {
            "allowed_execute_duration": str(s.walltime_seconds), **s.htcondor_submit}
        return _htcondor.HTCondorCluster(job_cls=NebulaHTCondorJob, **options)

    def batch_backend(self):
        from jobforms.backends import HTCondorBackend

        return HTCondorBackend(host=self.status_host(), command_env=self.command_env())

    def job_log(self, job_id: str) -> str | None:
        # dask-jobqueue: "Error = $(LogDirectory)/worker-$F(MY.JobId).err"
        return os.path.join(self.log_directory(), f"worker-{job_id}.err")

"""The cloud backend's HTCondor-pool mode: a job's VMs join the site's HTCondor pool through
their context, and the job is submitted there with a requirement that pins it to them, as the
JINR cloud service did.

The image's contextualization does the joining. Every job VM carries ``NEBULAHUB_JOB_ID`` in
its CONTEXT, and pool mode adds the admin's ``pool["context"]`` (e.g. ``CONDOR_HOST``); the
image joins that pool, publishes ``NebulaHubJob = "<the job id>"`` in its slots' ads
(``STARTD_ATTRS``) and starts only jobs that carry the same attribute. The backend then

bootstrapping
    waits until the job's N machines show in ``condor_status`` with that attribute (one
    query per poll; ``join_timeout`` fails the job with a sentence and the VMs are given back);
executing
    submits through an :class:`~.htcondor.HTCondorBackend` (its description checked by
    HTCondor's own parser) with ``requirements = (TARGET.NebulaHubJob =?= "<id>")`` and
    ``+NebulaHubJob = "<id>"``, and reads the job's state from ``condor_q``/``condor_history``.

The condor commands run where the cloud backend's own commands run (its ``submit_host``, as
its ``exec_prefix`` for the job's account, with its ``command_env`` unless ``pool["htcondor"]``
says otherwise). As with the ``htcondor`` backend, the job's folder and the app are where the
submit description names them: the pool's machines reach them through a shared filesystem or
HTCondor's file transfer (``pool["htcondor"]["extra_submit"]``); nothing is copied over SSH.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable

from traitlets import TraitError

from machines.request import checked_context

from .base import BatchJob, Resources
from .errors import BackendError, BackendUnavailable
from .htcondor import HTCondorBackend

JOB_ATTRIBUTE = "NebulaHubJob"           # what the job's slots publish, and the job carries
JOB_ID_CONTEXT = "NEBULAHUB_JOB_ID"      # the CONTEXT attribute that tells a VM its job
SETTINGS = ("context", "htcondor", "join_timeout")


class PoolMode:
    """``CloudBackend.pool`` read once: ValueError with a sentence for what cannot work."""

    def __init__(self, raw: dict):
        unknown = sorted(set(raw) - set(SETTINGS))
        if unknown:
            raise ValueError(f"CloudBackend.pool: unknown setting(s) {', '.join(unknown)} "
                             f"(use {', '.join(SETTINGS)}).")
        context = raw.get("context") or {}
        if not isinstance(context, dict) or not all(isinstance(v, str) for v in context.values()):
            raise ValueError('CloudBackend.pool["context"] must map attribute names to text.')
        if JOB_ID_CONTEXT in context:
            raise ValueError(f'CloudBackend.pool["context"]: {JOB_ID_CONTEXT} is set per job by '
                             "the backend.")
        try:
            self.context = checked_context(context)
        except ValueError as e:
            raise ValueError(f'CloudBackend.pool["context"]: {e}.') from None
        self.htcondor = dict(raw.get("htcondor") or {})
        known = HTCondorBackend.class_traits(config=True)
        for key in self.htcondor:
            if key == "submit_host":
                raise ValueError('CloudBackend.pool["htcondor"]: give submit_host in the cloud '
                                 "backend's own settings (its commands run there).")
            if key not in known:
                raise ValueError(f'CloudBackend.pool["htcondor"]: {key!r} is not a setting of '
                                 "HTCondorBackend.")
        try:  # wrong types are said now, not when a job is submitted
            HTCondorBackend(**self.htcondor)
        except TraitError as e:
            raise ValueError(f'CloudBackend.pool["htcondor"]: {e}') from None
        try:
            self.join_timeout = float(raw.get("join_timeout", 600))
        except (TypeError, ValueError):
            raise ValueError('CloudBackend.pool["join_timeout"] must be a number of seconds.') \
                from None
        if self.join_timeout <= 0:
            raise ValueError('CloudBackend.pool["join_timeout"] must be more than 0 seconds.')

    def machine_context(self, job_id: str) -> dict[str, str]:
        """What a job VM's CONTEXT gets besides the provider's own attributes."""
        return {**self.context, JOB_ID_CONTEXT: job_id}

    def condor(self, cloud, job_id: str) -> HTCondorBackend:
        """The HTCondor backend that submits and watches ``job_id``, on the cloud backend's
        host, its submissions marked with the job's attribute."""
        settings = {"exec_prefix": list(cloud.exec_prefix),
                    "command_env": dict(cloud.command_env),
                    "command_timeout": cloud.command_timeout,
                    "connect_timeout": cloud.connect_timeout, **self.htcondor}
        settings["extra_submit"] = {**settings.get("extra_submit", {}),
                                    f"MY.{JOB_ATTRIBUTE}": f'"{job_id}"'}
        return HTCondorBackend(host=cloud.host, log=cloud.log, **settings)

    @staticmethod
    def job(job: BatchJob, hosts: list[str]) -> BatchJob:
        """The job as the pool runs it: one program on one of its machines, pinned to them,
        with ``$NEBULAHUB_JOB_HOSTS`` naming them all (as in SSH mode)."""
        r = job.resources
        return BatchJob(job_id=job.job_id, argv=job.argv, workdir=job.workdir,
                        stdout=job.stdout, stderr=job.stderr, account=job.account,
                        env={**job.env, "NEBULAHUB_JOB_HOSTS": " ".join(hosts)},
                        resources=Resources(nodes=1, cores=r.cores, memory_mb=r.memory_mb,
                                            walltime_s=r.walltime_s),
                        requirements=f'TARGET.{JOB_ATTRIBUTE} =?= "{job.job_id}"',
                        user=job.user)

    async def join(self, cloud, job_id: str, rec, save: Callable[[], None]) -> None:
        """Wait until the job's machines are in the pool; BackendError after ``join_timeout``
        (counted from the first look, across restarts of the service)."""
        wanted = len(rec.machines)
        if not rec.joining_since:
            rec.joining_since = time.time()
            save()
        condor = self.condor(cloud, job_id)
        joined, trouble = 0, ""
        while True:
            try:
                ads = await condor.machine_ads(f'{JOB_ATTRIBUTE} == "{job_id}"',
                                               ["Name", "Machine", JOB_ATTRIBUTE])
                # a machine may show several slots: count machines
                joined, trouble = len({ad.get("Machine") or ad.get("Name") for ad in ads}), ""
            except BackendUnavailable as e:  # the pool may answer next time
                trouble = f" The pool did not answer: {e}"
            if joined >= wanted:
                return
            if time.time() - rec.joining_since > self.join_timeout:
                raise BackendError(
                    f"The job's machines did not join the HTCondor pool within "
                    f"{self.join_timeout:.0f} s ({joined} of {wanted} joined); they are given "
                    f"back.{trouble}")
            reason = (f"Waiting for the machines to join the HTCondor pool ({joined} of "
                      f"{wanted}).{trouble}")
            if reason != rec.reason:
                rec.reason = reason
                save()
            await asyncio.sleep(cloud.poll_interval)

"""Per-job machines: each job gets VMs of its own from the machine layer, runs on them, and gives
them back, as the JINR cloud service did (pending -> booting -> bootstrapping -> executing ->
terminating -> done).

booting
    ``resources.nodes`` machines are asked of the provider (OpenNebula by default) at once,
    tagged as a job worker of this job (``OwnerKind.JOB_WORKER``): the hub's orphan sweep never
    takes them for a server's.
bootstrapping
    The hub logs in to each (per-acquisition key, host key pinned at first contact), the
    bootstrap program makes a Python environment with the admin's packages (or uses one baked
    into the image), and the job's folder, the app and its input files travel to the first
    machine as one tar stream, packed as the job's own account (never read as root).
executing
    The program runs on the first machine under the ``local`` backend's launcher (detached
    session, exit code, wall time), with ``$NEBULAHUB_JOB_HOSTS`` naming every machine.
terminating
    The job's folder comes back (a tar stream, unpacked as the job's account into its folder
    in the user's home) and every machine is released; a release the cloud refuses is owed
    and retried (``MachineAccess.pending_release_file``).

With ``pool`` set (HTCondor-pool mode, :mod:`.cloud_pool`), bootstrapping is waiting for the
machines to join the site's HTCondor pool through their context, and executing is the job in
that pool, pinned to them; there is no SSH to the machines and no copying.

Every job machine's CONTEXT carries ``NEBULAHUB_JOB_ID``. Everything needed to finish a job
lives in one 0600 record per job in :attr:`state_dir`
(machines with sealed keys and pinned host keys, the phase, the outcome): a restarted service
picks each job up where it was.
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
import uuid
from dataclasses import asdict
from typing import Iterable, Optional

from pydantic import BaseModel, Field
from traitlets import Dict, Float, Integer, List, TraitError, Unicode, validate

from machines import (Machine, MachineAccess, MachineError, MachineRequest, MachineSize,
                      MachineStatus, OwnerKind, provider_class)
from machines.hosts import Host
from machines.releases import keep_retrying

from .base import JOB_ID, Backend, account_host, BackendStatus, BatchJob, BatchState, Limits, Resources
from .cloud_pool import PoolMode
from .errors import BackendError, BackendUnavailable
from .local import LocalBackend

# Packs {name in the tar: local path} from stdin's JSON into a tar on stdout; run as the job's
# account, so that only what that account may read is ever sent.
PACK = r"""
import json, os, sys, tarfile
wanted = json.load(sys.stdin)
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
    for name, path in wanted.items():
        tar.add(path, arcname=name, recursive=True)
"""

PHASES = ("booting", "bootstrapping", "executing", "terminating", "ended")


class CloudRecord(BaseModel):
    """One job's record: what a restarted service needs to finish it."""

    job: dict
    phase: str = "booting"
    reason: str = "Asking the cloud for machines."
    machines: list[Machine] = Field(default_factory=list)
    remote_root: str = ""
    remote_bin: str = ""
    remote_id: str = ""
    cancel: bool = False
    outcome: Optional[dict] = None  # {"state", "reason", "exit_code"} once known
    program_ended: bool = False     # the program's own end was seen (else it may still run)
    joining_since: float = 0.0      # pool mode: when the wait for the pool began (epoch)

    def batch_job(self) -> BatchJob:
        raw = dict(self.job)
        raw["resources"] = Resources(**raw["resources"])
        return BatchJob(**raw)


class _Cancelled(Exception):
    pass


class CloudBackend(Backend):
    """Jobs on VMs of their own, acquired through the machine layer and released at the end."""

    name = "cloud"
    uses_vms = True
    backend_id_regexp = JOB_ID.pattern.strip("^$")

    provider = Unicode("opennebula", help="""The machine provider job machines come from
        (``opennebula``; configured by its own section, e.g. c.OpenNebulaProvider, shared
        with the servers).""").tag(config=True)
    template_id = Integer(-1, help="""VM template of job machines (-1: the provider's
        default template).""").tag(config=True)
    cpu_per_core = Float(1.0, help="""OpenNebula CPU share asked per core a job asks for (its
        VCPU is the number of cores).""").tag(config=True)
    python_env = Unicode("", help="""A Python environment baked into the job image
        (``bin/python`` in it): used as is when present (fast start).""").tag(config=True)
    create_env = Unicode("~/.nebulahub/job-env", help="""Where the bootstrap builds the jobs'
        Python environment on a machine without ``python_env``.""").tag(config=True)
    packages = List(Unicode(), ["numpy"], help="""Packages the jobs' environment gets when it
        is built (the apps' needs).""").tag(config=True)
    pip_args = List(Unicode(), help="Extra pip arguments (e.g. an index URL).").tag(config=True)
    job_folder = Unicode("nebulahub-jobs", help="""Folder under the machine login's home
        where a job's files are (``<home>/<job_folder>/<job id>/work``).""").tag(config=True)
    state_dir = Unicode("~/.nebulahub/cloud-jobs", help="""Folder of the jobs' records (0700;
        one 0600 file per job with its machines' sealed keys): what lets a restarted service
        finish every job.""").tag(config=True)
    poll_interval = Float(2.0, help="Seconds between two looks at a running job's program."
                          ).tag(config=True)
    sweep_interval = Float(300, help="""Seconds between two sweeps for job machines of this
        hub that no live job holds (left by a service that died between asking for a machine
        and recording it): they are given back. Servers' and Dask workers' machines are never
        touched. 0: no sweep.""").tag(config=True)
    release_timeout = Float(600, help="""Seconds a finished job keeps asking the cloud to
        release a machine it refuses to end now (e.g. still booting) before the release is
        left to the background retries.""").tag(config=True)
    transfer_timeout = Float(1800, help="Seconds copying a job's files in or out may take."
                             ).tag(config=True)
    pool = Dict(help="""HTCondor-pool mode; empty (the default): the program runs on the
        job's first machine over SSH. Set, the job's machines join the site's HTCondor pool
        through their context and the job is submitted there, pinned to them:
        {'context': {'CONDOR_HOST': 'cm.example.org'}, 'htcondor': {...}, 'join_timeout': 600}.
        ``context``: CONTEXT attributes the image's contextualization reads to join the pool
        (never secrets: refused like every context attribute); every job machine also gets
        NEBULAHUB_JOB_ID, and must publish NebulaHubJob = "<that id>" in its slots' ads and
        start only jobs with the same. ``htcondor``: settings of the HTCondorBackend that
        submits (command_env, exec_prefix, extra_submit, user_log, ...; its commands run on
        this backend's submit_host, as its exec_prefix and command_env unless given here).
        ``join_timeout``: seconds the machines may take to show in condor_status once they
        run; then the job fails and they are given back.""").tag(config=True)

    @validate("pool")
    def _valid_pool(self, proposal):
        try:
            PoolMode(proposal["value"])
        except ValueError as e:
            raise TraitError(str(e)) from None
        return proposal["value"]

    @property
    def _pool(self) -> Optional[PoolMode]:
        if not self.pool:
            return None
        if self._pool_read is None or self._pool_read[0] != self.pool:
            self._pool_read = (dict(self.pool), PoolMode(self.pool))
        return self._pool_read[1]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._records: dict[str, CloudRecord] = {}
        self._drivers: dict[str, asyncio.Task] = {}
        self._work: dict[str, asyncio.Task] = {}
        self._hosts: dict[str, list[Host]] = {}
        self._machine_provider = None
        self._access = None
        self._sweeper: Optional[asyncio.Task] = None
        self._pool_read: Optional[tuple[dict, PoolMode]] = None

    # ---- the machine layer -------------------------------------------------------------------
    @property
    def access(self) -> MachineAccess:
        if self._access is None:
            self._access = MachineAccess(parent=self, log=self.log)
        return self._access

    @property
    def machines(self):
        if self._machine_provider is None:
            self._machine_provider = provider_class(self.provider)(parent=self, log=self.log,
                                                                   access=self.access)
            keep_retrying(self.access.pending_releases, self._machine_provider.release,
                          self.access.release_retry_interval)
        return self._machine_provider

    # ---- records -----------------------------------------------------------------------------
    @property
    def _dir(self) -> str:
        path = os.path.expanduser(self.state_dir)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def _save(self, job_id: str, rec: CloudRecord) -> None:
        self._records[job_id] = rec
        path = os.path.join(self._dir, f"{job_id}.json")
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".rec-")
        with os.fdopen(fd, "w") as f:  # mkstemp: 0600
            f.write(rec.model_dump_json())
        os.replace(tmp, path)

    def _load(self, job_id: str) -> Optional[CloudRecord]:
        if job_id in self._records:
            return self._records[job_id]
        try:
            with open(os.path.join(self._dir, f"{job_id}.json")) as f:
                rec = CloudRecord.model_validate_json(f.read())
        except FileNotFoundError:
            return None
        self._records[job_id] = rec
        return rec

    # ---- the contract ------------------------------------------------------------------------
    async def submit(self, job: BatchJob) -> str:
        self.check(job)
        self._checked_id(job.job_id)
        pool = self._pool
        if pool:  # what HTCondor cannot carry is refused before any machine is made
            pool.condor(self, job.job_id).job_script(pool.job(job, []))
        if self._load(job.job_id) is None:
            raw = asdict(job)
            raw["argv"] = list(job.argv)
            self._save(job.job_id, CloudRecord(job=raw))
        self._drive(job.job_id)
        return job.job_id

    async def find(self, job: BatchJob) -> Optional[str]:
        """The job's record, if :meth:`submit` wrote it (its id is the job's id)."""
        return job.job_id if self._load(self._checked_id(job.job_id)) is not None else None

    async def status(self, backend_ids: Iterable[str]) -> dict[str, BackendStatus]:
        out = {}
        for job_id in dict.fromkeys(backend_ids):
            rec = self._load(self._checked_id(job_id))
            if rec is None:
                out[job_id] = BackendStatus(BatchState.VANISHED, "The cloud backend has no "
                                            "record of this job.", None, "no record")
                continue
            if rec.phase != "ended":
                self._drive(job_id)  # after a restart: carry on where it was
            out[job_id] = self._status_of(rec)
        return out

    async def cancel(self, backend_id: str, account: Optional[str] = None) -> None:
        job_id = self._checked_id(backend_id)
        rec = self._load(job_id)
        if rec is None or rec.phase in ("terminating", "ended") or rec.cancel:
            return
        rec.cancel = True
        self._save(job_id, rec)
        if rec.phase == "executing" and rec.remote_id:
            try:
                await self._inner(job_id).cancel(
                    rec.remote_id, rec.job["account"] if self._pool else None)
                return  # the program ends; the driver sees it and gives the machines back
            except (BackendError, MachineError, OSError, KeyError, IndexError):
                pass
        work = self._work.get(job_id)
        if work is not None:
            work.cancel()

    async def offers(self) -> Limits:
        return self.admin_limits()

    async def quota(self, user: str) -> dict[str, str]:
        """The cloud account's quota, as the servers' form shows it."""
        return await self.machines.form_info(user)

    # ---- driving a job -----------------------------------------------------------------------
    @staticmethod
    def _status_of(rec: CloudRecord) -> BackendStatus:
        if rec.phase == "ended":
            o = rec.outcome or {"state": "failed", "reason": "The job ended without an outcome."}
            return BackendStatus(BatchState(o["state"]), o["reason"], o.get("exit_code"),
                                 o["state"])
        if rec.phase in ("booting", "bootstrapping"):
            return BackendStatus(BatchState.QUEUED, rec.reason, None, rec.phase, rec.phase)
        if rec.phase == "terminating":  # running: the program ran; queued: it never did
            ran = BatchState.RUNNING if rec.remote_id else BatchState.QUEUED
            return BackendStatus(ran, rec.reason, None, rec.phase, rec.phase)
        return BackendStatus(BatchState.RUNNING, rec.reason, None, rec.phase)

    def _drive(self, job_id: str) -> None:
        if self._sweeper is None and self.sweep_interval > 0:
            self._sweeper = asyncio.ensure_future(self._sweep_forever())
        task = self._drivers.get(job_id)
        if task is None or task.done():
            self._drivers[job_id] = asyncio.ensure_future(self._run(job_id))

    async def _run(self, job_id: str) -> None:
        rec = self._load(job_id)
        if rec.phase in ("booting", "bootstrapping", "executing"):
            work = self._work[job_id] = asyncio.ensure_future(self._phases(job_id, rec))
            try:
                await asyncio.wait({work})
            except asyncio.CancelledError:  # the service stops: the record carries on later
                work.cancel()
                raise
            finally:
                self._work.pop(job_id, None)
            if work.cancelled() or isinstance(work.exception(), _Cancelled):
                rec.outcome = {"state": "cancelled", "reason": "Cancelled."}
            elif work.exception() is not None:
                rec.outcome = {"state": "failed", "reason": self._reason(work.exception())}
                if not isinstance(work.exception(), (MachineError, BackendError)):
                    self.log.error("Cloud job %s failed", job_id, exc_info=work.exception())
            rec.phase, rec.reason = "terminating", "Giving the machines back."
            self._save(job_id, rec)
        if rec.phase == "terminating":
            await self._terminate(job_id, rec)

    @staticmethod
    def _reason(e: BaseException) -> str:
        text = str(e) or type(e).__name__
        return text if text.endswith((".", "!", "?")) else text + "."

    async def _phases(self, job_id: str, rec: CloudRecord) -> None:
        pool = self._pool
        if rec.phase == "booting":
            await self._boot(job_id, rec)
            rec.phase = "bootstrapping"
            rec.reason = ("Waiting for the machines to join the HTCondor pool." if pool
                          else "Preparing the machines.")
            self._save(job_id, rec)
        if rec.phase == "bootstrapping":
            if rec.cancel:
                raise _Cancelled()
            if pool:
                await pool.join(self, job_id, rec, lambda: self._save(job_id, rec))
            else:
                await self._bootstrap(job_id, rec)
            rec.phase = "executing"
            rec.reason = "Submitting to the HTCondor pool." if pool else "Running."
            self._save(job_id, rec)
        await self._execute(job_id, rec)

    def _report(self, job_id: str, rec: CloudRecord):
        def report(_percent: int, message: str) -> None:
            rec.reason = message
            self._save(job_id, rec)
        return report

    async def _boot(self, job_id: str, rec: CloudRecord) -> None:
        job = rec.batch_job()
        res = job.resources
        size = MachineSize(cpu=self.cpu_per_core * res.cores, vcpu=res.cores,
                           memory_mb=res.memory_mb, label=f"{res.cores} cores",
                           template_id=None if self.template_id < 0 else self.template_id)
        while len(rec.machines) < res.nodes:
            rec.machines.append(Machine(provider=self.provider, start_id=uuid.uuid4().hex,
                                        user=job.user))
        self._save(job_id, rec)

        async def persist():
            self._save(job_id, rec)

        report = self._report(job_id, rec)
        pool = self._pool
        context = pool.machine_context(job_id) if pool else {"NEBULAHUB_JOB_ID": job_id}

        async def one(machine: Machine):
            if machine.host:
                return
            if machine.vm_id is not None or machine.username:  # made before a restart
                await self.machines.resume(machine, report, persist)
                return
            request = MachineRequest(user=job.user or job.account,
                                     owner_kind=OwnerKind.JOB_WORKER, owner_id=job_id,
                                     start_id=machine.start_id, size=size, context=context)
            await self.machines.acquire(request, machine, report, persist)

        rec.reason = f"Asking the cloud for {res.nodes} machine{'s' * (res.nodes > 1)}."
        self._save(job_id, rec)
        await asyncio.gather(*(one(m) for m in rec.machines))

    async def _open(self, job_id: str, rec: CloudRecord) -> list[Host]:
        hosts = self._hosts.get(job_id)
        if hosts and all(h.alive() for h in hosts):
            return hosts
        hosts = [self.machines.host_for(m) for m in rec.machines]
        await asyncio.gather(*(h.open(wait=self.access.ssh_timeout) for h in hosts))
        self._save(job_id, rec)  # host keys pinned at first contact
        self._hosts[job_id] = hosts
        return hosts

    async def _bootstrap(self, job_id: str, rec: CloudRecord) -> None:
        job = rec.batch_job()
        rec.reason = "Logging in to the machines."
        self._save(job_id, rec)
        hosts = await self._open(job_id, rec)
        rec.reason = "Preparing the Python environment on the machines."
        self._save(job_id, rec)
        request = {"action": "environment", "workdir": f"~/{self.job_folder}/{job_id}",
                   "python_env": self.python_env, "create_env": self.create_env,
                   "packages": list(self.packages) or ["pip"], "pip_args": list(self.pip_args)}
        results = await asyncio.gather(*(h.bootstrap(dict(request)) for h in hosts))
        for r in results:
            if not r.get("ok", True):
                raise BackendError(f"A job machine could not be prepared: {r.get('error')}")
        rec.remote_root, rec.remote_bin = results[0]["workdir"], results[0]["bin"]
        rec.reason = "Copying the job's files to the machine."
        self._save(job_id, rec)
        wanted = {"work": job.workdir, **{name: local for local, name in job.stage.items()}}
        data = await self._pack(job.account, wanted)
        code, _, err = await hosts[0].exchange(["tar", "-x", "-C", rec.remote_root, "-f", "-"],
                                              data, timeout=self.transfer_timeout)
        if code != 0:
            raise BackendError(f"The job's files could not be copied to its machine: "
                               f"{err.strip()[-300:]}")

    async def _pack(self, account: str, wanted: dict[str, str]) -> bytes:
        local = account_host(account)
        code, data, err = await local.exchange(["python3", "-c", PACK],
                                               json.dumps(wanted).encode(),
                                               timeout=self.transfer_timeout)
        if code != 0:
            raise BackendError(f"The job's files could not be read as {account}: "
                               f"{err.strip()[-300:]}")
        return data

    def _remote_job(self, rec: CloudRecord) -> BatchJob:
        job, root = rec.batch_job(), rec.remote_root
        moves = {job.workdir.rstrip("/"): f"{root}/work",
                 **{local.rstrip("/"): f"{root}/{name}" for local, name in job.stage.items()}}

        def there(value: str) -> str:
            for local in sorted(moves, key=len, reverse=True):
                value = value.replace(local, moves[local])
            return value

        head = rec.machines[0]
        env = {k: there(v) for k, v in job.env.items()}
        env["PATH"] = f"{rec.remote_bin}:/usr/local/bin:/usr/bin:/bin"
        env["NEBULAHUB_JOB_HOSTS"] = " ".join(m.host for m in rec.machines)
        return BatchJob(job_id=job.job_id, argv=[there(a) for a in job.argv],
                        workdir=f"{root}/work", stdout=there(job.stdout),
                        stderr=there(job.stderr), account=head.username or job.account,
                        env=env, resources=Resources(nodes=1, cores=job.resources.cores,
                                                     memory_mb=job.resources.memory_mb,
                                                     walltime_s=job.resources.walltime_s))

    def _inner(self, job_id: str) -> Backend:
        """The program's launcher: on the job's first machine, or the HTCondor pool."""
        pool = self._pool
        if pool:
            return pool.condor(self, job_id)
        return LocalBackend(host=self._hosts[job_id][0], log=self.log,
                            command_timeout=self.command_timeout)

    async def _execute(self, job_id: str, rec: CloudRecord) -> None:
        pool = self._pool
        if not pool:
            await self._open(job_id, rec)
        if rec.cancel:
            raise _Cancelled()
        if not rec.remote_id:
            job = pool.job(rec.batch_job(), [m.host for m in rec.machines]) if pool \
                else self._remote_job(rec)
            inner = self._inner(job_id)
            # submitted before a restart cut the record short? then that one is the job
            rec.remote_id = await inner.find(job) or await inner.submit(job)
            rec.reason = "Running."
            self._save(job_id, rec)
        while True:
            try:
                if not pool:
                    await self._open(job_id, rec)
                status = (await self._inner(job_id).status([rec.remote_id]))[rec.remote_id]
            except (BackendUnavailable, MachineError, OSError) as e:
                await self._lost(rec, e)
                await asyncio.sleep(self.poll_interval)
                continue
            if status.state.is_final:
                state = status.state
                if state is BatchState.VANISHED:
                    state = BatchState.FAILED
                reason = status.reason
                if state is BatchState.CANCELLED and rec.cancel:
                    reason = "Cancelled."
                rec.outcome = {"state": state.value, "reason": reason,
                               "exit_code": status.exit_code}
                rec.program_ended = True
                return
            if pool and status.state is BatchState.HELD:
                # nobody releases it here, and its machines cost while it waits: it ends
                await self._inner(job_id).cancel(rec.remote_id, rec.job["account"])
                rec.outcome = {"state": "failed", "reason": f"HTCondor {status.reason} (the "
                               "job was removed from the pool).", "exit_code": None}
                rec.program_ended = True
                return
            if pool and status.reason != rec.reason:  # idle, running: HTCondor's words
                rec.reason = status.reason
                self._save(job_id, rec)
            await asyncio.sleep(self.poll_interval)

    async def _lost(self, rec: CloudRecord, error: Exception) -> None:
        """A machine that stopped answering: the job fails only when the cloud says it is gone."""
        for m in rec.machines:
            if await self.machines.check(m) is MachineStatus.GONE:
                raise BackendError(f"The job's machine (VM {m.vm_id}) is gone: the cloud ended "
                                   f"it while the job ran ({error}).")
        self.log.warning("A job machine does not answer (%s); trying again", error)

    async def _terminate(self, job_id: str, rec: CloudRecord) -> None:
        job = rec.batch_job()
        if self._pool and rec.remote_id and not rec.program_ended:
            try:  # the job failed or was cancelled around its submission: not left queued
                await self._inner(job_id).cancel(rec.remote_id, job.account)
            except BackendError as e:
                self.log.warning("HTCondor job %s of job %s could not be removed: %s",
                                 rec.remote_id, job_id, e)
        if rec.remote_root and rec.remote_id:
            try:
                await self._fetch(job_id, rec, job)
            except (BackendError, MachineError, OSError, asyncio.TimeoutError) as e:
                if (rec.outcome or {}).get("state") == "completed":
                    rec.outcome = {"state": "failed", "reason": "The results could not be "
                                   f"copied back from the job's machine: {e}", "exit_code": 0}
        for host in self._hosts.pop(job_id, []):
            await host.close()
        await asyncio.gather(*(self._release(job_id, rec, m) for m in rec.machines))
        rec.phase = "ended"
        rec.reason = (rec.outcome or {}).get("reason", "Ended.")
        self._save(job_id, rec)

    async def _release(self, job_id: str, rec: CloudRecord, machine: Machine) -> None:
        """Give one machine back; while the cloud refuses (a VM still booting cannot be
        terminated) the job stays terminating and says why, up to ``release_timeout``, after
        which the release is owed and retried in the background."""
        deadline = asyncio.get_running_loop().time() + self.release_timeout
        while True:
            try:
                await self.machines.release(machine)
                return
            except MachineError as e:
                if asyncio.get_running_loop().time() > deadline:
                    self.log.error("VM %s of job %s could not be released (owed, retried): %s",
                                   machine.vm_id, job_id, e)
                    self.access.pending_releases.add(machine)
                    return
                rec.reason = f"Waiting for the cloud to let VM {machine.vm_id} go: {e}"
                self._save(job_id, rec)
            await asyncio.sleep(self.access.release_retry_interval)

    async def _fetch(self, job_id: str, rec: CloudRecord, job: BatchJob) -> None:
        rec.reason = "Copying the results back."
        self._save(job_id, rec)
        hosts = await self._open(job_id, rec)
        code, data, err = await hosts[0].exchange(
            ["tar", "-c", "-C", f"{rec.remote_root}/work", "--exclude=./.nebulahub", "-f", "-",
             "."], timeout=self.transfer_timeout)
        if code != 0:
            raise BackendError(f"tar on the job's machine failed: {err.strip()[-300:]}")
        local = account_host(job.account)
        code, _, err = await local.exchange(
            ["tar", "-x", "-C", job.workdir, "--no-same-owner", "-f", "-"], data,
            timeout=self.transfer_timeout)
        if code != 0:
            raise BackendError(f"The results could not be written to {job.workdir}: "
                               f"{err.strip()[-300:]}")

    # ---- bookkeeping for owners' sources of truth ----------------------------------------------
    def held_start_ids(self) -> set[str]:
        """Start ids of every machine a job not yet ended holds (the job service's answer to
        the orphan sweep)."""
        held = set()
        for name in os.listdir(self._dir):
            if name.endswith(".json"):
                rec = self._load(name[:-5])
                if rec is not None and rec.phase != "ended":
                    held |= {m.start_id for m in rec.machines}
        return held

    async def sweep(self) -> list[int]:
        """Give back this hub's job machines that no live job of this service holds; returns
        their VM ids."""
        from machines.reconcile import References, reconcile

        async def held() -> References:
            return References(start_ids=self.held_start_ids())

        provider = self.machines
        orphans = await reconcile(provider.client, provider.hub_id,
                                  {OwnerKind.JOB_WORKER.value: held})
        return [vm.id for vm in orphans]

    async def _sweep_forever(self) -> None:
        while True:
            try:
                gone = await self.sweep()
                if gone:
                    self.log.warning("Gave back job machines no job holds: VMs %s", gone)
            except Exception as e:  # the cloud may be down: try again next round
                self.log.warning("The sweep for orphaned job machines failed: %s", e)
            await asyncio.sleep(self.sweep_interval)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._drivers.values()):
            task.cancel()
        for hosts in self._hosts.values():
            for host in hosts:
                await host.close()
        if self._machine_provider is not None:
            await self._machine_provider.close()

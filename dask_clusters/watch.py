"""Watching the batch system for a cluster's jobs, and telling the user what happened to them.

dask-jobqueue never asks the batch system about its jobs: a job that is held, dies before its
worker starts, or is killed at its wall time while queued stays counted as a worker forever, and
adaptive scaling never replaces it. Every ``poll_interval`` the watch asks once for all of a
cluster's jobs (one ``squeue`` / ``condor_q``, through the jobs service's backends,
:mod:`jobforms.backends`) and:

* a **held** job is reported with the batch system's reason, removed and replaced;
* a job that **ended** while dask still counts it (its worker never arrived, or died with it)
  is reported with the reason (``TIMEOUT``, an exit code, the last line of its error file) and
  replaced;
* a worker that **vanished** from the scheduler (distributed closes its job) is reported with
  what the batch system says about the job: killed at its wall time, node failure, retired
  early on purpose (``--lifetime``);
* a job that **runs** for ``worker_connect_timeout`` without its worker reaching the scheduler
  is reported once: the worker machines probably cannot reach the scheduler's address.

Jobs in a row that fail without a worker ever arriving (``max_failed_jobs``) make the cluster
give up with one sentence (:meth:`ClusterManager.fail`) instead of submitting forever. The watch
also closes a cluster idle for ``idle_timeout`` seconds, and for the local backend keeps the
worker processes' ids in the ledger for the reaper.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from pathlib import Path

from distributed.diagnostics.plugin import SchedulerPlugin

log = logging.getLogger(__name__)


class _Arrivals(SchedulerPlugin):
    """Sees workers arrive and tasks move, inside the scheduler (which runs in this process)."""

    name = "nebulahub-watch"

    def __init__(self, watch: "JobWatch"):
        self.watch = watch

    def add_worker(self, scheduler, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        if ws is not None:
            self.watch.worker_arrived(str(ws.name))

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        self.watch.last_activity = time.monotonic()


class JobWatch:
    """One per cluster; runs on the cluster's event loop."""

    def __init__(self, manager):
        self.manager = manager
        self.backend = manager.batch_backend()
        self.queued = 0
        self.last_activity = time.monotonic()
        self.failures = 0
        self.lost: dict[str, str] = {}          # job id -> worker name, reason not known yet
        self._handled: set[str] = set()         # jobs the watch itself removed
        self._arrived: set[str] = set()         # jobs whose worker reached the scheduler
        self._running_since: dict[str, float] = {}
        self._warned: set[str] = set()
        self._unanswered = False
        self._stopped = False
        self._wake: asyncio.Event | None = None

    # ---- life ------------------------------------------------------------------------------
    def start(self) -> None:
        self.manager.cluster.loop.add_callback(self._run)

    def stop(self) -> None:
        self._stopped = True
        self.wake()

    def wake(self) -> None:
        """Look again soon (after a scale request)."""
        if self._wake is not None:
            self.manager.cluster.loop.add_callback(self._wake.set)

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        self.manager.cluster.scheduler.add_plugin(_Arrivals(self), idempotent=True)
        while not self._stopped:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - a bug here must not stop the watching
                log.exception("Dask cluster watch failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval())
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def _interval(self) -> float:
        interval = self.manager.settings.poll_interval
        # while jobs wait to start, look more often: the user watches the progress
        return min(interval, 2.0) if self.queued or self._running_since.keys() - self._arrived \
            else interval

    # ---- what the scheduler tells ------------------------------------------------------------
    def worker_arrived(self, name: str) -> None:
        ledger = self.manager.ledger
        for job_id, job_name in (ledger.jobs.items() if ledger is not None else ()):
            if job_name == name:
                self._arrived.add(job_id)
        self.failures = 0
        self.last_activity = time.monotonic()

    def note_lost(self, job_id: str, name: str) -> None:
        """distributed closed this job because its worker left (the reason is the batch
        system's to tell)."""
        if job_id not in self._handled:
            self.lost[job_id] = name

    def submit_failed(self, name: str, error: BaseException) -> None:
        """The batch system refused a worker's job (dask-jobqueue raises with its output)."""
        said = str(error).strip()
        m = re.search(r"stderr:\s*(.+?)\s*$", said, re.S)
        said = (m.group(1) if m else said).strip().splitlines()
        self.manager.event(f"{self.manager.label} refused the job of worker {name}: "
                           f"{said[-1][:300] if said else type(error).__name__}.", problem=True)
        self._count_failure()

    def diagnosis(self) -> str:
        """The latest problem sentence, for a start that timed out."""
        for event in reversed(self.manager.events):
            if event.problem:
                return event.text
        return ""

    # ---- one look ------------------------------------------------------------------------------
    async def tick(self) -> None:
        m = self.manager
        cluster = m.cluster
        if m.closed_because is not None or cluster is None:
            return
        if self._idle_too_long():
            seconds = m.settings.idle_timeout
            idle = f"{seconds / 60:g} minutes" if seconds >= 120 else f"{seconds:g} seconds"
            threading.Thread(target=m.close, daemon=True,
                             args=(f"nothing was computed for {idle}",)).start()
            self._stopped = True
            return
        if self.backend is None:  # local processes: the reaper needs their ids
            m.ledger.set_pids([ws.pid for ws in cluster.scheduler.workers.values() if ws.pid])
            return
        jobs = m.ledger.jobs
        ids = list(dict.fromkeys([*jobs, *self.lost]))
        if not ids:
            self.queued = 0
            return
        from jobforms.backends import BackendError, BatchState

        try:
            statuses = await self.backend.status(ids)
        except BackendError as e:
            if not self._unanswered:
                m.event(f"{m.label} did not answer about the workers' jobs ({e}); asking again "
                        "later.", problem=True)
            self._unanswered = True
            return
        self._unanswered = False
        queued = 0
        now = time.monotonic()
        current = m.ledger.jobs   # dask may have removed some on purpose while we asked
        for job_id, status in statuses.items():
            state = status.state
            if job_id in self.lost:
                if state.is_final or state is BatchState.HELD:
                    self._report_lost(job_id, self.lost.pop(job_id), status)
                continue
            if job_id not in current:
                continue
            name = jobs.get(job_id, "?")
            if state is BatchState.QUEUED:
                queued += 1
            elif state is BatchState.RUNNING:
                self._running_since.setdefault(job_id, now)
                self._check_arrival(job_id, name, now)
            elif state is BatchState.HELD:
                await self._replace(job_id, name, f"Worker job {job_id} is held by {m.label}: "
                                    f"{_reason(status)} It was removed and another one "
                                    "requested.", counts=job_id not in self._arrived)
            elif state.is_final:
                sentence, problem, counts = self._ended(job_id, name, status, lost=False)
                await self._replace(job_id, name, sentence, counts=counts, problem=problem)
        self.queued = queued
        if set(cluster.worker_spec) - set(cluster.workers) and m.failure is None:
            await cluster._correct_state()   # resubmit what was removed above

    def _idle_too_long(self) -> bool:
        timeout = self.manager.settings.idle_timeout
        if not timeout:
            return False
        scheduler = self.manager.cluster.scheduler
        busy = any(ws.processing for ws in scheduler.workers.values())
        if busy:
            self.last_activity = time.monotonic()
        return time.monotonic() - self.last_activity > timeout

    def _check_arrival(self, job_id: str, name: str, now: float) -> None:
        m = self.manager
        if job_id in self._arrived or job_id in self._warned:
            return
        if now - self._running_since[job_id] > m.settings.worker_connect_timeout:
            self._warned.add(job_id)
            m.event(f"Worker job {job_id} has run for {m.settings.worker_connect_timeout:.0f} s "
                    f"but its worker has not reached the scheduler at {m.scheduler_address}: "
                    "the worker machines probably cannot reach this address (your admin sets "
                    "it with DaskClusters.scheduler_interface or scheduler_host)."
                    f"{self._last_words(job_id)}", problem=True)

    async def _replace(self, job_id: str, name: str, sentence: str, counts: bool,
                       problem: bool = True) -> None:
        """Remove the job (cancel it, forget it) so the cluster submits a new one for the name."""
        m, cluster = self.manager, self.manager.cluster
        self._handled.add(job_id)
        job = cluster.workers.get(name)
        if job is not None and getattr(job, "job_id", None) == job_id \
                and name in cluster.worker_spec:   # else dask is closing it already
            del cluster.workers[name]
            await job.close()
        m.ledger.remove_job(job_id)
        self._running_since.pop(job_id, None)
        m.event(sentence, problem=problem)
        if counts:
            self._count_failure()

    def _report_lost(self, job_id: str, name: str, status) -> None:
        sentence, problem, counts = self._ended(job_id, name, status, lost=True)
        self.manager.event(sentence, problem=problem)
        if counts:
            self._count_failure()

    def _ended(self, job_id: str, name: str, status, lost: bool) -> tuple[str, bool, bool]:
        """(sentence, a problem?, counts as a failed job?) for a worker job that ended."""
        from jobforms.backends import BatchState

        m, arrived = self.manager, job_id in self._arrived
        who = f"Worker {name} (job {job_id})"
        if status.state is BatchState.COMPLETED and arrived:
            return (f"{who} retired before its wall time ({m.settings.worker_walltime}); a new job "
                    "was requested.", False, False)
        if status.state is BatchState.CANCELLED:
            how = "stopped unexpectedly; its job was removed" if lost else \
                f"was cancelled outside this server ({_reason(status)})"
            return f"{who} {how}; a new job was requested.", True, not arrived
        held = status.state is BatchState.HELD
        unreached = ""
        if not arrived and status.state in (BatchState.COMPLETED, BatchState.FAILED):
            unreached = (f" Its worker never reached the scheduler at {m.scheduler_address}: the "
                         "worker machines may not reach this address (your admin sets it with "
                         "DaskClusters.scheduler_interface or scheduler_host).")
        return (f"{who} {'was held' if held else 'stopped'}: {_reason(status)}"
                f"{self._last_words(job_id)}{unreached} A new job was requested.", True,
                not arrived or status.state is BatchState.FAILED)

    def _count_failure(self) -> None:
        m = self.manager
        self.failures += 1
        if self.failures >= m.settings.max_failed_jobs:
            n = self.failures
            m.fail(f"{n} worker job{'s' if n != 1 else ''} in a row failed before their worker "
                   f"could work; the cluster stopped trying. The last one: {self.diagnosis()}")

    def _last_words(self, job_id: str) -> str:
        """`` The worker said: ...`` from the last line of the job's error file, if any."""
        path = self.manager.job_log(job_id)
        if not path:
            return ""
        try:
            with open(Path(path), "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 4096))
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()
                         if ln.strip()]
        except OSError:
            return ""
        # the worker's last complaint, not its last log line ("End worker")
        for line in reversed(lines):
            if re.search(r"Error|Exception|Timed out|failed|Traceback|No such|denied", line):
                return f" The worker said: \u201c{line[:300]}\u201d."
        return ""


def _reason(status) -> str:
    text = re.sub(r"^held:\s*", "", status.reason.strip(), flags=re.I).rstrip(".")
    return text + "." if text else "no reason given."

"""The cluster-manager seam: one admin-configured Dask cluster per request, whatever runs it.

Modelled on dask-jobqueue's ``core.py``: the shared machinery lives here once (limits, the
scheduler's address, TLS, the ledger and its reaper, the batch-system watch, adaptive scaling
with a cool-down, progress, closing); each backend module says only what differs:

* :mod:`dask_clusters.local` — distributed's ``LocalCluster`` (processes in the user's server);
* :mod:`dask_clusters.slurm` — dask-jobqueue's ``SLURMCluster`` (one SLURM job per worker);
* :mod:`dask_clusters.htcondor` — dask-jobqueue's ``HTCondorCluster``.

Contract of :class:`ClusterManager` (synchronous; safe from any thread but the cluster's loop):

``start()``
    Check the settings and the scheduler's address (:class:`ConfigProblem` with a sentence),
    start the scheduler in this process with no worker yet, the reaper and the watch.
``adapt(minimum=None, maximum=None)`` / ``scale(n)``
    Grow and shrink with the load between the bounds (the admin's, capped by what the user's
    limits leave), or hold ``n`` workers. Beyond the limits: :class:`LimitExceeded`.
``wait_for_workers(n, timeout, progress=None)``
    Block until ``n`` workers are connected, calling ``progress(Progress)`` as they arrive
    ("2 of 4 workers ready"); :class:`ClusterUnavailable` when the cluster failed or the time
    is up, with the reason.
``client``, ``dashboard_link``, ``status()``, ``events``
    A distributed ``Client`` (TLS when on), the dashboard through the user's server, what the
    cluster is doing, and the sentences of what happened to its workers.
``close(reason)``
    Remove every job and worker, then the ledger; idempotent. Also on idle (``idle_timeout``)
    and at interpreter exit; the reaper does it if the owner is killed.

A backend module sets :attr:`name`, :attr:`label` and :attr:`cancel_command` and implements
:meth:`make_cluster` (and :meth:`batch_backend` when it has batch jobs to watch).
"""
from __future__ import annotations

import atexit
import getpass
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Optional

from .address import SchedulerAddress, scheduler_address
from .config import DaskClusters
from .errors import ClusterUnavailable, ConfigProblem, LimitExceeded
from .ledger import Ledger, state_dir
from .limits import UserLimits

log = logging.getLogger(__name__)
_LIVE: "weakref.WeakSet[ClusterManager]" = weakref.WeakSet()


@dataclass(frozen=True)
class Event:
    """Something that happened to a cluster's workers, in a sentence."""

    when: float
    text: str
    problem: bool = False


@dataclass(frozen=True)
class Progress:
    """Workers connected (``ready``) out of those wanted, and jobs still waiting in the queue."""

    ready: int
    wanted: int
    queued: int = 0
    where: str = ""

    @property
    def sentence(self) -> str:
        text = f"{self.ready} of {self.wanted} worker{'s' if self.wanted != 1 else ''} ready"
        if self.queued:
            text += (f" ({self.queued} job{'s' if self.queued != 1 else ''} waiting in the "
                     f"{self.where} queue)")
        return text


@dataclass
class Status:
    """What a cluster is doing now."""

    backend: str
    ready: int
    requested: int
    adaptive: Optional[tuple[int, int]]
    dashboard_link: str
    scheduler: str
    failure: Optional[str] = None
    closed: Optional[str] = None
    events: list[Event] = field(default_factory=list)


class JobHooks:
    """What a worker job tells its manager: submitted (job id known) and closed."""

    def __init__(self, manager: "ClusterManager"):
        self._manager = weakref.ref(manager)

    def submitted(self, job_id: str, name: str) -> None:
        manager = self._manager()
        if manager is not None and manager.ledger is not None:
            manager.ledger.add_job(job_id, name)

    def refused(self, name: str, error: BaseException) -> None:
        manager = self._manager()
        if manager is not None and manager.watch is not None:
            manager.watch.submit_failed(name, error)

    def closed(self, job_id: str, name: str, deliberate: bool) -> None:
        manager = self._manager()
        if manager is None:
            return
        if manager.ledger is not None:
            manager.ledger.remove_job(job_id)
        if not deliberate and manager.watch is not None:
            manager.watch.note_lost(job_id, name)


class LedgerJob:
    """Mixin for dask-jobqueue's Job classes: records each job in the ledger the moment its id
    is known (so the reaper can remove it) and tells the watch about jobs distributed closed
    because their worker vanished (so the batch system's reason can be reported)."""

    def __init__(self, *args, hooks: JobHooks | None = None, **kwargs):
        self._hooks = hooks
        super().__init__(*args, **kwargs)

    async def start(self):
        try:
            await super().start()
        except Exception as e:
            if self._hooks is not None:
                self._hooks.refused(self.name, e)
            raise
        finally:
            if self.job_id and self._hooks is not None:
                self._hooks.submitted(self.job_id, self.name)

    async def close(self):
        ref = getattr(self, "_cluster", None)
        cluster = ref() if ref is not None else None
        # scale-down and close remove the name from the spec first; a worker distributed saw
        # disappear keeps its name there (it is to be replaced)
        deliberate = cluster is None or cluster.status.name in ("closing", "closed") \
            or self.name not in cluster.worker_spec
        await super().close()
        if self.job_id and self._hooks is not None:
            self._hooks.closed(self.job_id, self.name, deliberate)


class ClusterManager:
    """The shared machinery; see the module docstring for the contract."""

    name: ClassVar[str] = "base"
    label: ClassVar[str] = "?"          # the batch system's name in sentences
    cancel_command: ClassVar[tuple[str, ...]] = ()
    runs_jobs: ClassVar[bool] = True

    def __init__(self, settings: DaskClusters):
        self.settings = settings
        self.id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.limits = UserLimits.of(settings)
        self.events: deque[Event] = deque(maxlen=200)
        self.cluster = None
        self.ledger: Ledger | None = None
        self.watch = None
        self.address: SchedulerAddress | None = None
        self.failure: str | None = None
        self.closed_because: str | None = None
        self.adaptive_bounds: tuple[int, int] | None = None
        self._client = None
        self.client_is_default = False   # dask's .compute() in this process uses the cluster
        self._reaper: subprocess.Popen | None = None
        self._lock = threading.RLock()

    # ---- what a backend module says ------------------------------------------------------------
    def make_cluster(self, common: dict):
        """The distributed cluster object, with no worker yet. ``common`` holds what every
        backend passes: ``security``, ``scheduler_options``, ``death_timeout``, ``hooks``,
        ``job_name``, ``lifetime`` (seconds or None)."""
        raise NotImplementedError

    def batch_backend(self):
        """A :class:`jobforms.backends.Backend` whose ``status()`` the watch polls, or None."""
        return None

    def job_log(self, job_id: str) -> str | None:
        """Path of the job's error file, for the last line of a failed worker."""
        return None

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "ClusterManager":
        if self.runs_jobs and os.geteuid() == 0:
            raise ConfigProblem("NebulaHub never submits Dask workers as root; start the "
                                "cluster from a user's server.")
        self.settings.check()
        self.address = scheduler_address(self.settings, local=not self.runs_jobs)
        from distributed.security import Security

        security = Security.temporary() if self.settings.tls else None
        self.ledger = Ledger(self.id, self.name, list(self.cancel_command))
        try:
            self._start_reaper()
            lifetime = None
            if self.settings.worker_lifetime_margin:
                lifetime = self.settings.walltime_seconds - self.settings.worker_lifetime_margin
            common = dict(security=security, scheduler_options=self.address.scheduler_options(),
                          death_timeout=self.settings.worker_death_timeout,
                          hooks=JobHooks(self), job_name=f"nebulahub-dask-{self.id[-6:]}",
                          lifetime=lifetime, tls_dir=str(self._tls_dir()))
            self.cluster = self.make_cluster(common)
            from .watch import JobWatch

            self.watch = JobWatch(self)
            self.watch.start()
        except BaseException:
            self.close("it could not start")
            raise
        _LIVE.add(self)
        self.event(f"Dask scheduler started at {self.scheduler_address} ({self.label}).")
        return self

    def _tls_dir(self):
        path = state_dir() / "tls"
        path.mkdir(exist_ok=True, mode=0o700)
        return path

    def _start_reaper(self) -> None:
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "dask_clusters.reaper", str(self.ledger.path),
             str(os.getpid())], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
            cwd="/", env=dict(os.environ, PYTHONPATH=_package_root(os.environ)))
        line = self._reaper.stdout.readline()
        self._reaper.stdout.close()
        if line.strip() != b"watching":
            raise ClusterUnavailable("The helper that removes your workers' jobs if your "
                                     "server dies did not start; no cluster was started.")

    def close(self, reason: str = "you closed it") -> None:
        """Remove every worker and job, stop the watch and the reaper; idempotent."""
        with self._lock:
            if self.closed_because is not None:
                return
            self.closed_because = reason
        if self.watch is not None:
            self.watch.stop()
        if self._client is not None:
            try:
                self._client.close(timeout=10)
            except Exception:  # noqa: BLE001 - closing what may already be broken
                log.debug("client close failed", exc_info=True)
        if self.cluster is not None:
            try:
                self.cluster.close(timeout=60)
            except Exception:  # noqa: BLE001
                log.warning("closing the Dask cluster failed", exc_info=True)
        if self.ledger is not None:
            leftover = self.ledger.jobs
            if leftover and self.cancel_command:  # jobs dask-jobqueue could not cancel
                for job_id in leftover:
                    subprocess.run([*self.cancel_command, job_id], capture_output=True,
                                   timeout=60, check=False)
            self.ledger.remove()
        if self._reaper is not None and self._reaper.poll() is None:
            self._reaper.terminate()
            try:
                self._reaper.wait(10)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
        _LIVE.discard(self)
        self.event(f"The cluster was closed: {reason}.")

    # ---- scaling -------------------------------------------------------------------------------
    def scale(self, n: int) -> None:
        """Hold ``n`` workers (no adaptive scaling)."""
        if not isinstance(n, int) or n < 0:
            raise LimitExceeded(f"The number of workers must be a whole number of at least 0, "
                                f"not {n!r}.")
        self._require_running()
        self.limits.check(n, self.id)
        self.ledger.set_claim(**vars(self.limits.usage(n)))
        if self.adaptive_bounds is not None:
            self._stop_adaptive()
        self.cluster.scale(n)
        self.watch.wake()

    def adapt(self, minimum: int | None = None, maximum: int | None = None) -> tuple[int, int]:
        """Scale between ``minimum`` and ``maximum`` workers (default: the admin's bounds);
        the maximum is lowered to what the user's limits leave. Returns the bounds used."""
        self._require_running()
        s = self.settings
        low = s.adapt_minimum if minimum is None else minimum
        high = s.adapt_maximum if maximum is None else maximum
        if not all(isinstance(v, int) and v >= 0 for v in (low, high)) or low > high:
            raise LimitExceeded(f"Adaptive bounds must be whole numbers with minimum <= maximum, "
                                f"not {low!r}..{high!r}.")
        if maximum is not None:
            self.limits.check(high, self.id)
        room = self.limits.most_workers(self.id)
        if high > room:
            self.event(f"At most {room} workers: your limit is {self.limits.total.describe()} "
                       "over all your clusters.")
            high = room
        if low > high:
            self.limits.check(low, self.id)
        self.ledger.set_claim(**vars(self.limits.usage(high)))
        from .adaptive import CooledAdaptive

        self.cluster.adapt(Adaptive=CooledAdaptive, minimum=low, maximum=high,
                           interval=s.adapt_interval, wait_count=s.adapt_wait_count,
                           cooldown=s.adapt_cooldown)
        self.adaptive_bounds = (low, high)
        self.watch.wake()
        return low, high

    def _stop_adaptive(self) -> None:
        adaptive = getattr(self.cluster, "_adaptive", None)
        if adaptive is not None:
            adaptive.stop(reason="fixed size asked")
        self.adaptive_bounds = None

    def _require_running(self) -> None:
        if self.cluster is None:
            raise ClusterUnavailable("The cluster was not started.")
        if self.closed_because is not None:
            raise ClusterUnavailable(f"The cluster was closed ({self.closed_because}).")
        if self.failure is not None:
            raise ClusterUnavailable(self.failure)

    def fail(self, sentence: str) -> None:
        """Give up: stop replacing workers, remove the jobs, keep the sentence for the user."""
        if self.failure is not None:
            return
        self.failure = sentence
        self.event(sentence, problem=True)
        if self.cluster is not None:
            self._stop_adaptive()
            self.cluster.loop.add_callback(self._scale_to_zero)

    async def _scale_to_zero(self) -> None:
        self.cluster.worker_spec.clear()
        await self.cluster._correct_state()

    # ---- using it ------------------------------------------------------------------------------
    @property
    def client(self):
        """A ``distributed.Client`` of this cluster (made once)."""
        with self._lock:
            self._require_running()
            if self._client is None:
                from distributed import Client

                self._client = Client(self.cluster, security=self.cluster.security,
                                      set_as_default=self.client_is_default)
            return self._client

    @property
    def scheduler_address(self) -> str:
        """The address workers are given (the contact address when the admin set one)."""
        if self.cluster is None:
            return ""
        scheduler = getattr(self.cluster, "scheduler", None)
        return getattr(scheduler, "contact_address", None) or self.cluster.scheduler_address

    @property
    def dashboard_port(self) -> int | None:
        server = getattr(getattr(self.cluster, "scheduler", None), "http_server", None)
        try:
            return server.port if server is not None else None
        except AttributeError:
            return None

    @property
    def dashboard_link(self) -> str:
        """The dashboard through the user's server (jupyter-server-proxy behind its login);
        outside a hub server, the loopback address."""
        port = self.dashboard_port
        if port is None:
            return ""
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "")
        if prefix:
            return f"{prefix.rstrip('/')}/proxy/{port}/status"
        return f"http://127.0.0.1:{port}/status"

    def ready_workers(self) -> int:
        scheduler = getattr(self.cluster, "scheduler", None)
        return len(scheduler.workers) if scheduler is not None else 0

    def wanted_workers(self) -> int:
        return len(self.cluster.worker_spec) if self.cluster is not None else 0

    def progress(self) -> Progress:
        queued = self.watch.queued if self.watch is not None else 0
        return Progress(self.ready_workers(), self.wanted_workers(), queued, self.label)

    def wait_for_workers(self, n: int = 1, timeout: float | None = None,
                         progress: Callable[[Progress], None] | None = None) -> Progress:
        """Block until ``n`` workers are connected (see the contract)."""
        timeout = self.settings.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last = None
        while True:
            self._require_running()
            now = self.progress()
            if now.wanted < n:  # adaptive scaling has not asked for them yet
                now = Progress(now.ready, n, now.queued, now.where)
            if progress is not None and now != last:
                progress(now)
                last = now
            if now.ready >= n:
                return now
            if time.monotonic() > deadline:
                waiting = f" ({now.sentence})" if now.wanted else ""
                raise ClusterUnavailable(
                    f"No Dask worker was ready within {timeout:.0f} s{waiting}. "
                    + (self.watch.diagnosis() if self.watch is not None else ""))
            time.sleep(0.2)

    def status(self) -> Status:
        return Status(self.name, self.ready_workers(), self.wanted_workers(),
                      self.adaptive_bounds, self.dashboard_link, self.scheduler_address,
                      self.failure, self.closed_because, list(self.events))

    def event(self, text: str, problem: bool = False) -> None:
        self.events.append(Event(time.time(), text, problem))
        (log.warning if problem else log.info)("Dask cluster %s: %s", self.id, text)

    @property
    def user(self) -> str:
        return getpass.getuser()


def _package_root(env) -> str:
    """PYTHONPATH for the reaper: wherever this package is imported from, first."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rest = env.get("PYTHONPATH", "")
    return root + (os.pathsep + rest if rest else "")


@atexit.register
def _close_all() -> None:
    """A server that exits normally closes its clusters (before distributed's own handler)."""
    for manager in list(_LIVE):
        manager.close("its server stopped")

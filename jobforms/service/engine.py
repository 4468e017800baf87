"""The jobs service's engine: submit, watch, cancel, collect; every move through the state machine.

One loop looks at every backend once per ``poll_interval`` (one query for all its live jobs) and
moves jobs through :class:`~jobforms.states.JobHistory`, storing each transition with its time
and reason. Everything a job needs to be watched lives in the database, so a restarted service
picks every live job up again: no job is lost.
"""
from __future__ import annotations

import asyncio
import glob
import logging
import os
import pwd
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

from jobforms.backends import (BACKENDS, account_host, Backend, BackendError, BackendStatus, BatchJob,
                               BatchState, BackendUnavailable, Resources)
from jobforms.loader import load_apps
from jobforms.request import JobRequest, JobRequestError
from jobforms.states import JobHistory, JobState, Transition
from machines.hosts import LocalHost

from .config import JobsService
from .results import UnsafeFile, deliver_local, deliver_remote, host_and_port, open_in
from .store import JobRow, SavedParameters, TransitionRow, job_dict, now, open_store

log = logging.getLogger("nebulahub.jobs")
SHIPPED_APPS = Path(__file__).resolve().parent.parent / "apps"
LIVE = [s.value for s in JobState if not s.is_final]
QUICK_LOOK = 0.1  # seconds between the first looks after a submission (doubling up to poll_interval)


class NotFound(LookupError):
    """No such job of this user (another user's job is "not found" too: nothing leaks)."""


class Refused(ValueError):
    """A request the service will not take; ``errors`` maps fields to sentences."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = errors


class JobEngine:
    """The service's state: apps, backends, the store, and who listens for changes."""

    def __init__(self, config: JobsService):
        self.cfg = config
        self.backends: dict[str, Backend] = {n: self._make_backend(n, dict(s or {}))
                                             for n, s in config.backends.items()}
        limits = {n: b.admin_limits().capped(b.static_limits).as_dict()
                  for n, b in self.backends.items()}
        limits = {n: {k: v for k, v in lim.items() if v is not None} for n, lim in limits.items()}
        self.apps, self.problems = load_apps(config.apps_dir or SHIPPED_APPS, limits)
        for p in self.problems:
            log.error("App not loaded: %s", p)
        self.db, self.Session = open_store(config.db_url)
        self.listeners: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self._loop_task: Optional[asyncio.Task] = None
        self._wake = asyncio.Event()  # a job was just handed over: look at once
        self._quick = QUICK_LOOK  # seconds until the next look while a new job may be starting
        self._tasks: set[asyncio.Task] = set()

    # ---- backends ----------------------------------------------------------------------------
    def _make_backend(self, name: str, settings: dict) -> Backend:
        kind = settings.pop("kind", name)
        cls = BACKENDS.get(kind)
        if cls is None:
            raise ValueError(f"JobsService.backends: {name!r} has an unknown kind {kind!r} "
                             f"(use {', '.join(BACKENDS)})")
        submit_host = settings.pop("submit_host", "")
        if submit_host:
            host = _ssh_host(submit_host, settings.pop("submit_key_file", ""))
        else:
            me = pwd.getpwuid(os.geteuid())
            host = LocalHost(me.pw_name, me.pw_dir, "/usr/bin/python3", allow_root=True)
        if os.geteuid() == 0 and not submit_host and "exec_prefix" not in settings:
            # the service is root: a job's commands run as the job's account
            settings["exec_prefix"] = ["runuser", "-u", "{account}", "--"]
        # the hub's configuration reaches the backend too (c.CloudBackend, the machine layer's
        # c.OpenNebulaProvider / c.MachineAccess); the settings given here come first
        return cls(parent=self.cfg, host=host, **settings)

    # ---- reading -----------------------------------------------------------------------------
    def _job(self, session, user: str, job_id: str) -> JobRow:
        job = session.get(JobRow, job_id)
        if job is None or job.user != user:
            raise NotFound(job_id)
        return job

    async def list_jobs(self, user: str, limit: int = 200) -> list[dict]:
        def q():
            with self.Session() as s:
                rows = (s.query(JobRow).filter(JobRow.user == user)
                        .order_by(JobRow.created_at.desc()).limit(limit).all())
                return [job_dict(r) for r in rows]
        return await asyncio.to_thread(q)

    async def get_job(self, user: str, job_id: str) -> dict:
        def q():
            with self.Session() as s:
                return job_dict(self._job(s, user, job_id), with_history=True)
        return await asyncio.to_thread(q)

    # ---- submitting --------------------------------------------------------------------------
    def account_of(self, user: str) -> str:
        return self.cfg.account_template.format(username=user)

    def home_of(self, user: str) -> str:
        return self.cfg.home_template.format(username=user)

    async def submit(self, user: str, app_id: str, values: dict, *,
                     clone_of: Optional[str] = None) -> dict:
        app = self.apps.get(app_id)
        if app is None:
            raise NotFound(app_id)
        try:
            request = app.validate(values)
        except JobRequestError as e:
            raise Refused(e.errors) from None
        backend_name = request.resources.backend
        if backend_name not in self.backends:
            raise Refused({"backend": f"The backend {backend_name!r} is not offered here."})
        await asyncio.to_thread(self._check_limits, user, request)
        await asyncio.to_thread(self._check_account, user)
        job_id = uuid.uuid4().hex[:12]
        workdir = os.path.join(self.home_of(user), "jobs", f"{app_id}-{job_id}")
        history = JobHistory.start(f"Submitted by {user}.")

        def store():
            with self.Session() as s:
                row = JobRow(id=job_id, user=user, app_id=app_id, app_name=app.name,
                             request=request.model_dump(mode="json"), backend=backend_name,
                             state=history.state.value, reason=history.transitions[-1].reason,
                             account=self.account_of(user), workdir=workdir,
                             destination=request.destination.url or "", results=[],
                             machines=[], clone_of=clone_of)
                row.transitions.append(_row(history.transitions[-1]))
                s.add(row)
                s.merge(SavedParameters(user=user, app_id=app_id, name="last",
                                        values=app.form_values(request), updated_at=now()))
                s.commit()
                return job_dict(row)
        job = await asyncio.to_thread(store)
        self._notify(user, job)
        self._spawn(self._launch(job_id))
        return job

    def _usage(self, user: str) -> dict[str, int]:
        """What the user's live jobs hold now: jobs, cores, cloud VMs."""
        with self.Session() as s:
            live = s.query(JobRow).filter(JobRow.user == user, JobRow.state.in_(LIVE)).all()
        used = {"jobs": len(live), "cores": 0, "vms": 0}
        for j in live:
            res = j.request.get("resources") or {}
            nodes = res.get("nodes", 1)
            used["cores"] += res.get("cores", 1) * nodes
            if getattr(self.backends.get(j.backend), "uses_vms", False):
                used["vms"] += nodes
        return used

    def _limits(self) -> dict[str, int]:
        return {"jobs": self.cfg.max_live_jobs, "cores": self.cfg.max_cores,
                "vms": self.cfg.max_vms}

    async def quota(self, user: str) -> dict:
        """Used and free of the service's own per-user limits, and each backend's own quota
        (an OpenNebula user's quota for cloud backends) where it has one."""
        used = await asyncio.to_thread(self._usage, user)
        out = {"service": {k: {"used": used[k], "limit": most, "free": max(0, most - used[k])}
                           for k, most in self._limits().items()},
               "backends": {}}
        for name, backend in self.backends.items():
            own = getattr(backend, "quota", None)
            if own is not None:
                try:
                    out["backends"][name] = await own(user)
                except BackendError as e:
                    out["backends"][name] = {"error": str(e)}
        return out

    def _check_limits(self, user: str, request: JobRequest) -> None:
        used, most = self._usage(user), self._limits()
        if used["jobs"] >= most["jobs"]:
            raise Refused({"quota": f"You have {used['jobs']} jobs pending or running, the most "
                                    f"allowed at once; wait for one to end or cancel one."})
        res = request.resources
        asked = res.cores * res.nodes
        if used["cores"] + asked > most["cores"]:
            raise Refused({"cores": f"Your running jobs use {used['cores']} cores; this one asks "
                                    f"for {asked} and you may use {most['cores']} at once."})
        if getattr(self.backends.get(res.backend), "uses_vms", False) and \
                used["vms"] + res.nodes > most["vms"]:
            raise Refused({"nodes": f"Your running jobs hold {used['vms']} VMs; this one asks "
                                    f"for {res.nodes} and you may hold {most['vms']} at once."})

    def _check_account(self, user: str) -> None:
        """The user's account and home exist (the first server start makes them)."""
        account, home = self.account_of(user), self.home_of(user)
        try:
            pwd.getpwnam(account)
        except KeyError:
            raise Refused({"account": f"There is no account {account!r} for you on the job "
                                      "machines yet: start your server once, then submit again."}
                          ) from None
        if not os.path.isdir(home):
            raise Refused({"home": f"Your home folder {home} does not exist yet: start your "
                                   "server once, then submit again."})

    async def _launch(self, job_id: str, resumed: bool = False) -> None:
        """Prepare the job's folder, build its command and hand it to its backend. ``resumed``:
        a launch a restart cut short; the backend is asked first whether it has the job."""
        with self.Session() as s:
            job = s.get(JobRow, job_id)
            request = JobRequest.model_validate(job.request)
            user, account, workdir = job.user, job.account, job.workdir
        app = self.apps[request.app_id]
        try:
            files = await asyncio.to_thread(self._resolve_files, app, request, user)
            await _make_workdir(workdir, account)
            argv = app.command(request, workdir=workdir, files=files)
            # what a machine without the service's filesystem needs besides the job's folder
            stage = {str(app.folder): "app"} if getattr(app, "folder", None) else {}
            stage.update({path: f"inputs/{name}/{os.path.basename(path)}"
                          for name, path in files.items()})
            res = request.resources
            batch = BatchJob(job_id=job_id, argv=argv, workdir=workdir,
                             stdout=os.path.join(workdir, "stdout.txt"),
                             stderr=os.path.join(workdir, "stderr.txt"), account=account,
                             env={**self.cfg.job_env, "NEBULAHUB_JOB_ID": job_id},
                             resources=Resources(nodes=res.nodes, cores=res.cores,
                                                 memory_mb=res.memory_mb,
                                                 walltime_s=res.walltime_s),
                             user=user, stage=stage)
            backend = self.backends[job.backend]
            backend_id = None
            if resumed:
                try:
                    backend_id = await backend.find(batch)
                except BackendUnavailable as e:  # submitted or not? ask again later, never guess
                    log.warning("Job %s: its backend cannot be asked now (%s); asking again in "
                                "%.0f s", job_id, e, self.cfg.poll_interval)
                    self._retry_launch(job_id)
                    return
            if backend_id is None:
                backend_id = await backend.submit(batch)
        except (BackendError, JobRequestError, ValueError, OSError, KeyError) as e:
            await self._move(job_id, JobState.FAILED, f"The job could not be submitted: {e}")
            return
        with self.Session() as s:
            row = s.get(JobRow, job_id)
            row.backend_id = backend_id
            cancel = row.cancel_requested
            s.commit()
        log.info("Job %s of %s submitted to %s as %s", job_id, user, job.backend, backend_id)
        self._wake.set()
        if cancel:  # the user cancelled while it was being submitted
            await self.backends[job.backend].cancel(backend_id, account)

    def _resolve_files(self, app, request: JobRequest, user: str) -> dict[str, str]:
        """Each file parameter's real path inside the user's home (no way out)."""
        home = os.path.realpath(self.home_of(user))
        out = {}
        for name, rel in app.file_parameters(request).items():
            real = os.path.realpath(os.path.join(home, rel))
            if not (real == home or real.startswith(home + os.sep)) or not os.path.isfile(real):
                raise ValueError(f"{name}: '{rel}' is not a file in your home.")
            out[name] = real
        return out

    # ---- cancelling --------------------------------------------------------------------------
    async def cancel(self, user: str, job_id: str) -> dict:
        def mark():
            with self.Session() as s:
                row = self._job(s, user, job_id)
                if JobState(row.state).is_final:
                    return row.backend, None, row.account, True
                row.cancel_requested = True
                s.commit()
                return row.backend, row.backend_id, row.account, False
        backend, backend_id, account, final = await asyncio.to_thread(mark)
        if final:
            return await self.get_job(user, job_id)
        if backend_id is None:
            await self._move(job_id, JobState.CANCELLED, "Cancelled by you before it started.")
        else:
            try:
                await self.backends[backend].cancel(backend_id, account)
            except BackendError as e:
                raise Refused({"cancel": f"The job could not be cancelled now: {e}"}) from None
        return await self.get_job(user, job_id)

    # ---- watching ----------------------------------------------------------------------------
    def start(self) -> None:
        """Watch every live job (also those from before a restart), and finish the launches a
        restart cut short: jobs stored but without a backend id (found in their batch system
        and adopted, else submitted now)."""
        if self._loop_task is None:
            self._loop_task = asyncio.ensure_future(self._watch())
            self._spawn(self._resume_launches())

    async def _resume_launches(self) -> None:
        def unlaunched():
            with self.Session() as s:
                return [j.id for j in s.query(JobRow).filter(JobRow.state.in_(LIVE),
                                                             JobRow.backend_id.is_(None))]
        for job_id in await asyncio.to_thread(unlaunched):
            log.info("Job %s was being submitted when the service stopped: resuming", job_id)
            self._spawn(self._launch(job_id, resumed=True))

    def _retry_launch(self, job_id: str) -> None:
        async def later():
            await asyncio.sleep(self.cfg.poll_interval)
            await self._launch(job_id, resumed=True)
        self._spawn(later())

    async def _watch(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # the loop outlives any one failure
                log.exception("Watching jobs failed")
            # right after a submission the next looks come quickly (0.1 s, 0.2 s, ...) so a job
            # its batch system starts at once is seen executing at once; then every poll_interval
            wait = min(self._quick, self.cfg.poll_interval)
            self._quick = min(self._quick * 2, self.cfg.poll_interval)
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass
            if self._wake.is_set():
                self._wake.clear()
                self._quick = QUICK_LOOK

    async def poll_once(self) -> None:
        def live():
            with self.Session() as s:
                return [(j.id, j.backend, j.backend_id, j.state, j.cancel_requested)
                        for j in s.query(JobRow).filter(JobRow.state.in_(LIVE),
                                                        JobRow.backend_id.isnot(None))]
        by_backend = defaultdict(list)
        for row in await asyncio.to_thread(live):
            by_backend[row[1]].append(row)
        for name, rows in by_backend.items():
            backend = self.backends.get(name)
            if backend is None:
                continue
            try:
                statuses = await backend.status([r[2] for r in rows])
            except BackendError as e:
                log.warning("The %s backend cannot be asked now (%s); jobs unchanged", name, e)
                continue
            for job_id, _, backend_id, state, cancel in rows:
                status = statuses.get(backend_id)
                if status is not None:
                    await self._follow(job_id, JobState(state), status, cancel, name)

    async def _follow(self, job_id: str, state: JobState, status: BackendStatus,
                      cancel_requested: bool, backend: str = "") -> None:
        """Move a job after what its batch system says."""
        b = status.state
        if status.phase in ("booting", "bootstrapping", "terminating"):
            await self._advance(job_id, state, JobState(status.phase), status.reason,
                                ran=b is BatchState.RUNNING)
        elif b is BatchState.RUNNING and state in (JobState.PENDING, JobState.BOOTING,
                                                   JobState.BOOTSTRAPPING):
            await self._advance(job_id, state, JobState.EXECUTING, "Running.")
        elif b is BatchState.QUEUED and state is not JobState.PENDING:
            pass
        elif b is BatchState.HELD:
            await self._set_reason(job_id, f"Held by the batch system: {status.reason}")
        elif b is BatchState.COMPLETED:
            if state is not JobState.TERMINATING:  # it ran between two looks
                await self._advance(job_id, state, JobState.EXECUTING, "Running.")
            await self._finish(job_id, status)
        elif b in (BatchState.FAILED, BatchState.CANCELLED) and state in HOLDING_MACHINES and \
                getattr(self.backends.get(backend), "uses_vms", False):
            # its machines were given back on the way (a poll may have missed it): show it
            await self._move(job_id, JobState.TERMINATING, "The machines were given back.")
            await self._follow(job_id, JobState.TERMINATING, status, cancel_requested, backend)
        elif b is BatchState.FAILED:
            await self._move(job_id, JobState.FAILED, status.reason, exit_code=status.exit_code)
        elif b is BatchState.CANCELLED:
            reason = "Cancelled by you." if cancel_requested else \
                f"Cancelled outside the service: {status.reason}"
            await self._move(job_id, JobState.CANCELLED, reason)
        elif b is BatchState.VANISHED:
            await self._move(job_id, JobState.FAILED,
                             f"The batch system lost the job: {status.reason}")

    async def _advance(self, job_id: str, state: JobState, target: JobState,
                       reason: str, ran: bool = True) -> None:
        """Move forward to ``target`` through the states between (a poll may miss a short
        phase); a batch job goes from pending straight to executing; never backwards."""
        order = [JobState.PENDING, JobState.BOOTING, JobState.BOOTSTRAPPING, JobState.EXECUTING,
                 JobState.TERMINATING]
        if state not in order or order.index(target) < order.index(state):
            return
        if state is target:
            await self._set_reason(job_id, reason)
            return
        if state is JobState.PENDING and target is JobState.EXECUTING:
            await self._move(job_id, target, reason)
            return
        steps = order[order.index(state) + 1:order.index(target) + 1]
        if target is JobState.TERMINATING and not ran:  # machines given back unused
            steps = [s for s in steps if s not in (JobState.BOOTSTRAPPING, JobState.EXECUTING)]
        for step in steps:
            await self._move(job_id, step, reason if step is target else _PASSED[step])

    async def _finish(self, job_id: str, status: BackendStatus) -> None:
        await self._move(job_id, JobState.TERMINATING, "The program ended; collecting results.")
        with self.Session() as s:
            job = s.get(JobRow, job_id)
            app = self.apps.get(job.app_id)
            workdir, destination = job.workdir, job.destination
        patterns = app.outputs if app else []
        try:
            results = await asyncio.to_thread(_collect, workdir, patterns)
            if destination:
                await self._deliver(job.user, job.account, workdir, results, destination)
        except Exception as e:
            await self._move(job_id, JobState.FAILED, f"The results could not be delivered: {e}")
            return
        await self._move(job_id, JobState.DONE, "Done.", exit_code=status.exit_code,
                         results=results)

    # ---- moving ------------------------------------------------------------------------------
    async def _move(self, job_id: str, target: JobState, reason: str, **fields: Any) -> None:
        def write():
            with self.Session() as s:
                job = s.get(JobRow, job_id)
                history = JobHistory.restore([_transition(t) for t in job.transitions])
                if history.state is target or history.is_final:
                    return None
                t = history.move(target, reason)
                job.transitions.append(_row(t))
                job.state, job.reason, job.updated_at = target.value, reason, t.at
                for k, v in fields.items():
                    setattr(job, k, v)
                s.commit()
                return job_dict(job)
        job = await asyncio.to_thread(write)
        if job is not None:
            log.info("Job %s: %s (%s)", job_id, target.value, reason)
            self._notify(job["user"], job)

    async def _set_reason(self, job_id: str, reason: str) -> None:
        def write():
            with self.Session() as s:
                job = s.get(JobRow, job_id)
                if job.reason == reason:
                    return None
                job.reason, job.updated_at = reason, now()
                s.commit()
                return job_dict(job)
        job = await asyncio.to_thread(write)
        if job is not None:
            self._notify(job["user"], job)

    # ---- listening ---------------------------------------------------------------------------
    def subscribe(self, user: str) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=1000)
        self.listeners[user].add(q)
        return q

    def unsubscribe(self, user: str, q: asyncio.Queue) -> None:
        self.listeners[user].discard(q)

    def _notify(self, user: str, job: dict) -> None:
        for q in list(self.listeners.get(user, ())):
            if not q.full():
                q.put_nowait(job)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, user: str, account: str, workdir: str, results: list[str],
                       url: str) -> None:
        from machines.netguard import resolve_user_host

        host, port, scheme = host_and_port(url)
        if scheme == "file":
            await deliver_local(workdir, results, url, account_host(account))
            return
        address = await resolve_user_host(host, port, field="destination",
                                          allow=self.cfg.destination_allow,
                                          deny=self.cfg.destination_deny)
        host_key = await self._pinned_key(user, host, port, address) if scheme == "sftp" \
            else None
        await asyncio.to_thread(deliver_remote, workdir, results, url, address,
                                self.cfg.sftp_key_file, host_key)

    async def _pinned_key(self, user: str, host: str, port: int, address: str):
        """The SFTP server's host key: pinned at this user's first delivery there."""
        import asyncssh

        from machines.hostkeys import HostKeyStore, user_scope

        store, scope, key_id = HostKeyStore(self.cfg.host_key_dir), user_scope(user), \
            f"{host}:{port}"
        pinned = store.load(scope).get(key_id)
        if pinned:
            return asyncssh.import_public_key(pinned)
        key = await asyncio.wait_for(asyncssh.get_server_host_key(address, port), 30)
        if key is None:
            raise OSError(f"{host}:{port} offered no SSH host key.")
        store.pin(scope, key_id, key.export_public_key().decode().strip())
        return key

    def _owner_uid(self, account: str) -> Optional[int]:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(account).pw_uid
        except KeyError:
            return -1

    # ---- logs and results --------------------------------------------------------------------
    async def log_tail(self, user: str, job_id: str, stream: str, offset: int) -> dict:
        if stream not in ("stdout", "stderr"):
            raise Refused({"stream": "The log is stdout or stderr."})
        job = await self.get_job(user, job_id)
        with self.Session() as s:
            row = s.get(JobRow, job_id)
            workdir, owner = row.workdir, self._owner_uid(row.account)

        def read():
            try:
                with open_in(workdir, f"{stream}.txt", owner) as f:
                    size = os.fstat(f.fileno()).st_size
                    start = max(0, min(offset, size))
                    f.seek(start)
                    data = f.read(self.cfg.log_tail_bytes)
                    return data.decode(errors="replace"), start + len(data), size
            except UnsafeFile:
                return "", 0, 0
        text, next_offset, size = await asyncio.to_thread(read)
        return {"job": job["id"], "stream": stream, "text": text, "offset": next_offset,
                "size": size, "state": job["state"]}

    async def result_file(self, user: str, job_id: str, rel: str):
        """The result, opened for reading (a binary file object the caller closes)."""
        job = await self.get_job(user, job_id)
        if rel not in job["results"]:
            raise NotFound(rel)
        with self.Session() as s:
            row = s.get(JobRow, job_id)
            workdir, owner = row.workdir, self._owner_uid(row.account)
        try:
            return await asyncio.to_thread(open_in, workdir, rel, owner)
        except UnsafeFile:
            raise NotFound(rel) from None

    # ---- parameter sets ----------------------------------------------------------------------
    async def saved(self, user: str, app_id: str) -> dict[str, dict]:
        def q():
            with self.Session() as s:
                return {p.name: p.values for p in s.query(SavedParameters).filter_by(
                    user=user, app_id=app_id)}
        return await asyncio.to_thread(q)

    async def save(self, user: str, app_id: str, name: str, values: dict) -> None:
        if app_id not in self.apps:
            raise NotFound(app_id)
        if not name or len(name) > 128 or not name.isprintable():
            raise Refused({"name": "Give the set a name of at most 128 printable characters."})

        def q():
            with self.Session() as s:
                s.merge(SavedParameters(user=user, app_id=app_id, name=name, values=values,
                                        updated_at=now()))
                s.commit()
        await asyncio.to_thread(q)

    async def clone(self, user: str, job_id: str) -> dict:
        """The job's values again, and what differs from the app's defaults."""
        with self.Session() as s:
            job = self._job(s, user, job_id)
            app, request = self.apps.get(job.app_id), JobRequest.model_validate(job.request)
        if app is None:
            raise NotFound(job.app_id)
        values = app.form_values(request)
        defaults = {f.name: f.default for f in app.form()}
        changed = {k: {"default": defaults.get(k), "value": v} for k, v in values.items()
                   if defaults.get(k) != v}
        return {"app": app.id, "values": values, "changed": changed, "clone_of": job_id}

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        for t in list(self._tasks):
            t.cancel()
        for backend in self.backends.values():
            close = getattr(backend, "close", None)
            if close is not None:
                await close()
        self.db.dispose()


HOLDING_MACHINES = (JobState.BOOTING, JobState.BOOTSTRAPPING, JobState.EXECUTING)
_PASSED = {JobState.BOOTING: "Machines starting.", JobState.BOOTSTRAPPING: "Machines running; "
           "preparing them.", JobState.EXECUTING: "Running.",
           JobState.TERMINATING: "The program ended; giving the machines back."}


def _row(t: Transition) -> TransitionRow:
    return TransitionRow(source=t.source.value if t.source else None, target=t.target.value,
                         at=t.at, reason=t.reason)


def _transition(r: TransitionRow) -> Transition:
    at = r.at if r.at.tzinfo else r.at.replace(tzinfo=__import__("datetime").timezone.utc)
    return Transition(source=r.source, target=r.target, at=at, reason=r.reason or "-")


async def _make_workdir(workdir: str, account: str) -> None:
    """The job's folder in the user's home, made by the account itself (a link the user put in
    the way leads nowhere the account could not write anyway)."""
    result = await account_host(account).run(["mkdir", "-p", "-m", "700", "--", workdir])
    if result.returncode != 0:
        raise OSError(f"The job's folder {workdir} could not be made: "
                      f"{result.stderr.strip()[-300:]}")


def _collect(workdir: str, patterns: list[str]) -> list[str]:
    """The result files the app's output patterns match (relative to the job's folder)."""
    found = []
    for pattern in patterns or ["*"]:
        for path in sorted(glob.glob(os.path.join(workdir, pattern), recursive=True)):
            if os.path.isfile(path) and not os.path.islink(path):
                rel = os.path.relpath(path, workdir)
                if not rel.startswith("..") and rel not in found:
                    found.append(rel)
    return found


def _ssh_host(spec: str, key_file: str):
    """An SshHost for ``user@host[:port]`` (a submit host), its key pinned hub-wide."""
    import asyncssh

    from machines.hostkeys import HUB_SCOPE, HostKeyStore
    from machines.hosts import SshHost
    from machines.record import JumpHost
    from machines.ssh import SshTarget

    target = JumpHost.parse(spec, "nebulahub")
    keys = [asyncssh.read_private_key(key_file)] if key_file else []
    return SshHost(SshTarget(target.host, target.username, target.port, keys,
                             trust_scope=HUB_SCOPE), {}, HostKeyStore("jobs-host-keys"))

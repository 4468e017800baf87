"""Job results come home: a Jupyter server extension that copies the results the jobs service
keeps into the user's home while their server runs.

Where the user's home is not the folder the jobs service writes into (an OpenNebula VM whose home
is the user's persistent volume, a user's own SSH machine), the service keeps every result in the
job's folder on its side; they are downloadable from the Jobs page at any time. This extension,
loaded by every single-user server that has NebulaHub installed (enabled by
``jupyter-config/nebulahub-results.json``), then brings them to ``~/jobs/<app>-<job>/<path>``, the
place the Jobs page's "Plot results" opens and the place they have when the home *is* the
service's folder (``local`` provider, shared filesystem), where there is nothing to copy:

* at start, every result of every done job the home does not hold yet;
* then each job's results the moment the service says it is done (its event stream), so a result
  finished while the server was stopped arrives at the next start, and one finished while it runs
  arrives seconds later.

A file already in the home is never overwritten (the user may have changed it), and one the user
deleted after it was copied is not copied again (``.nebulahub-copied`` in the job's folder lists
what was). A download goes to a hidden temporary file beside its target and is renamed into place
only when complete. It talks to the service with the server's own token (:mod:`.client`); without
the service (``$NEBULAHUB_SERVICES`` names none) it does nothing.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path
from typing import Optional

from .client import JobsClient, ServiceRefused, ServiceUnavailable, service_url

log = logging.getLogger("nebulahub.results")

MARKER = ".nebulahub-copied"
JOB_ID = re.compile(r"^[0-9a-f]{1,32}$")
APP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
RETRY = (1, 2, 5, 10, 30)  # seconds between attempts to reach the service again


def _relative(path: str) -> Optional[Path]:
    """A result path as a relative path inside the job's folder, or None when it is not one."""
    if not isinstance(path, str) or not path or "\0" in path or path.startswith("/"):
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return Path(*parts)


class ResultsSync:
    """Brings done jobs' results into ``home`` (see the module's text)."""

    def __init__(self, client: JobsClient, home: str):
        self.client = client
        self.home = Path(home)
        self._done: set[str] = set()  # jobs whose results are all home (or refused): not looked at again
        self._lock = asyncio.Lock()

    # ---- one job -------------------------------------------------------------------------------
    def folder(self, job: dict) -> Optional[Path]:
        if not JOB_ID.match(str(job.get("id", ""))) or not APP_ID.match(str(job.get("app", ""))):
            return None
        return self.home / "jobs" / f"{job['app']}-{job['id']}"

    async def bring_home(self, job: dict) -> list[str]:
        """Copy the job's results the home lacks; the paths copied."""
        if job.get("state") != "done" or not job.get("results") or job.get("id") in self._done:
            return []
        folder = self.folder(job)
        if folder is None:
            return []
        async with self._lock:
            copied = await self._copy_missing(job, folder)
        self._done.add(job["id"])
        return copied

    async def _copy_missing(self, job: dict, folder: Path) -> list[str]:
        had = _read_marker(folder)
        copied = []
        for path in job["results"]:
            rel = _relative(path)
            if rel is None or path in had:
                continue
            target = folder / rel
            if os.path.lexists(target):  # written there by the job itself, or by an earlier copy
                continue
            try:
                await self._download(job["id"], path, target)
            except (ServiceUnavailable, ServiceRefused, OSError) as e:
                self._done.discard(job["id"])
                log.warning("Result %s of job %s not copied home: %s", path, job["id"], e)
                raise
            copied.append(path)
        if copied:
            _write_marker(folder, had | set(copied))
            log.info("Copied %d result(s) of job %s into %s", len(copied), job["id"], folder)
        return copied

    async def _download(self, job_id: str, path: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        part = target.with_name(f".{target.name}.part")
        try:
            with open(part, "wb") as out:
                async for chunk in self.client.result(job_id, path):
                    out.write(chunk)
            os.replace(part, target)
        finally:
            if part.exists():
                part.unlink()

    # ---- all jobs ------------------------------------------------------------------------------
    async def catch_up(self) -> int:
        """Every done job's missing results; how many files were copied."""
        total = 0
        for job in await self.client.jobs():
            try:
                total += len(await self.bring_home(job))
            except (ServiceRefused, OSError):
                continue  # this job's results stay downloadable from the page; the others come
        return total

    async def run(self) -> None:
        """Catch up, then follow the service's events; reconnect when the service goes away."""
        attempt = 0
        while True:
            try:
                async for job in self.client.events():
                    if job is None:  # the stream is open: nothing finished meanwhile is missed
                        attempt = 0
                        await self.catch_up()
                    else:
                        try:
                            await self.bring_home(job)
                        except (ServiceRefused, OSError):
                            pass
            except ServiceUnavailable as e:
                log.info("Jobs service not reachable for copying results home: %s", e)
            except asyncio.CancelledError:
                raise
            except Exception:  # never take the user's server down
                log.exception("Copying job results home failed")
            await asyncio.sleep(RETRY[min(attempt, len(RETRY) - 1)])
            attempt += 1


def _read_marker(folder: Path) -> set[str]:
    try:
        return {line for line in (folder / MARKER).read_text().splitlines() if line}
    except OSError:
        return set()


def _write_marker(folder: Path, paths: set[str]) -> None:
    tmp = folder / f"{MARKER}.part"
    tmp.write_text("".join(f"{p}\n" for p in sorted(paths)))
    os.replace(tmp, folder / MARKER)


# ---- the Jupyter server extension ---------------------------------------------------------------
def _jupyter_server_extension_points():
    return [{"module": "jobforms.page.results_sync"}]


def _load_jupyter_server_extension(serverapp) -> None:
    if not service_url() or not os.environ.get("JUPYTERHUB_API_TOKEN"):
        serverapp.log.debug("NebulaHub results: no jobs service for this server")
        return
    sync = ResultsSync(JobsClient.from_environment(), os.path.expanduser("~"))
    serverapp.io_loop.add_callback(_start, serverapp, sync)


async def _start(serverapp, sync: ResultsSync) -> None:
    task = asyncio.ensure_future(sync.run())
    serverapp.log.info("NebulaHub: job results are copied into %s/jobs when they are done", sync.home)
    # kept on the app so it is not collected; cancelled with the loop at shutdown
    serverapp.nebulahub_results_task = task

"""The record of a user's live clusters, in files only the user can read.

Each cluster writes one JSON file, ``~/.nebulahub/dask/clusters/<cluster id>.json`` (folder
0700, file 0600), and keeps it current: who owns it (process id and start time, so a reused pid
is not taken for the owner), the command that removes its batch jobs, the ids of the jobs it
submitted and the worker processes it started, and how many workers it may grow to (its claim
against the user's limits). Two readers use it:

* :mod:`dask_clusters.limits` adds up the claims of the user's other live clusters (a notebook
  and the plotting app each have one);
* :mod:`dask_clusters.reaper`, a small process every cluster starts, removes the jobs and ends
  the processes listed when the owner dies without closing its cluster (killed, crashed).

A file is removed when its cluster closes, or by the reaper after the clean-up.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path

STATE_DIR = "~/.nebulahub/dask"


def state_dir() -> Path:
    """The user's private folder for Dask state (created 0700)."""
    path = Path(os.environ.get("NEBULAHUB_DASK_STATE", STATE_DIR)).expanduser()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def clusters_dir() -> Path:
    path = state_dir() / "clusters"
    path.mkdir(exist_ok=True, mode=0o700)
    return path


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (None: no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def owner_alive(record: dict) -> bool:
    return process_start(record.get("owner_pid", -1)) == record.get("owner_start")


class Ledger:
    """One cluster's file; every change rewrites it atomically under a lock."""

    def __init__(self, cluster_id: str, backend: str, cancel_command: list[str]):
        self.path = clusters_dir() / f"{cluster_id}.json"
        pid = os.getpid()
        self.record = {"cluster_id": cluster_id, "backend": backend, "owner_pid": pid,
                       "owner_start": process_start(pid), "cancel_command": cancel_command,
                       "jobs": {}, "pids": [], "claim": {"workers": 0, "cores": 0, "memory": 0}}
        self._write()

    @contextlib.contextmanager
    def _locked(self):
        with open(clusters_dir() / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write(self) -> None:
        with self._locked():
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
            with os.fdopen(fd, "w") as f:
                json.dump(self.record, f)
            os.replace(tmp, self.path)

    def add_job(self, job_id: str, name: str) -> None:
        self.record["jobs"][job_id] = name
        self._write()

    def remove_job(self, job_id: str) -> None:
        if self.record["jobs"].pop(job_id, None) is not None:
            self._write()

    def set_pids(self, pids: list[int]) -> None:
        if sorted(pids) != sorted(self.record["pids"]):
            self.record["pids"] = sorted(pids)
            self._write()

    def set_claim(self, workers: int, cores: int, memory: int) -> None:
        self.record["claim"] = {"workers": workers, "cores": cores, "memory": memory}
        self._write()

    @property
    def jobs(self) -> dict[str, str]:
        return dict(self.record["jobs"])

    def remove(self) -> None:
        with self._locked(), contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def live_records(skip: str | None = None) -> list[dict]:
    """The records of this user's clusters whose owner still runs (``skip``: a cluster id)."""
    found = []
    for path in clusters_dir().glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("cluster_id") != skip and owner_alive(record):
            found.append(record)
    return found

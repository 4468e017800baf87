"""Removes a cluster's batch jobs when its owner dies without closing it.

Every cluster starts one (``python -m dask_clusters.reaper LEDGER OWNER_PID``, its own session,
as the user): it holds a pidfd of the owner (the user's server, or the kernel), so a reused pid
can never fool it, and waits. When the cluster closes normally its ledger file disappears and
the reaper exits. When the owner dies first (killed with SIGKILL, crashed, its machine's server
stopped), the reaper runs the cancel command (``scancel ID`` / ``condor_rm ID``) for every job
the ledger lists — queued jobs included, which a worker's death timeout can never end — ends the
worker processes listed (SIGTERM, then SIGKILL), removes the ledger and exits. Standard library
only: it must start fast and depend on nothing that can break.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

POLL_SECONDS = 1.0


def clean_up(ledger: str) -> None:
    try:
        with open(ledger) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return
    cancel = record.get("cancel_command") or []
    for job_id in record.get("jobs", {}):
        if cancel:
            try:
                subprocess.run([*cancel, job_id], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
    pids = [p for p in record.get("pids", []) if isinstance(p, int) and p > 1]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        if not alive:
            break
        deadline = time.monotonic() + 3
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [p for p in alive if _exists(p)]
        pids = alive
    try:
        os.unlink(ledger)
    except FileNotFoundError:
        pass


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is gone for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def main(argv: list[str]) -> int:
    ledger, owner = argv[0], int(argv[1])
    try:
        pidfd = os.pidfd_open(owner)
    except ProcessLookupError:
        clean_up(ledger)
        return 0
    if os.getppid() != owner:  # the owner died before we held it: the pid may be another's now
        clean_up(ledger)
        return 0
    print("watching", flush=True)
    sys.stdout.close()
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while True:
        if poller.poll(POLL_SECONDS * 1000):
            clean_up(ledger)
            return 0
        if not os.path.exists(ledger):
            return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the owner's terminal is not ours
    sys.exit(main(sys.argv[1:]))

"""The hub's own machine as a batch system: the embedded default of the demo.

A job runs as a detached process of its account, the leader of a session (and process group)
of its own, from the same shell script SLURM would run (:mod:`.script`). Its control folder
(:attr:`LocalBackend.control_dir`, the backend id) holds what :meth:`~LocalBackend.status`
reads: ``pid``, ``exit`` (its exit code, written when it ends), ``cancelled`` and
``timed_out`` (who ended it), ``launcher.log`` (what went wrong before the program started).

The two small programs below are fixed POSIX ``sh`` text run with ``sh -c``; every value
reaches them as a positional parameter ("$1" ...), never as part of their text.
"""
from __future__ import annotations

import asyncio
import re
import time
from typing import Iterable

from traitlets import Float, Unicode

from .base import Backend, BackendStatus, BatchJob, BatchState, Limits
from .errors import BackendError, JobRefused
from .script import shell_script

# Runs as the job's account: makes the control folder, stores the script from stdin, starts
# RUN as a new session (setsid does not fork: a background child is no group leader, so $! is
# the session's pid) and records that pid before returning.
LAUNCH = r"""
run=$1 dir=$2
mkdir -p -- "$dir" || exit 1
if [ -e "$dir/pid" ]; then echo "the job was started already ($dir)" >&2; exit 17; fi
cat >"$dir/job.sh" || exit 1
shift
setsid /bin/sh -c "$run" nebulahub-job "$@" </dev/null >/dev/null 2>"$dir/launcher.log" &
echo $! >"$dir/pid"
echo $!
"""

# The job's session leader: a watchdog for the wall time, the job, then its exit code. At the
# end it signals its whole process group ("kill 0": dash's kill takes no negative pid), so
# nothing the job left running outlives it.
RUN = r"""
dir=$1 workdir=$2 out=$3 err=$4 walltime=$5 grace=$6
watchdog() {
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep "$walltime" & nap=$!
  wait "$nap"
  trap '' TERM
  echo "$walltime" >"$dir/timed_out"
  kill -TERM 0
  sleep "$grace"
  kill -KILL 0
}
watchdog & guard=$!
if cd -- "$workdir"; then
  /bin/sh "$dir/job.sh" >"$out" 2>"$err" </dev/null
  code=$?
else
  code=1
fi
trap '' TERM
kill -TERM 0 2>/dev/null
echo "$code" >"$dir/exit.new" && mv -f -- "$dir/exit.new" "$dir/exit"
"""

# "path:line" for every line of every given file that is a regular file (never a link's target)
READ_CONTROL_FILES = r"""
for f in "$@"; do
  dd if="$f" iflag=nofollow status=none 2>/dev/null |
    while IFS= read -r line || [ -n "$line" ]; do printf '%s:%s\n' "$f" "$line"; done
done
"""

CONTROL_FILES = ("pid", "exit", "cancelled", "timed_out", "launcher.log")


class LocalBackend(Backend):
    """Jobs as local processes of their accounts (one node: this machine).

    There is no queue: a job starts at once, so it is never ``queued``. The wall time is
    enforced (SIGTERM, SIGKILL after :attr:`kill_grace`); cores and memory are what
    :meth:`offers` reports, not enforced (no cgroups). The job runs as the host's account, or,
    with an :attr:`exec_prefix` such as ``['runuser', '-u', '{account}', '--']`` on a root
    host (``LocalHost(..., allow_root=True)``), as the job's account.
    """

    name = "local"
    backend_id_regexp = r"/[^\n\0]*"
    static_limits = Limits(nodes=1)

    control_dir = Unicode("{workdir}/.nebulahub/{job_id}", help="""Where a job's control files
        live ({workdir} and {job_id} replaced); its path is the job's backend id. Must be
        absolute and writable by the job's account.""").tag(config=True)
    kill_grace = Float(5, help="Seconds between SIGTERM and SIGKILL when a job is cancelled or "
                       "runs out of its wall time.").tag(config=True)

    async def submit(self, job: BatchJob) -> str:
        self.check(job)
        folder = self.control_dir.format(workdir=job.workdir.rstrip("/"), job_id=job.job_id)
        if not folder.startswith("/") or "\n" in folder:
            raise JobRefused("workdir", f"The control folder {folder!r} is not an absolute path.")
        await self._call(["sh", "-c", LAUNCH, "nebulahub-launch", RUN, folder, job.workdir,
                          job.stdout, job.stderr, str(job.resources.walltime_s),
                          str(int(self.kill_grace))],
                         input=shell_script(job), account=job.account)
        return folder

    async def find(self, job: BatchJob) -> str | None:
        """The job's control folder, if its launcher recorded a pid there."""
        folder = self.control_dir.format(workdir=job.workdir.rstrip("/"), job_id=job.job_id)
        if not folder.startswith("/") or "\n" in folder:
            return None
        return folder if "pid" in (await self._read([folder]))[folder] else None

    async def status(self, backend_ids: Iterable[str]) -> dict[str, BackendStatus]:
        folders = [self._checked_id(i) for i in dict.fromkeys(backend_ids)]
        if not folders:
            return {}
        files = await self._read(folders)
        pids = {f: files[f]["pid"] for f in folders
                if "exit" not in files[f] and files[f].get("pid", "").isdigit()}
        alive = await self._alive(set(pids.values()))
        ended = [f for f, pid in pids.items() if pid not in alive]
        if ended:  # it may have written its exit code since the first look
            files.update(await self._read(ended))
        return {f: self._status_of(files[f], files[f].get("pid") in alive) for f in folders}

    async def cancel(self, backend_id: str, account: str | None = None) -> None:
        folder = self._checked_id(backend_id)
        found = (await self._read([folder]))[folder]
        pid = found.get("pid", "")
        if "exit" in found or not pid.isdigit() or pid not in await self._alive({pid}):
            return  # ended or never started: nothing to end
        await self._call(["sh", "-c", 'echo cancelled >"$1/cancelled"', "nebulahub-cancel",
                          folder], account=account)
        await self._call(["kill", "-TERM", "--", f"-{pid}"], account=account, check=False)
        deadline = time.monotonic() + self.kill_grace
        while await self._session(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        left = await self._session(pid)
        if left:  # what ignored SIGTERM, in the group or elsewhere in the session
            await self._call(["kill", "-KILL", "--", f"-{pid}", *left], account=account,
                             check=False)

    async def offers(self) -> Limits:
        result = await self._call(["getconf", "-a"])
        conf = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", result.stdout, re.M))
        cores = int(conf.get("_NPROCESSORS_ONLN", 0)) or None
        pages, size = int(conf.get("_PHYS_PAGES", 0)), int(conf.get("PAGESIZE", 0))
        memory = pages * size // 2**20 or None
        return (await super().offers()).capped(Limits(cores=cores, memory_mb=memory))

    # ---- reading the control files --------------------------------------------------------
    async def _read(self, folders: list[str]) -> dict[str, dict[str, str]]:
        """Every control file of every folder in one ``grep`` (missing ones are skipped)."""
        paths = {f"{folder}/{name}": (folder, name) for folder in folders
                 for name in CONTROL_FILES}
        # read without following a link: the folder is the job account's, the reader may be
        # root, and a launcher.log linked to another file would reach the user in a reason
        result = await self._call(["sh", "-c", READ_CONTROL_FILES, "nebulahub-read", *paths],
                                  check=False)
        if result.returncode not in (0, 1, 2):
            raise BackendError(f"Reading the jobs' control files failed: {result.stderr[-300:]}")
        found: dict[str, dict[str, str]] = {folder: {} for folder in folders}
        for line in result.stdout.splitlines():
            path, sep, text = line.partition(":")
            while sep and path not in paths:   # a folder name with ':' in it
                more, sep, text = text.partition(":")
                path += ":" + more
            if path in paths:
                folder, name = paths[path]
                found[folder][name] = (found[folder].get(name, "") + "\n" + text).strip()
        return found

    async def _alive(self, pids: set[str]) -> set[str]:
        """Which of these session leaders still run (a zombie does not)."""
        if not pids:
            return set()
        result = await self._call(["ps", "-o", "pid=,sid=,stat=", "-p", ",".join(sorted(pids))],
                                  check=False)
        alive = set()
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == parts[1] and not parts[2].startswith("Z"):
                alive.add(parts[0])
        return alive

    async def _session(self, sid: str) -> list[str]:
        """Live processes of the job's session."""
        result = await self._call(["ps", "-o", "pid=,stat=", "--sid", sid], check=False)
        return [p[0] for p in (line.split() for line in result.stdout.splitlines())
                if len(p) == 2 and not p[1].startswith("Z")]

    @staticmethod
    def _status_of(files: dict[str, str], alive: bool) -> BackendStatus:
        log = files.get("launcher.log", "")
        note = f" The launcher said: {log[-300:]}" if log else ""
        if "exit" in files:
            code = int(files["exit"]) if files["exit"].isdigit() else None
            if code == 0:
                return BackendStatus(BatchState.COMPLETED, "The program ended with exit code 0.",
                                     0, "exit 0")
            if "timed_out" in files:
                return BackendStatus(BatchState.FAILED, "NebulaHub stopped the job at its wall "
                                     f"time of {files['timed_out']} s.", code, "timed out")
            sentence = (f"The program was killed by signal {code - 128}." if code and code > 128
                        else f"The program exited with code {code}.")
            return BackendStatus(BatchState.FAILED, sentence + note, code, f"exit {code}")
        if alive:
            if "cancelled" in files:
                return BackendStatus(BatchState.RUNNING, "Running; being cancelled.", None,
                                     "cancelling")
            return BackendStatus(BatchState.RUNNING, "Running.", None, "running")
        if "timed_out" in files:
            return BackendStatus(BatchState.FAILED, "NebulaHub stopped the job at its wall time "
                                 f"of {files['timed_out']} s.", None, "timed out")
        if "cancelled" in files:
            return BackendStatus(BatchState.CANCELLED, "The job was cancelled.", None,
                                 "cancelled")
        if "pid" not in files:
            return BackendStatus(BatchState.VANISHED, "The job's control folder is gone: "
                                 "nothing on this machine says how it ended.", None, "")
        return BackendStatus(BatchState.VANISHED, "The job's process ended without recording an "
                             "exit code (it was killed outside NebulaHub, or the machine "
                             "restarted)." + note, None, "")

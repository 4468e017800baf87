"""SLURM: ``sbatch --parsable`` with the script on stdin, ``squeue`` for live jobs,
``scontrol show job`` (or ``sacct`` where accounting runs) for ended ones, ``scancel``.

Every option is an argument of sbatch (never an ``#SBATCH`` line in the script), so no value of
the job can become a directive. SLURM keeps time limits in whole minutes: a wall time is rounded
up to the next minute. With ``nodes`` > 1 the program starts once, on the first node of the
allocation (as any batch script); a program that spans nodes starts its own tasks (srun, MPI).
"""
from __future__ import annotations

import re
from typing import Iterable, Optional

from traitlets import Bool, Unicode

from .base import Backend, BackendStatus, BatchJob, BatchState, Limits
from .errors import BackendUnavailable
from .script import shell_script

Q, R, H = BatchState.QUEUED, BatchState.RUNNING, BatchState.HELD

# live states (squeue): state -> (BatchState, sentence)
LIVE = {
    "PENDING": (Q, "waiting in the SLURM queue"),
    "CONFIGURING": (Q, "SLURM is preparing the nodes"),
    "REQUEUED": (Q, "requeued by SLURM"),
    "REQUEUE_FED": (Q, "requeued by SLURM"),
    "RUNNING": (R, "running"),
    "COMPLETING": (R, "ending"),
    "SIGNALING": (R, "being signalled by SLURM"),
    "STAGE_OUT": (R, "staging out"),
    "RESIZING": (R, "being resized"),
    "SUSPENDED": (R, "suspended by SLURM (it continues later)"),
    "STOPPED": (R, "stopped by SLURM (it continues later)"),
    "REQUEUE_HOLD": (H, "held: requeued on hold"),
    "RESV_DEL_HOLD": (H, "held: its reservation was deleted"),
    "SPECIAL_EXIT": (H, "held: it exited with the special exit code and waits for release"),
}
HELD_REASONS = {"JobHeldUser": "held by its owner", "JobHeldAdmin": "held by an administrator"}
# final states (scontrol / sacct): state -> (BatchState, sentence)
FINAL = {
    "COMPLETED": (BatchState.COMPLETED, "the program ended with exit code 0"),
    "FAILED": (BatchState.FAILED, "the program failed"),
    "CANCELLED": (BatchState.CANCELLED, "SLURM cancelled the job (scancel by its owner, NebulaHub "
                                        "or an administrator)"),
    "TIMEOUT": (BatchState.FAILED, "SLURM killed the job at its time limit (TIMEOUT)"),
    "OUT_OF_MEMORY": (BatchState.FAILED, "SLURM killed the job: it used more memory than it asked "
                                         "for (OUT_OF_MEMORY)"),
    "NODE_FAIL": (BatchState.FAILED, "the node running the job failed (NODE_FAIL)"),
    "BOOT_FAIL": (BatchState.FAILED, "the node for the job did not boot (BOOT_FAIL)"),
    "DEADLINE": (BatchState.FAILED, "SLURM ended the job at its deadline (DEADLINE)"),
    "PREEMPTED": (BatchState.FAILED, "SLURM preempted the job for another one (PREEMPTED)"),
    "REVOKED": (BatchState.VANISHED, "the job was revoked: another cluster of the federation "
                                     "runs it (REVOKED)"),
}
FORGOTTEN = ("SLURM has no record of the job any more (it is neither in the queue nor in the "
             "controller's memory, and no accounting record says how it ended)")


def minutes(seconds: int) -> int:
    """SLURM time limits are whole minutes: round up, never cut a job's time short."""
    return max(1, -(-seconds // 60))


def file_pattern(path: str) -> str:
    """sbatch reads ``%j``, ``%u`` ... in output file names; ``%%`` is a literal ``%``."""
    return path.replace("%", "%%")


def exit_code_of(text: str) -> tuple[Optional[int], int]:
    """``"2:0"`` (exit code : signal) as (exit code, signal)."""
    m = re.fullmatch(r"(\d+):(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else (None, 0)


def final_status(state: str, exit_text: str, reason: str = "") -> BackendStatus:
    """A status from an ended job's record (scontrol or sacct)."""
    base = state.split()[0] if state else ""   # sacct says "CANCELLED by 1000"
    code, signal = exit_code_of(exit_text)
    if base in LIVE:
        return live_status(base, reason)
    kind, sentence = FINAL.get(base, (BatchState.FAILED, f"SLURM reports the job {base or '?'}"))
    if kind is BatchState.FAILED and base == "FAILED":
        sentence = (f"the program was killed by signal {signal}" if signal
                    else f"the program exited with code {code}")
        if reason and reason not in ("None", "NonZeroExitCode"):
            sentence += f" (SLURM: {reason})"
    return BackendStatus(kind, sentence[0].upper() + sentence[1:] + ".", code, base)


def live_status(state: str, reason: str) -> BackendStatus:
    kind, sentence = LIVE.get(state, (Q, f"SLURM reports the job {state}"))
    if state == "PENDING" and reason in HELD_REASONS:
        kind, sentence = H, f"held: {HELD_REASONS[reason]} ({reason})"
    elif state == "PENDING" and reason and reason != "None":
        sentence += f" ({reason})"
    return BackendStatus(kind, sentence[0].upper() + sentence[1:] + ".", None, state)


class SlurmBackend(Backend):
    """Jobs on a SLURM cluster, through its commands on the hub's machine or a submit host."""

    name = "slurm"
    submit_command = ("sbatch", "--parsable")
    cancel_command = ("scancel",)
    job_id_regexp = r"^(?P<job_id>\d+)(;\S*)?\s*$"

    partition = Unicode("", help="SLURM partition for the jobs (empty: the cluster's "
                        "default).").tag(config=True)
    accounting = Bool(False, help="""Whether the cluster keeps accounting (slurmdbd): then a job
        the controller has forgotten (after MinJobAge) is looked up with sacct before it is
        called vanished.""").tag(config=True)

    def submit_options(self, job: BatchJob) -> list[str]:
        r = job.resources
        options = [f"--job-name=nebulahub-{job.job_id}", f"--chdir={job.workdir}",
                   f"--output={file_pattern(job.stdout)}", f"--error={file_pattern(job.stderr)}",
                   f"--nodes={r.nodes}", "--ntasks-per-node=1", f"--cpus-per-task={r.cores}",
                   f"--mem={r.memory_mb}M", f"--time={minutes(r.walltime_s)}"]
        if self.partition:
            options.append(f"--partition={self.partition}")
        return options

    def job_script(self, job: BatchJob) -> str:
        return shell_script(job)

    def _already_gone(self, result) -> bool:
        said = result.stderr + result.stdout
        return "Invalid job id" in said or "already completing or completed" in said

    async def find(self, job: BatchJob) -> Optional[str]:
        """By the job's name: squeue (queued, running, or ended within the controller's
        MinJobAge), then sacct where accounting runs."""
        name = f"--name=nebulahub-{job.job_id}"
        result = await self._call(["squeue", "--noheader", "--format=%i", "--states=all", name],
                                  check=False)
        if result.returncode != 0:
            raise BackendUnavailable(_failed("squeue", result))
        found = [i for i in result.stdout.split() if re.fullmatch(self.backend_id_regexp, i)]
        if not found and self.accounting:
            result = await self._call(["sacct", "--noheader", "--parsable2", "--allocations",
                                       "--format=JobIDRaw", name], check=False)
            if result.returncode != 0:
                raise BackendUnavailable(_failed("sacct", result))
            found = [i for i in result.stdout.split() if re.fullmatch(self.backend_id_regexp, i)]
        return min(found, key=int) if found else None

    async def status(self, backend_ids: Iterable[str]) -> dict[str, BackendStatus]:
        ids = [self._checked_id(i) for i in dict.fromkeys(backend_ids)]
        if not ids:
            return {}
        live = await self._squeue(ids)
        found = {}
        for job_id in ids:
            state, reason = live.get(job_id, ("", ""))
            if state in LIVE:
                found[job_id] = live_status(state, reason)
            else:  # ended (or never seen): its record says how
                found[job_id] = await self._ended(job_id)
        return found

    async def _squeue(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        result = await self._call(["squeue", "--noheader", "--format=%i|%T|%r",
                                   f"--jobs={','.join(ids)}"], check=False)
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:   # none of them is known any more
                return {}
            raise BackendUnavailable(_failed("squeue", result))
        live = {}
        for line in result.stdout.splitlines():
            parts = line.strip().split("|", 2)
            if len(parts) == 3:
                live[parts[0]] = (parts[1], parts[2])
        return live

    async def _ended(self, job_id: str) -> BackendStatus:
        result = await self._call(["scontrol", "--oneliner", "show", "job", job_id], check=False)
        if result.returncode == 0:
            fields = _scontrol_fields(result.stdout)
            if fields.get("JobId") == job_id:
                return final_status(fields.get("JobState", ""), fields.get("ExitCode", ""),
                                    fields.get("Reason", ""))
        elif "Invalid job id" not in result.stderr:
            raise BackendUnavailable(_failed("scontrol", result))
        if self.accounting:
            record = await self._sacct(job_id)
            if record is not None:
                return record
        return BackendStatus(BatchState.VANISHED, FORGOTTEN + ".", None, "")

    async def _sacct(self, job_id: str) -> Optional[BackendStatus]:
        result = await self._call(["sacct", "--noheader", "--parsable2", "--allocations",
                                   f"--jobs={job_id}", "--format=JobIDRaw,State,ExitCode"],
                                  check=False)
        if result.returncode != 0:
            raise BackendUnavailable(_failed("sacct", result))
        for line in result.stdout.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[0] == job_id:
                return final_status(parts[1], parts[2])
        return None

    async def offers(self) -> Limits:
        """The largest node of the partition, its node count and time limit, capped by the
        admin's limits."""
        argv = ["sinfo", "--noheader", "--format=%c|%m|%l|%D"]
        if self.partition:
            argv.append(f"--partition={self.partition}")
        result = await self._call(argv)
        cores = memory = nodes = 0
        walltime: Optional[int] = 0
        for line in result.stdout.split():
            c, m, limit, n = (line.split("|") + ["", "", "", ""])[:4]
            cores = max(cores, _number(c))
            memory = max(memory, _number(m))
            nodes += _number(n)
            seconds = _slurm_duration(limit)
            walltime = None if seconds is None or walltime is None else max(walltime, seconds)
        found = Limits(nodes=nodes or None, cores=cores or None, memory_mb=memory or None,
                       walltime_s=walltime or None)
        return (await super().offers()).capped(found)


def _failed(command: str, result) -> str:
    said = (result.stderr.strip() or result.stdout.strip())[-300:] or "no message"
    return f"{command} failed (exit code {result.returncode}): {said}"


def _scontrol_fields(text: str) -> dict[str, str]:
    """The first occurrence of each ``Key=value`` of ``scontrol --oneliner``. The job name comes
    before JobState; ours is ``nebulahub-<job id>`` (no spaces), so it cannot fake a field."""
    fields: dict[str, str] = {}
    for m in re.finditer(r"(?:^|\s)([A-Za-z/:_]+)=(\S*)", text):
        fields.setdefault(m.group(1), m.group(2))
    return fields


def _number(text: str) -> int:
    m = re.match(r"\d+", text.strip())
    return int(m.group()) if m else 0


def _slurm_duration(text: str) -> Optional[int]:
    """``UNLIMITED``/``infinite`` -> None; ``[D-]HH:MM:SS``, ``MM:SS`` or minutes -> seconds."""
    text = text.strip()
    if not text or text.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":") if p.isdigit()]
    if len(parts) == 1:
        seconds = parts[0] * 60
    else:
        while len(parts) < 3:
            parts.insert(0, 0)
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return seconds + (int(days) * 86400 if days.isdigit() else 0)

"""HTCondor: ``condor_submit`` with the submit description on stdin, ``condor_q -json`` for jobs
in the queue, ``condor_history -json`` for ended ones, ``condor_rm``; ``condor_status -json``
for the pool's machines (the cloud backend's pool mode waits there for its VMs).

The description is built as a dict and written by HTCondor's own code (``htcondor2.Submit``),
then read back with it to check that nothing was added or lost. Arguments and environment use
HTCondor's "new" syntax (the whole value in double quotes, ``"`` doubled; a word with blanks or
quotes in single quotes, ``'`` doubled). HTCondor's submit language has no way to carry a line
break, and reads ``$(...)``, ``$ENV(...)``, ``$$(...)`` and ``$[...]`` as macros even inside
quotes; rather than guess at escapes its expander does not honour consistently (``$(DOLLAR)``
merges with a neighbouring ``$``), such values are refused with a sentence.
"""
from __future__ import annotations

import json
import re
from typing import Iterable, Optional

from traitlets import Dict, Unicode

from .base import Backend, BackendStatus, BatchJob, BatchState, Limits
from .errors import BackendError, BackendUnavailable, JobRefused

STATUS_ATTRIBUTES = ("ClusterId", "ProcId", "JobStatus", "HoldReason", "HoldReasonCode",
                     "ExitCode", "ExitBySignal", "ExitSignal", "RemoveReason")
MACRO = re.compile(r"\$[A-Za-z0-9_]*[(\[]")
VANISHED = ("HTCondor has no record of the job (it is neither in the queue nor in the "
            "schedd's history).")


def submit_value(field: str, value: str, *, bare: bool = True) -> str:
    """A value HTCondor's submit language reads back exactly, or :class:`JobRefused`.

    ``bare``: the value stands alone after ``=`` (a path), not inside a quoted list."""
    if "\n" in value or "\r" in value:
        raise JobRefused(field, f"{field}: HTCondor's submit description cannot carry a line "
                         "break.")
    if MACRO.search(value):
        raise JobRefused(field, f"{field}: HTCondor would read {MACRO.search(value).group()!r}"
                         "... as one of its macros; leave out '$(' and '$['.")
    if bare and value.endswith("\\"):
        raise JobRefused(field, f"{field}: HTCondor would join a value ending in a backslash "
                         "with the next line.")
    if bare and value != value.strip():
        raise JobRefused(field, f"{field}: HTCondor drops blanks at the start and end of a "
                         "value.")
    return value


def quote_word(word: str) -> str:
    """One word of HTCondor's new-syntax list (before the outer double quotes)."""
    if word and not any(c.isspace() or c in "'\"" for c in word):
        return word
    return "'" + word.replace("'", "''") + "'"


def quote_arguments(args: Iterable[str]) -> str:
    """``arguments = <this>``: each argument one word, the list in double quotes."""
    raw = " ".join(quote_word(a) for a in args)
    return '"' + raw.replace('"', '""') + '"'


def quote_environment(env: dict[str, str]) -> str:
    """``environment = <this>``: ``NAME=value`` words in the new syntax."""
    return quote_arguments(f"{k}={v}" for k, v in env.items())


# JobStatus -> (BatchState, sentence)
JOB_STATUS = {
    1: (BatchState.QUEUED, "Idle: waiting for a machine."),
    2: (BatchState.RUNNING, "Running."),
    6: (BatchState.RUNNING, "Running: transferring its output."),
    7: (BatchState.RUNNING, "Suspended by HTCondor (it continues later)."),
}


def status_of(ad: dict) -> BackendStatus:
    """A status from one job ad (``condor_q`` or ``condor_history``)."""
    code = ad.get("JobStatus")
    native = f"JobStatus={code}"
    if code in JOB_STATUS:
        kind, sentence = JOB_STATUS[code]
        return BackendStatus(kind, sentence, None, native)
    if code == 5:
        return BackendStatus(BatchState.HELD, f"held: {ad.get('HoldReason') or 'no reason given'}",
                             None, native)
    if code == 3:
        why = ad.get("RemoveReason") or "no reason given"
        return BackendStatus(BatchState.CANCELLED, f"Removed from HTCondor ({why}).", None, native)
    if code == 4:
        if ad.get("ExitBySignal"):
            signal = ad.get("ExitSignal")
            return BackendStatus(BatchState.FAILED, f"The program was killed by signal {signal}.",
                                 None, native)
        exit_code = ad.get("ExitCode")
        if exit_code == 0:
            return BackendStatus(BatchState.COMPLETED, "The program ended with exit code 0.", 0,
                                 native)
        return BackendStatus(BatchState.FAILED, f"The program exited with code {exit_code}.",
                             exit_code, native)
    # an unknown status of a job that is still known: not gone, so not final
    return BackendStatus(BatchState.QUEUED, f"HTCondor reports JobStatus {code}.", None, native)


class HTCondorBackend(Backend):
    """Jobs in an HTCondor pool, through its commands on the hub's machine or a submit host.

    One job is one process on one machine (vanilla universe): ``nodes`` is at most 1. The wall
    time becomes ``allowed_execute_duration``: HTCondor holds a job that runs longer, and the
    status says ``held`` with HTCondor's reason.
    """

    name = "htcondor"
    submit_command = ("condor_submit",)
    cancel_command = ("condor_rm",)
    job_id_regexp = r"submitted to cluster (?P<job_id>\d+)"
    backend_id_regexp = r"\d+\.\d+"
    static_limits = Limits(nodes=1)

    universe = Unicode("vanilla", help="HTCondor universe of the jobs.").tag(config=True)
    user_log = Unicode("{workdir}/.nebulahub-{job_id}.condor.log", help="""HTCondor's event log of
        a job ({workdir} and {job_id} replaced); empty: none.""").tag(config=True)
    extra_submit = Dict(value_trait=Unicode(), help="""More submit commands for every job, e.g.
        {'accounting_group': 'physics', 'should_transfer_files': 'NO'}.""").tag(config=True)

    def description(self, job: BatchJob) -> dict[str, str]:
        """The submit commands of the job, every value checked (:class:`JobRefused`)."""
        argv = [submit_value(f"argv[{i}]", a, bare=i == 0) for i, a in enumerate(job.argv)]
        program, args = argv[0], argv[1:]
        if not program.startswith("/"):
            if "=" in program:
                raise JobRefused("argv[0]", "A program looked up on PATH cannot have '=' in "
                                 "its name; give its absolute path.")
            # HTCondor does not search PATH: env does, on the machine that runs the job
            program, args = "/usr/bin/env", argv
        r = job.resources
        d = {"universe": self.universe,
             "executable": program,
             "transfer_executable": "false",
             "arguments": quote_arguments(args),
             "initialdir": submit_value("workdir", job.workdir),
             "output": submit_value("stdout", job.stdout),
             "error": submit_value("stderr", job.stderr),
             "request_cpus": str(r.cores),
             "request_memory": str(r.memory_mb),
             "allowed_execute_duration": str(r.walltime_s),
             "batch_name": f"nebulahub-{job.job_id}",
             "MY.NebulaHubJobId": f'"{job.job_id}"'}
        if self.user_log:
            d["log"] = submit_value("workdir", self.user_log.format(
                workdir=job.workdir.rstrip("/"), job_id=job.job_id))
        if job.env:
            d["environment"] = quote_environment(
                {k: submit_value(f"env[{k}]", v, bare=False) for k, v in job.env.items()})
        if job.requirements:
            d["requirements"] = f"({submit_value('requirements', job.requirements)})"
        for key, value in self.extra_submit.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.+]*", key):
                raise BackendError(f"HTCondorBackend.extra_submit: {key!r} is not a submit "
                                   "command.")
            d[key] = submit_value(f"extra_submit[{key}]", value)
        return d

    def job_script(self, job: BatchJob) -> str:
        """The submit description as HTCondor writes it, checked by reading it back."""
        import htcondor2

        wanted = self.description(job)
        text = str(htcondor2.Submit(wanted))
        if dict(htcondor2.Submit(text)) != dict(htcondor2.Submit(wanted)):
            raise BackendError("The HTCondor submit description did not read back as written; "
                               "the job was not submitted.")
        return text

    def _job_id_from_submit_output(self, out: str) -> str:
        return super()._job_id_from_submit_output(out) + ".0"

    def _already_gone(self, result) -> bool:
        said = (result.stderr + result.stdout).lower()
        return "not found" in said or "couldn't find" in said

    async def status(self, backend_ids: Iterable[str]) -> dict[str, BackendStatus]:
        ids = [self._checked_id(i) for i in dict.fromkeys(backend_ids)]
        if not ids:
            return {}
        ads = await self._ads("condor_q", ids)
        missing = [i for i in ids if i not in ads]
        if missing:
            ads.update(await self._ads("condor_history", missing))
        return {i: status_of(ads[i]) if i in ads
                else BackendStatus(BatchState.VANISHED, VANISHED, None, "")
                for i in ids}

    async def find(self, job: BatchJob) -> Optional[str]:
        """By the job's ``NebulaHubJobId`` attribute: condor_q, then condor_history."""
        constraint = f'NebulaHubJobId == "{job.job_id}"'
        for command in ("condor_q", "condor_history"):
            ads = await self._json([command, "-json", "-constraint", constraint,
                                    "-attributes", "ClusterId,ProcId"])
            ids = sorted((int(ad["ClusterId"]), int(ad.get("ProcId", 0))) for ad in ads
                         if "ClusterId" in ad)
            if ids:
                return f"{ids[0][0]}.{ids[0][1]}"
        return None

    async def machine_ads(self, constraint: str, attributes: Iterable[str]) -> list[dict]:
        """The pool's machine (slot) ads matching a ClassAd ``constraint``, from one
        ``condor_status -json``; :class:`BackendUnavailable` when the pool cannot be asked."""
        return await self._json(["condor_status", "-json", "-constraint", constraint,
                                 "-attributes", ",".join(attributes)])

    async def _json(self, argv: list[str]) -> list[dict]:
        result = await self._call(argv, check=False)
        if result.returncode != 0:
            raise BackendUnavailable(f"{argv[0]} failed: {result.stderr.strip()[-300:]}")
        text = result.stdout.strip()
        try:
            return json.loads(text) if text else []   # nothing at all when nothing matches
        except ValueError:
            raise BackendUnavailable(f"{argv[0]} gave output that is not JSON: "
                                     f"{text[:200]!r}") from None

    async def _ads(self, command: str, ids: list[str]) -> dict[str, dict]:
        ads = await self._json([command, "-json", "-attributes", ",".join(STATUS_ATTRIBUTES),
                                *ids])
        found = {}
        for ad in ads:
            key = f"{ad.get('ClusterId')}.{ad.get('ProcId')}"
            # history lists a job once per record, newest first: keep the newest
            found.setdefault(key, ad)
        return found

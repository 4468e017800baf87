"""The batch-backend seam: what a job is, what a backend reports, and the one way commands run.

Modelled on dask-jobqueue's ``core.py``: the shared machinery lives here once; each scheduler
module (``local``, ``slurm``, ``htcondor``) says only what differs, as class attributes
(``submit_command``, ``cancel_command``, ``job_id_regexp``) plus the few methods that read its
own output. Every command of every backend goes through :meth:`Backend._call` to the backend's
:class:`~machines.hosts.Host`: the hub's own machine (``LocalHost``) or a submit host reached
over SSH (``SshHost``); batchspawner's ``exec_prefix`` runs it as the job's account when the
host's login is a service account.
"""
from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass, field
from typing import ClassVar, Iterable, Mapping, Optional

from traitlets import Dict, Float, Instance, List, Unicode
from traitlets.config import LoggingConfigurable

from machines.errors import MachineError
from machines.hosts import CommandResult, Host, LocalHost

from .errors import BackendError, BackendUnavailable, CommandFailed, JobRefused

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ACCOUNT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _text(field_name: str, value: str) -> None:
    """A value that can reach a program: a C string (no NUL) that is valid text."""
    if not isinstance(value, str):
        raise JobRefused(field_name, f"{field_name} must be text, not {type(value).__name__}.")
    if "\0" in value:
        raise JobRefused(field_name, f"{field_name} cannot contain a NUL character.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise JobRefused(field_name, f"{field_name} is not valid text (a lone surrogate).") \
            from None


def _absolute(field_name: str, path: str) -> None:
    _text(field_name, path)
    if not path.startswith("/"):
        raise JobRefused(field_name, f"{field_name} must be an absolute path, not {path!r}.")


@dataclass(frozen=True)
class Resources:
    """What one job asks for: nodes (VMs), cores and memory per node, wall time."""

    nodes: int = 1
    cores: int = 1
    memory_mb: int = 1024
    walltime_s: int = 3600

    def __post_init__(self):
        for name in ("nodes", "cores", "memory_mb", "walltime_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise JobRefused(f"resources.{name}", f"resources.{name} must be a whole number "
                                 f"of at least 1, not {value!r}.")


@dataclass(frozen=True)
class BatchJob:
    """What to run, as the service hands it to a backend.

    ``argv`` is the program and its arguments, every value already one argument (nothing is
    ever split or expanded again); ``workdir``, ``stdout`` and ``stderr`` are absolute paths on
    the machine where the job runs; ``account`` is the Unix account the job belongs to;
    ``requirements`` is an extra HTCondor ClassAd expression (jobs pinned to machines), ignored
    by the other backends. ``user`` is the hub user the job is for (tags, quota); ``stage``
    maps further local paths the argv names (the app's folder, input files) to names under
    the job's folder on machines that do not share the service's filesystem (the ``cloud``
    backend copies them there, and the job's folder back); backends on a shared filesystem
    ignore it. Invalid values raise :class:`JobRefused` naming the field.
    """

    job_id: str
    argv: tuple[str, ...]
    workdir: str
    stdout: str
    stderr: str
    account: str
    env: Mapping[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    requirements: Optional[str] = None
    user: str = ""
    stage: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", dict(self.env))
        object.__setattr__(self, "stage", dict(self.stage))
        for local, name in self.stage.items():
            _absolute("stage", local)
            _text("stage", name)
            if name.startswith("/") or ".." in name.split("/") or not name:
                raise JobRefused("stage", f"{name!r} is not a name inside the job's folder.")
        if not isinstance(self.job_id, str) or not JOB_ID.match(self.job_id):
            raise JobRefused("job_id", f"The job id {self.job_id!r} is not one the backends "
                             "accept (letters, digits, '_', '.', '-'; at most 64).")
        if not isinstance(self.account, str) or not ACCOUNT.match(self.account):
            raise JobRefused("account", f"{self.account!r} is not a Unix account name.")
        if not self.argv:
            raise JobRefused("argv", "A job needs a program to run.")
        for i, arg in enumerate(self.argv):
            _text(f"argv[{i}]", arg)
        if not self.argv[0] or self.argv[0].startswith("-"):
            raise JobRefused("argv[0]", "The program name must not be empty or start with '-'.")
        for name in ("workdir", "stdout", "stderr"):
            _absolute(name, getattr(self, name))
        for name, value in self.env.items():
            if not isinstance(name, str) or not ENV_NAME.match(name):
                raise JobRefused("env", f"{name!r} is not an environment variable name.")
            _text(f"env[{name}]", value)
        if not isinstance(self.resources, Resources):
            raise JobRefused("resources", "resources must be a Resources record.")
        if self.requirements is not None:
            _text("requirements", self.requirements)


class BatchState(str, enum.Enum):
    """Where a job is in its batch system, in words every backend shares."""

    QUEUED = "queued"          # accepted, waiting for resources
    RUNNING = "running"        # started (suspended jobs too: they continue later; reason says)
    HELD = "held"              # kept from running until someone releases it; reason says why
    COMPLETED = "completed"    # ended by itself with exit code 0
    FAILED = "failed"          # ended with a non-zero exit code, a signal, or killed by the
                               # batch system (time limit, memory, node failure); reason says
    CANCELLED = "cancelled"    # removed (scancel / condor_rm / cancel()), by anybody
    VANISHED = "vanished"      # gone without a final record: the batch system forgot it or its
                               # process died without leaving an exit code

    @property
    def is_final(self) -> bool:
        return self in FINAL_BATCH_STATES


FINAL_BATCH_STATES = frozenset({BatchState.COMPLETED, BatchState.FAILED, BatchState.CANCELLED,
                                BatchState.VANISHED})


@dataclass(frozen=True)
class BackendStatus:
    """One job's state, a sentence saying why, the program's exit code once known, and the
    batch system's own word for it (``native``, for logs: ``TIMEOUT``, ``JobStatus=5``)."""

    state: BatchState
    reason: str
    exit_code: Optional[int] = None
    native: str = ""
    # where a job with machines of its own is before and after its program runs: "booting"
    # (machines not yet running), "bootstrapping" (running, not yet ready), "terminating"
    # (the program ended, machines being given back); "" for batch systems
    phase: str = ""


@dataclass(frozen=True)
class Limits:
    """What a backend offers one job at most (None: no limit it knows of)."""

    nodes: Optional[int] = None
    cores: Optional[int] = None
    memory_mb: Optional[int] = None
    walltime_s: Optional[int] = None

    def as_dict(self) -> dict[str, Optional[int]]:
        """The admin's limits format of the forms (``jobforms.loader.load_apps``)."""
        return {"nodes": self.nodes, "cores": self.cores, "memory_mb": self.memory_mb,
                "walltime_s": self.walltime_s}

    def capped(self, other: "Limits") -> "Limits":
        """The smaller of both on every resource."""
        def low(a, b):
            return b if a is None else a if b is None else min(a, b)
        return Limits(**{k: low(v, getattr(other, k)) for k, v in self.as_dict().items()})

    def refuse_beyond(self, resources: Resources) -> None:
        """:class:`JobRefused` naming the first resource asked beyond these limits."""
        for name, most in self.as_dict().items():
            asked = getattr(resources, name)
            if most is not None and asked > most:
                raise JobRefused(f"resources.{name}", f"The job asks for {asked} {_UNITS[name]}; "
                                 f"this backend offers at most {most}.")


_UNITS = {"nodes": "nodes", "cores": "cores", "memory_mb": "MB of memory",
          "walltime_s": "seconds of wall time"}


class Backend(LoggingConfigurable):
    """Contract (what the jobs service calls).

    ``await submit(job: BatchJob) -> str``
        Hand the job to the batch system as ``job.account``; returns the backend's id for it
        (opaque to the service: store it, give it back). :class:`JobRefused` (naming the field)
        if the job cannot be expressed here or asks for more than the admin allows;
        :class:`CommandFailed` if the batch system refused it. Not idempotent: a second call
        is a second job (only the local backend refuses a job id it started already).
    ``await find(job: BatchJob) -> backend_id or None``
        The id of the batch job :meth:`submit` made for ``job.job_id`` (every backend marks its
        jobs with it: a SLURM job name, an HTCondor job attribute, a control folder), if the
        batch system knows it, queued, running or ended; None when it has none.
        :class:`BackendUnavailable` when it cannot be asked. After a restart the service asks
        this before submitting a job whose backend id it had not saved yet, so a submission
        cut short by the restart neither runs twice nor is lost.
    ``await status(backend_ids) -> {backend_id: BackendStatus}``
        Every given job's state, from one round of queries for all of them (one ``squeue`` or
        ``condor_q`` per poll, not one per job). :class:`BackendUnavailable` when the batch
        system cannot be asked: then nothing is known, and nothing may be concluded (a job is
        only ``vanished`` when the batch system answered and has no record of it).
    ``await cancel(backend_id, account=None)``
        Ask the batch system to end the job (as ``account`` with :attr:`exec_prefix`, else as
        the host's account). A job that already ended or is unknown is not an error, so it is
        safe to call again. The job reads ``cancelled`` in a later :meth:`status`.
    ``await offers() -> Limits``
        The most one job can get here (nodes, cores, memory, wall time) for the forms: the
        admin's :attr:`limits`, capped by what the batch system itself reports where it can.

    Commands run through :meth:`_call` only: one argument list on :attr:`host`, never a shell
    command line built from values. The script or submit description a backend generates
    quotes every value for its own language, so no value can add a line or a directive.
    """

    name: ClassVar[str] = "base"
    submit_command: ClassVar[tuple[str, ...]] = ()
    cancel_command: ClassVar[tuple[str, ...]] = ()
    job_id_regexp: ClassVar[str] = r"(?P<job_id>\d+)"
    # what this backend's ids look like (anything else given to status/cancel is a bug)
    backend_id_regexp: ClassVar[str] = r"\d+"
    # what the batch system itself can never give a job (e.g. one node for the local backend)
    static_limits: ClassVar[Limits] = Limits()

    host = Instance(Host, help="Where the batch commands run: the hub's machine (LocalHost) or "
                    "a submit host over SSH (SshHost). Set by the jobs service.")
    exec_prefix = List(Unicode(), help="""Words put before every command run for a job's
        account (submit, cancel), '{account}' replaced by its name, as batchspawner's
        exec_prefix: e.g. ['sudo', '-n', '-u', '{account}', '--'] when the host's login is a
        service account. Empty: the host's account is the job's account.""").tag(config=True)
    command_env = Dict(value_trait=Unicode(), help="""Environment of every batch command, e.g.
        {'SLURM_CONF': '/etc/slurm/slurm.conf'} or {'CONDOR_CONFIG': ...}.""").tag(config=True)
    submit_command_extra = List(Unicode(), help="Extra arguments of the submit command "
                                "(as dask-jobqueue's submit_command_extra).").tag(config=True)
    cancel_command_extra = List(Unicode(), help="Extra arguments of the cancel command.").tag(
        config=True)
    limits = Dict(help="""What this backend offers one job at most, as
        {'nodes': N, 'cores': N, 'memory_mb': N, 'walltime_s': N} (a missing key: no limit of
        the admin's; the batch system's own limits still apply).""").tag(config=True)
    command_timeout = Float(60, help="Seconds one batch command may take.").tag(config=True)
    connect_timeout = Float(20, help="Seconds to reach the submit host.").tag(config=True)

    # ---- the contract ----------------------------------------------------------------------
    async def submit(self, job: BatchJob) -> str:
        self.check(job)
        result = await self._call([*self.submit_command, *self.submit_command_extra,
                                   *self.submit_options(job)],
                                  input=self.job_script(job), account=job.account)
        return self._job_id_from_submit_output(result.stdout)

    async def find(self, job: BatchJob) -> Optional[str]:
        raise NotImplementedError

    async def status(self, backend_ids: Iterable[str]) -> dict[str, BackendStatus]:
        raise NotImplementedError

    async def cancel(self, backend_id: str, account: Optional[str] = None) -> None:
        result = await self._call([*self.cancel_command, *self.cancel_command_extra,
                                   self._checked_id(backend_id)], account=account, check=False)
        if result.returncode != 0 and not self._already_gone(result):
            raise self._failure(result, [*self.cancel_command, backend_id])

    async def offers(self) -> Limits:
        return self.admin_limits().capped(self.static_limits)

    # ---- what a scheduler module says --------------------------------------------------------
    def submit_options(self, job: BatchJob) -> list[str]:
        """Arguments of the submit command for this job (after the extra ones)."""
        return []

    def job_script(self, job: BatchJob) -> str:
        """The batch script or submit description, sent on the submit command's stdin."""
        raise NotImplementedError

    def _checked_id(self, backend_id: str) -> str:
        """The id as the batch system spells it (ValueError for one it never gave)."""
        if not isinstance(backend_id, str) or \
                not re.fullmatch(self.backend_id_regexp, backend_id):
            raise ValueError(f"{backend_id!r} is not a {self.name} job id")
        return backend_id

    def _already_gone(self, result: CommandResult) -> bool:
        """Whether a failed cancel says the job is no longer there (then it is not an error)."""
        return False

    # ---- shared machinery ------------------------------------------------------------------
    def admin_limits(self) -> Limits:
        unknown = set(self.limits) - set(Limits().as_dict())
        if unknown:
            raise BackendError(f"The {self.name} backend's limits name unknown resources: "
                               f"{', '.join(sorted(unknown))}.")
        return Limits(**self.limits)

    def check(self, job: BatchJob) -> None:
        """Refuse what the admin's and the backend's static limits do not allow."""
        if not isinstance(job, BatchJob):
            raise TypeError("submit() takes a BatchJob")
        self.admin_limits().capped(self.static_limits).refuse_beyond(job.resources)

    def _job_id_from_submit_output(self, out: str) -> str:
        match = re.search(self.job_id_regexp, out, re.M)
        if match is None:
            raise BackendError(f"{self.submit_command[0]} did not say which job it created "
                               f"(its output: {out.strip()[:300]!r}).")
        return match.group("job_id")

    def _failure(self, result: CommandResult, argv: list[str]) -> CommandFailed:
        said = (result.stderr.strip() or result.stdout.strip())[-800:]
        return CommandFailed(f"{argv[0]} failed (exit code {result.returncode}): "
                             f"{said or 'no message'}", argv=argv,
                             returncode=result.returncode, stderr=result.stderr)

    async def _call(self, argv: list[str], input: Optional[str] = None, *,
                    account: Optional[str] = None, check: bool = True) -> CommandResult:
        """Run one command on :attr:`host` (as ``account`` through :attr:`exec_prefix` when
        both are given) and return its result; the one door every backend command uses.

        :class:`BackendUnavailable` if the host cannot be reached or the command hangs;
        :class:`CommandFailed` for a non-zero exit when ``check``.
        """
        if self.host is None:
            raise BackendError(f"The {self.name} backend has no host to run commands on.")
        words, env = [str(a) for a in argv], dict(self.command_env)
        if account is not None and self.exec_prefix:
            if not ACCOUNT.match(account):
                raise ValueError(f"{account!r} is not an account name")
            # sudo and friends reset the environment: give it after the prefix
            words = ([w.replace("{account}", account) for w in self.exec_prefix]
                     + (["env", *(f"{k}={v}" for k, v in env.items())] if env else []) + words)
            env = {}
        self.log.debug("%s backend runs %s", self.name, words)
        try:
            await self.host.open(wait=self.connect_timeout)
            result = await self.host.run(words, input=input, env=env or None,
                                         timeout=self.command_timeout)
        except FileNotFoundError:
            raise BackendError(f"The command {words[0]} is not installed where the "
                               f"{self.name} backend runs its commands.") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise BackendUnavailable(f"{words[0]} did not answer within "
                                     f"{self.command_timeout:.0f} s.") from None
        except MachineError as e:
            if e.transient:
                raise BackendUnavailable(str(e)) from None
            raise BackendError(str(e)) from None
        except Exception as e:  # asyncssh and socket errors: the submit host went away
            if _is_connection_error(e):
                raise BackendUnavailable(f"The submit host did not answer ({e}).") from None
            raise
        if check and result.returncode != 0:
            raise self._failure(result, words)
        return result


def _is_connection_error(error: Exception) -> bool:
    import asyncssh  # the SSH client is the only other thing that can fail here

    return isinstance(error, (OSError, asyncssh.Error, EOFError))


def account_host(account: str) -> LocalHost:
    """The job's own account on the service's machine (the service's account when it is not
    root): what reads and writes the user's files for the service."""
    import os
    import pwd
    import sys

    if os.geteuid() != 0:
        account = pwd.getpwuid(os.geteuid()).pw_name
    try:
        home = pwd.getpwnam(account).pw_dir
    except KeyError:
        raise JobRefused("account", f"There is no Unix account {account!r} here.") from None
    return LocalHost(account, home, sys.executable)

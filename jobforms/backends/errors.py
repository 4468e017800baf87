"""What can go wrong with a batch job, as sentences the job's owner can act on.

One small tree, like the machine layer's: ``transient`` says whether asking again later may
work without anybody changing anything (the submit host or the batch system did not answer).
Anything else escaping a backend is a bug and is reported as one.
"""
from __future__ import annotations


class BackendError(Exception):
    """Base class. ``str(error)`` is meant for the person whose job it is."""

    transient = False


class JobRefused(BackendError):
    """The job cannot be expressed for this batch system or asks for more than it offers;
    ``field`` names what to change (``argv``, ``env``, ``stdout``, ``resources.cores`` ...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class BackendUnavailable(BackendError):
    """The submit host or the batch system did not answer; nothing is known about the jobs."""

    transient = True


class CommandFailed(BackendError):
    """A batch command ran and refused (``sbatch``, ``condor_rm`` ...); the message quotes it."""

    def __init__(self, message: str, *, argv: list[str], returncode: int, stderr: str):
        super().__init__(message)
        self.argv, self.returncode, self.stderr = argv, returncode, stderr

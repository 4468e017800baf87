"""The job as a POSIX shell script: what SLURM's sbatch and the local backend run.

Every value is one ``shlex.quote``-d word, so a value never becomes more than one word, never
runs, and a line break inside it stays inside its quotes. No ``#SBATCH`` line is ever written:
every batch option is an argument of ``sbatch`` itself, and the line after the shebang is a
command, which ends sbatch's search for directives before the first value (sbatch reads
``#SBATCH`` lines only up to the first command).
"""
from __future__ import annotations

import shlex

from .base import BatchJob

SCRIPT_HEADER = "#!/bin/sh\n: NebulaHub job: its options are on the submit command line\n"


def shell_script(job: BatchJob) -> str:
    """The job's script: its environment, then ``exec`` of its argv (so the job's exit code
    and signals are the program's own)."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in job.env.items()]
    lines.append("exec " + " ".join(shlex.quote(arg) for arg in job.argv))
    return SCRIPT_HEADER + "\n".join(lines) + "\n"

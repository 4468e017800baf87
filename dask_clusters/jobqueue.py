"""What the dask-jobqueue backends (SLURM, HTCondor) share: the worker's job, how its status is
asked, where its logs go."""
from __future__ import annotations

import getpass
import importlib
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from .base import ClusterManager

_IMPORT = threading.Lock()


def jobqueue_module(name: str):
    """``importlib.import_module(name)`` of a dask_jobqueue module, without the SIGINT handler
    dask_jobqueue's ``runner`` module installs when imported (it would make an interrupt in a
    notebook end the kernel, and it fails outright when imported outside the main thread, as
    the plotting app does)."""
    with _IMPORT:
        if name in sys.modules:
            return sys.modules[name]
        real = signal.signal

        def keep_sigint(signum, handler):
            if signum == signal.SIGINT:
                return signal.getsignal(signum)
            return real(signum, handler)

        signal.signal = keep_sigint
        try:
            return importlib.import_module(name)
        finally:
            signal.signal = real


class JobQueueManager(ClusterManager):
    """A cluster whose workers are batch jobs submitted by dask-jobqueue, as the user."""

    job_name = "nebulahub-dask"

    def jobqueue_options(self, common: dict) -> dict:
        """Keyword arguments every dask-jobqueue cluster class takes, from the settings."""
        s = self.settings
        self.job_name = common["job_name"]
        prologue = [f"export {k}={shlex.quote(v)}" for k, v in s.worker_env.items()]
        prologue += list(s.worker_prologue)
        extra = []
        if common["lifetime"]:
            # retire before the batch system kills the job; its data moves to other workers
            extra += ["--lifetime", f"{int(common['lifetime'])}s", "--lifetime-stagger", "0s"]
        return dict(cores=s.worker_cores, memory=s.worker_memory, processes=1, python=s.python,
                    death_timeout=common["death_timeout"], log_directory=self.log_directory(),
                    local_directory=s.worker_local_directory or None,
                    job_script_prologue=prologue, worker_extra_args=extra,
                    scheduler_options=common["scheduler_options"],
                    security=common["security"], shared_temp_directory=common["tls_dir"],
                    job_name=self.job_name, hooks=common["hooks"], silence_logs=False)

    def log_directory(self) -> str:
        path = Path(os.path.expanduser(self.settings.log_directory))
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return str(path)

    def status_host(self):
        """The user's own machine, running the batch commands as the user."""
        from machines.hosts import LocalHost

        return LocalHost(getpass.getuser(), os.path.expanduser("~"), sys.executable)

    def command_env(self) -> dict[str, str]:
        return {name: os.environ[name] for name in self.settings.batch_env if name in os.environ}

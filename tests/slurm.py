"""A real single-node SLURM (Debian's slurmctld, slurmd and munge), started by the tests.

One per test run (a session fixture): munged as user ``munge`` with its own key and socket,
``slurmctld -D`` and ``slurmd -D`` with their own ports and a configuration in a private folder.
Every SLURM command must see ``SLURM_CONF`` (``cluster.env``); without it they look the
controller up in DNS. Stopped, and its folder removed, at the end, even when tests fail.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.hubproc import free_ports


class SlurmCluster:
    """slurmctld + slurmd on this machine; ``run(*cmd)`` runs a SLURM command against it."""

    def __init__(self, cpus: int = 2, memory_mb: int = 4000):
        self.dir = Path(tempfile.mkdtemp(prefix="nebulahub-slurm-", dir="/var/tmp"))
        os.chmod(self.dir, 0o755)  # jobs of other accounts read the configuration
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self.cpus, self.memory_mb = cpus, memory_mb
        self.procs: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def _munge(self) -> None:
        mdir = self.dir / "munge"
        mdir.mkdir(mode=0o755)
        key = mdir / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True,
                       capture_output=True)
        shutil.chown(mdir, "munge", "munge")
        shutil.chown(key, "munge", "munge")
        os.chmod(key, 0o600)
        self.procs.append(subprocess.Popen(
            ["runuser", "-u", "munge", "--", "munged", "--foreground", f"--key-file={key}",
             f"--socket={self.munge_socket}", f"--pid-file={mdir}/munged.pid",
             f"--log-file={mdir}/munged.log", f"--seed-file={mdir}/munged.seed",
             "--force"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        self._wait(lambda: self.munge_socket.exists(), 10, "munged did not start")

    def _config(self) -> None:
        for d in ("state", "spool", "log"):
            (self.dir / d).mkdir()
        ctl, node = free_ports(2)  # distinct: chosen one at a time, both could be the same
        self.conf.write_text("\n".join([
            "ClusterName=nebulahub-test",
            "SlurmctldHost=localhost",
            "SlurmUser=root",
            f"SlurmctldPort={ctl}",
            f"SlurmdPort={node}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "CredType=cred/munge",
            f"StateSaveLocation={self.dir}/state",
            f"SlurmdSpoolDir={self.dir}/spool",
            f"SlurmctldPidFile={self.dir}/slurmctld.pid",
            f"SlurmdPidFile={self.dir}/slurmd.pid",
            f"SlurmctldLogFile={self.dir}/log/slurmctld.log",
            f"SlurmdLogFile={self.dir}/log/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "ReturnToService=2",
            "SchedulerParameters=sched_interval=1",
            "MinJobAge=300",
            "KillWait=5",
            "MpiDefault=none",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def start(self) -> "SlurmCluster":
        try:
            self._munge()
            self._config()
            for cmd in (["slurmctld", "-D", "-f", str(self.conf)],
                        ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)]):
                self.procs.append(subprocess.Popen(
                    cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
            self._wait(self._idle, 60, "the SLURM node did not become idle")
        except BaseException:
            self.stop()
            raise
        return self

    def _idle(self) -> bool:
        res = self.run("sinfo", "-h", "-o", "%T", check=False)
        return res.returncode == 0 and res.stdout.strip() in ("idle", "mixed", "allocated")

    def run(self, *cmd: str, check: bool = True, user: str | None = None
            ) -> subprocess.CompletedProcess:
        argv = (["runuser", "-u", user, "--"] if user else []) + list(cmd)
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=check,
                              timeout=60)

    def queue(self) -> list[str]:
        """Job ids in squeue (what a test counts to see that none is left)."""
        return self.run("squeue", "-h", "-o", "%i").stdout.split()

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{what}: {p.args[0]} exited ({p.returncode}); "
                                       f"logs in {self.dir}/log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} within {timeout:.0f} s (logs in {self.dir}/log)")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.conf.exists():
            self.run("scancel", "--full", "--state=RUNNING,PENDING", "-u", "root", check=False)
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

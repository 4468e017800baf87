"""A CPU share for the test hosts, so that they stand in for machines with CPUs of their own.

On the 2-core test machine every namespace "VM" shares the hub's CPUs; a real VM's load never
slows the hub. The hosts' sshd (and everything started through it: servers, jobs) goes into a
cgroup with a small CPU weight: cgroup v2 ``cpu.weight`` where the controller is available, else
cgroup v1 ``cpu.shares`` (the equivalent). ``share`` is relative to a default process (1.0).
"""
from __future__ import annotations

import os
from pathlib import Path

V2 = Path("/sys/fs/cgroup")
V1_CPU = Path("/sys/fs/cgroup/cpu")


class CpuShare:
    """One cgroup for a test network's hosts; ``describe()`` says what the hosts got."""

    def __init__(self, name: str, share: float):
        self.share = share
        self.path: Path | None = None
        self.kind = "none"
        try:
            if "cpu" in (V2 / "cgroup.controllers").read_text().split():
                self.path, self.kind = V2 / name, "cgroup v2 cpu.weight"
                self.path.mkdir(exist_ok=True)
                (self.path / "cpu.weight").write_text(str(max(1, int(100 * share))))
                return
        except OSError:
            pass
        try:
            if V1_CPU.is_dir():
                self.path, self.kind = V1_CPU / name, "cgroup v1 cpu.shares"
                self.path.mkdir(exist_ok=True)
                (self.path / "cpu.shares").write_text(str(max(2, int(1024 * share))))
        except OSError:
            self.path, self.kind = None, "none (no writable cgroup; hosts run at nice 10 only)"

    def add(self, pid: int) -> None:
        """Put ``pid`` (and so everything it starts later) into the group."""
        if self.path is not None:
            try:
                (self.path / "cgroup.procs").write_text(str(pid))
            except OSError:
                pass

    def describe(self) -> str:
        if self.path is None:
            return self.kind
        return f"{self.kind} = {self.share:.2f} of a default process's CPU share ({self.path})"

    def remove(self) -> None:
        if self.path is not None:
            try:
                os.rmdir(self.path)
            except OSError:
                pass  # processes still inside: removed by the next run's clean-up

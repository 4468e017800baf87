"""A real PostgreSQL 15 (Debian's), started by the tests: one per test run.

initdb refuses root, so the cluster belongs to the ``postgres`` account, in a private folder,
on a free loopback port; ``url`` is an SQLAlchemy URL for the ``nh`` superuser (trust
authentication on loopback only). Stopped and removed at the end, even when tests fail.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``start()``, then ``url``; ``stop()`` removes everything."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="nebulahub-pg-", dir="/var/tmp"))
        self.data, self.sockets = self.dir / "data", self.dir / "sockets"
        self.port = _free_port()
        self.started = False

    def _as_postgres(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True,
                              text=True, timeout=120)

    def start(self) -> "PostgresServer":
        self.sockets.mkdir(parents=True)
        shutil.chown(self.dir, "postgres", "postgres")
        shutil.chown(self.sockets, "postgres", "postgres")
        res = self._as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                                "-U", "nh")
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed: {res.stderr[-2000:]}")
        res = self._as_postgres(
            str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "postgres.log"),
            "-w", "-o", f"-k {self.sockets} -p {self.port} -c listen_addresses=127.0.0.1",
            "start")
        if res.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {res.stderr[-2000:]}")
        self.started = True
        return self

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://nh@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if self.started:
            self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

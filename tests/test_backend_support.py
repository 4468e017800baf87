"""Shared helpers of the backend tests (tests/test_backend_*.py); no tests here."""
from __future__ import annotations

import asyncio
import os
import time
import uuid

from jobforms.backends import BatchJob, Resources
from machines.hosts import LocalHost


class CountingHost(LocalHost):
    """The real LocalHost, keeping the commands it ran (to check one round per poll)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.commands: list[list[str]] = []

    async def run(self, argv, **kw):
        self.commands.append(list(argv))
        return await super().run(argv, **kw)


def account_folder(parent: str, uid: int, gid: int, prefix: str = "work") -> str:
    """A fresh folder only the account (and root) can enter."""
    path = os.path.join(parent, f"{prefix}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path, 0o700)
    os.chown(path, uid, gid)
    return path


def make_job(workdir: str, account: str, argv: list[str], name: str = "j1", env=None,
             **resources) -> BatchJob:
    """A job writing ``<name>.out`` / ``<name>.err`` in ``workdir``."""
    return BatchJob(job_id=name, argv=argv, workdir=workdir, stdout=f"{workdir}/{name}.out",
                    stderr=f"{workdir}/{name}.err", account=account,
                    env={"NEBULAHUB_GREETING": "hello 'world'"} if env is None else env,
                    resources=Resources(**resources))


async def wait_for(backend, backend_id: str, *states, timeout: float = 30):
    """Poll until the job is in one of ``states``; its last status (assert on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        status = (await backend.status([backend_id]))[backend_id]
        if status.state in states or time.monotonic() > deadline:
            assert status.state in states, status
            return status
        await asyncio.sleep(0.3)

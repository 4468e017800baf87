"""Machines the hub still owes back: releases that failed because the cloud did not answer (or
refused in a state it will leave), kept in a hub-private file and retried until they succeed.

A user's stop must not wait for the cloud, and a release must not be forgotten when the cloud is
down or the hub restarts: the record goes into this file, and a loop in the hub process (and the
hub-managed machine service) gives it back as soon as the provider answers.
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from contextlib import contextmanager
from typing import Awaitable, Callable

from .errors import is_transient
from .record import Machine

log = logging.getLogger(__name__)


def _key(m: Machine) -> str:
    return f"{m.provider}:{m.vm_id if m.vm_id is not None else m.start_id}"


class PendingReleases:
    """A JSON file of :class:`~machines.record.Machine` records (0600, under a lock)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(os.path.expanduser(path))

    @contextmanager
    def _locked(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read(self) -> dict[str, dict]:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def _write(self, data: dict[str, dict]) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)

    def add(self, machine: Machine) -> None:
        with self._locked():
            data = self._read()
            data[_key(machine)] = machine.model_dump(mode="json")
            self._write(data)

    def remove(self, machine: Machine) -> None:
        with self._locked():
            data = self._read()
            if data.pop(_key(machine), None) is not None:
                self._write(data)

    def machines(self) -> list[Machine]:
        with self._locked():
            return [Machine(**m) for m in self._read().values()]

    async def retry(self, release: Callable[[Machine], Awaitable[None]]) -> int:
        """Try every pending release once; returns how many are still owed."""
        owed = 0
        for machine in self.machines():
            try:
                await release(machine)
            except Exception as e:
                owed += 1
                if not is_transient(e):
                    log.error("Giving back %s keeps failing: %s", _key(machine), e)
                continue
            self.remove(machine)
            log.info("Gave back %s (release owed since an earlier failure)", _key(machine))
        return owed


_LOOPS: dict[str, asyncio.Task] = {}


def keep_retrying(queue: PendingReleases, release: Callable[[Machine], Awaitable[None]],
                  every: float) -> None:
    """Start (once per file and process) a task retrying the owed releases every ``every`` s."""
    task = _LOOPS.get(queue.path)
    if task is not None and not task.done():
        return

    async def loop():
        while True:
            try:
                await queue.retry(release)
            except Exception:  # the loop must outlive any one failure
                log.exception("Retrying owed releases failed")
            await asyncio.sleep(every)

    _LOOPS[queue.path] = asyncio.ensure_future(loop())

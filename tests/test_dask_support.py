"""Shared helpers of the Dask tests (tests/test_dask_*.py); no tests here.

A Dask cluster lives in the user's server process, as the user's own account. The tests play that
process with :class:`Owner`: a Python program run as a per-test account of the ``local_accounts``
fixture (never root), with the servers' environment (``local_accounts.python_env``, which has
NebulaHub, dask-jobqueue and the HTCondor bindings installed), a home of its own, and the admin's
Dask settings file named by ``$NEBULAHUB_DASK_CONFIG``. It reports what it sees as JSON lines.
"""
from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import textwrap
import time
import uuid
from pathlib import Path


CONDOR_BIN = Path(__file__).parent / "condor" / "bin"


class DaskUser:
    """An account with a fresh home for one test; ``settings(...)`` writes the admin's file."""

    def __init__(self, account, parent: str, python_env: str):
        self.account, self.python_env = account, python_env
        self.home = Path(parent) / f"home-{uuid.uuid4().hex[:8]}"
        self.home.mkdir(mode=0o700)
        os.chown(self.home, account.uid, account.gid)
        self.config = self.home / "dask-settings.py"
        self.env: dict[str, str] = {}

    def settings(self, **values) -> Path:
        """The admin's settings file (readable by the user, written by root)."""
        lines = [f"c.DaskClusters.{k} = {v!r}" for k, v in values.items()]
        self.config.write_text("\n".join(lines) + "\n")
        os.chmod(self.config, 0o644)
        return self.config

    def start(self, program: str, **env) -> "Owner":
        return Owner(self, textwrap.dedent(program), {**self.env, **env})

    def run(self, program: str, timeout: float = 240, **env) -> list[dict]:
        """Run ``program`` to its end; the JSON lines it printed."""
        owner = self.start(program, **env)
        try:
            owner.wait(timeout)
        finally:
            owner.kill()
        return owner.lines

    def write(self, name: str, text: str) -> Path:
        path = self.home / name
        path.write_text(text)
        os.chown(path, self.account.uid, self.account.gid)
        return path

    def remove(self) -> None:
        """Whatever a failed test left running as the account (by pid), then the home."""
        for pid in pids_of(self.account.name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.home, ignore_errors=True)


class Owner:
    """The user's server process: ``program`` run as the account; ``report(**kw)`` in it prints a
    JSON line the test reads with :meth:`expect`."""

    PRELUDE = textwrap.dedent("""
        import json, os, sys, time
        def report(**kw):
            print(json.dumps(kw, default=str), flush=True)
        """)

    def __init__(self, user: DaskUser, program: str, env: dict):
        self.user = user
        base = {"HOME": str(user.home), "USER": user.account.name, "LOGNAME": user.account.name,
                "PATH": f"{user.python_env}/bin:/usr/local/bin:/usr/bin:/bin",
                "NEBULAHUB_DASK_CONFIG": str(user.config), "PYTHONUNBUFFERED": "1",
                "LANG": "C.UTF-8"}
        base.update(env)
        code = self.PRELUDE + "\ndef main():\n" + textwrap.indent(program, "    ") + \
            "\n\nif __name__ == '__main__':\n    main()\n"
        script = user.write(f"owner-{uuid.uuid4().hex[:6]}.py", code)
        self.stderr_path = user.home / f"{script.stem}.err"
        self._err = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            # runuser resets HOME, USER ... to the account's passwd entry: give them again after it
            [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user.account.name, "--",
             "/usr/bin/env", *(f"{k}={v}" for k, v in base.items()),
             f"{user.python_env}/bin/python", str(script)], cwd=str(user.home), env=base, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self._err, text=True, start_new_session=True)
        self.lines: list[dict] = []
        self._pending = b""  # what the program wrote after the last whole line read

    @property
    def pid(self) -> int:
        """The program's own pid (runuser's child)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True).stdout.split()
        return int(out[0]) if out else self.proc.pid

    def _read(self, timeout: float) -> dict | None:
        # lines are split here from raw reads of the pipe: a buffered readline() could take two
        # lines that arrived together and leave the second where select() never sees it
        while b"\n" not in self._pending:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            self._pending += chunk
        raw, self._pending = self._pending.split(b"\n", 1)
        line = raw.decode("utf-8", "replace")
        try:
            found = json.loads(line)
        except ValueError:
            return None
        self.lines.append(found)
        return found

    def expect(self, step: str, timeout: float = 180) -> dict:
        """Wait for the line ``{"step": step, ...}``; fails with the program's errors."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self._read(min(1.0, deadline - time.monotonic()))
            if found is not None and found.get("step") == step:
                return found
            if found is None and self.proc.poll() is not None:
                break
        raise AssertionError(f"no {step!r} from the owner; it said {self.lines} and "
                             f"{self.errors()[-3000:]}")

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.5)
        while self._read(0.05) is not None:
            pass
        if self.proc.poll() is None:
            raise AssertionError(f"the owner did not end within {timeout} s: {self.lines} "
                                 f"{self.errors()[-3000:]}")
        assert self.proc.returncode == 0, f"owner failed: {self.lines} {self.errors()[-4000:]}"
        return self.proc.returncode

    def errors(self) -> str:
        self._err.flush()
        return self.stderr_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the program itself (not its helpers: the reaper must see its owner die)."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._err.close()


def pids_of(account: str) -> list[int]:
    uid = pwd.getpwnam(account).pw_uid
    out = subprocess.run(["ps", "-u", str(uid), "-o", "pid="], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def processes_of(account: str) -> list[str]:
    """Command lines of the account's processes (what is left running)."""
    uid = pwd.getpwnam(account).pw_uid
    out = subprocess.run(["ps", "-ww", "-u", str(uid), "-o", "stat=,args="], capture_output=True, text=True)
    # a zombie has ended (its parent, gone too, leaves it to init to reap)
    return [args for stat, _, args in (line.strip().partition(" ") for line in out.stdout.splitlines())
            if stat and not stat.startswith("Z")]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what   # a callable: the state to show
            raise AssertionError(f"{said} within {timeout} s")
        time.sleep(interval)


def dask_account(local_accounts):
    """The account the Dask tests' servers run as (created once per run, removed at its end)."""
    from machines.localusers import ensure_account, unix_name

    return ensure_account(unix_name(local_accounts.prefix, "dask"), "/nonexistent",
                          local_accounts.registry)

"""The hub's own machine as a host: the bootstrap runs as a local process, as the account the
workload belongs to; ports need no forwarding."""
from __future__ import annotations

import asyncio
import os
import pwd

from ..bootstrap import BootstrapRunner
from ..errors import AccountError
from .base import CommandResult, Host

# What a workload inherits from the hub's environment (nothing secret).
ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ")


class LocalHost(Host):
    """A local account (``username``; the hub's own when it is not root) in ``home``, running
    the bootstrap program with ``python``."""

    def __init__(self, username: str, home: str, python: str, *, allow_root: bool = False):
        """``allow_root``: a service's own account (commands it runs itself, e.g. ``squeue``)
        may be root; a user's workload never is."""
        self.username, self.home, self.python = username, home, python
        self.allow_root = allow_root

    async def open(self, *, wait: float, report=None) -> None:
        return None

    def _process(self) -> dict:
        env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
        env["HOME"] = self.home  # the user's files, not the hub's
        process = {"python": self.python, "env": env,
                   "cwd": self.home if os.path.isdir(self.home) else "/"}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(self.username)
            except KeyError:
                raise AccountError(f"The Unix account {self.username!r} no longer exists.") \
                    from None
            if pw.pw_uid == 0 and not self.allow_root:
                raise AccountError("NebulaHub never runs a server as root.")
            env.update(USER=pw.pw_name, LOGNAME=pw.pw_name, SHELL=pw.pw_shell or "/bin/sh")
            if pw.pw_uid != 0:
                process.update(user=pw.pw_uid, group=pw.pw_gid)
        return process

    async def run(self, argv: list[str], *, input: str | None = None,
                  env: dict[str, str] | None = None, timeout: float = 60) -> CommandResult:
        process = self._process()
        process["env"].update(env or {})
        account = {k: process[k] for k in ("user", "group") if k in process}
        if account:
            account.update(extra_groups=[], umask=0o077)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=process["env"], cwd=process["cwd"],
            start_new_session=True, **account)
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(input.encode() if input is not None else None), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return CommandResult(proc.returncode, out.decode(errors="replace"),
                             err.decode(errors="replace"))

    async def exchange(self, argv: list[str], data: bytes = b"", *, timeout: float = 600
                       ) -> tuple[int, bytes, str]:
        process = self._process()
        account = {k: process[k] for k in ("user", "group") if k in process}
        if account:
            account.update(extra_groups=[], umask=0o077)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=process["env"], cwd=process["cwd"],
            start_new_session=True, **account)
        try:
            out, err = await asyncio.wait_for(proc.communicate(data), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode, out, err.decode(errors="replace")

    async def bootstrap(self, request: dict, on_event=None) -> dict:
        return await BootstrapRunner(on_event=on_event).run_local(request=request,
                                                                   **self._process())

    async def forward_to_machine(self, port: int, local_port: int = 0) -> int:
        return port

    async def forward_to_hub(self, host: str, port: int, remote_port: int = 0
                             ) -> tuple[str, int]:
        return host, port

    async def port_open(self, port: int) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        return True

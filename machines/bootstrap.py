"""Run the bootstrap program on a host: over an SSH connection or as a local process.

The program text (``remote/bootstrap.py``) travels over the channel, behind a fixed loader in
argv; the request, which may hold the API token, follows on stdin. One code path serves the
``local`` provider, SSH hosts and OpenNebula VMs alike.
"""
from __future__ import annotations

import asyncio
import json
import shlex
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Awaitable, Callable

import asyncssh

from .errors import BootstrapFailed

EVENT = "NEBULAHUB-EVENT "
RESULT = "NEBULAHUB-RESULT "

# Fixed, secret-free argv: read the program length, the program, then hand over to it.
LOADER = (
    "import sys;n=int(sys.stdin.buffer.readline());"
    "exec(compile(sys.stdin.buffer.read(n),'nebulahub-bootstrap','exec'))"
)

ProgressCallback = Callable[[dict], Awaitable[None] | None]


def program_text() -> bytes:
    return (resources.files("machines") / "remote" / "bootstrap.py").read_bytes()


def remote_command(python: str) -> str:
    return f"{shlex.quote(python)} -c {shlex.quote(LOADER)}"


def encode_input(request: dict) -> bytes:
    program = program_text()
    return b"%d\n" % len(program) + program + json.dumps(request).encode() + b"\n"


@dataclass
class BootstrapRunner:
    """Runs one bootstrap action and collects its events and result."""

    on_event: ProgressCallback | None = None
    events: list[dict] = field(default_factory=list)

    async def _handle_line(self, line: str) -> dict | None:
        if line.startswith(EVENT):
            event = json.loads(line[len(EVENT):])
            self.events.append(event)
            if self.on_event:
                r = self.on_event(event)
                if asyncio.iscoroutine(r):
                    await r
        elif line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
        return None

    async def _drive(self, writer, reader, request: dict) -> tuple[dict | None, list[str]]:
        writer.write(encode_input(request))
        writer.write_eof()
        result, other = None, []
        while True:
            raw = await reader.readline()
            if not raw:
                break
            line = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            line = line.rstrip("\n")
            got = await self._handle_line(line)
            if got is not None:
                result = got
            elif line:
                other.append(line)
        return result, other

    @staticmethod
    def _finish(result: dict | None, stderr: str, other: list[str]) -> dict:
        if result is None:
            detail = (stderr.strip() or "\n".join(other[-10:]) or "no output").splitlines()[-10:]
            raise BootstrapFailed(
                "The bootstrap program could not run on the host (is python3 installed?):\n"
                + "\n".join(detail)
            )
        if not result.get("ok"):
            error = BootstrapFailed(result.get("error") or "unknown bootstrap error")
            error.log = result.get("log") or ""
            raise error
        return result

    async def run_ssh(self, conn: asyncssh.SSHClientConnection, python: str, request: dict) -> dict:
        async with conn.create_process(remote_command(python), encoding=None) as proc:
            result, other = await self._drive(proc.stdin, proc.stdout, request)
            await proc.wait()
            stderr = (await proc.stderr.read()).decode(errors="replace")
        return self._finish(result, stderr, other)

    async def run_local(self, python: str, request: dict, env: dict[str, str] | None = None, *,
                        user: int | None = None, group: int | None = None,
                        cwd: str | None = None) -> dict:
        """Run as a local process; as the Unix account ``user``/``group`` when given (root hub)."""
        account = {}
        if user is not None:
            account = {"user": user, "group": group, "extra_groups": [], "umask": 0o077}
        proc = await asyncio.create_subprocess_exec(
            python, "-c", LOADER,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True, cwd=cwd, **account,
        )
        stderr_task = asyncio.ensure_future(proc.stderr.read())

        class _Writer:
            def write(self, data):
                proc.stdin.write(data)

            def write_eof(self):
                proc.stdin.close()

        result, other = await self._drive(_Writer(), proc.stdout, request)
        await proc.wait()
        stderr = (await stderr_task).decode(errors="replace")
        return self._finish(result, stderr, other)


def server_request(action: str, workdir: str, **fields: Any) -> dict:
    """A request line for the bootstrap program (``fields`` may include ``token``)."""
    return dict(fields, action=action, workdir=workdir)

"""The host seam: acting on a machine the hub holds, whatever kind it is.

Like httpx's transport interface, callers never ask which kind of host they have: the hub's own
machine (:class:`~machines.hosts.local.LocalHost`) and a machine reached over SSH
(:class:`~machines.hosts.ssh.SshHost`) do the same five things.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class CommandResult:
    """What a command run on a host gave back."""

    returncode: int
    stdout: str
    stderr: str


class Host(abc.ABC):
    """Contract.

    ``await open(wait=seconds, report=None)``
        Reach the machine; a machine that has just started may take ``wait`` seconds to accept
        logins, a known one answers at once or raises :class:`~machines.errors.HostUnreachable`.
        ``report(percent, message)`` hears about the steps a person waits for.
    ``reached_before() -> bool``
        Whether the hub has logged in to it before: only then can a workload be there to stop.
    ``await run(argv, input=None, env=None, timeout=60) -> CommandResult``
        Run one command (an argument list: no shell ever sees it) as the host's account and
        return its exit code and output; what batch systems' submit/status/cancel commands
        and job workers use.
    ``await exchange(argv, data=b"", timeout=600) -> (returncode, stdout_bytes, stderr)``
        ``run`` with bytes in and out: how whole folders travel (a tar stream each way) to and
        from job workers; nothing is decoded or cut.
    ``await bootstrap(request, on_event=None) -> dict``
        Run the bootstrap program (``start`` / ``status`` / ``stop`` a server) on the machine and
        return its result; :class:`~machines.errors.BootstrapFailed` with a sentence otherwise.
    ``await forward_to_machine(port, local_port=0) -> int``
        A port on the hub's loopback that reaches ``port`` on the machine's loopback.
    ``await forward_to_hub(host, port, remote_port=0) -> (host, port)``
        Where a program on the machine reaches the hub's ``host:port``.
    ``await port_open(port) -> bool``
        Cheap liveness: does something listen on the machine's loopback ``port``?
    ``alive() -> bool`` / ``await close()``
        Whether the connection still stands; close it and every forward.
    """

    @abc.abstractmethod
    async def open(self, *, wait: float, report: Callable[[int, str], None] | None = None
                   ) -> None: ...

    def reached_before(self) -> bool:
        return True

    @abc.abstractmethod
    async def run(self, argv: list[str], *, input: str | None = None,
                  env: dict[str, str] | None = None, timeout: float = 60) -> CommandResult: ...

    @abc.abstractmethod
    async def exchange(self, argv: list[str], data: bytes = b"", *, timeout: float = 600
                       ) -> tuple[int, bytes, str]: ...

    @abc.abstractmethod
    async def bootstrap(self, request: dict, on_event: Callable[[dict], None] | None = None
                        ) -> dict: ...

    @abc.abstractmethod
    async def forward_to_machine(self, port: int, local_port: int = 0) -> int: ...

    @abc.abstractmethod
    async def forward_to_hub(self, host: str, port: int, remote_port: int = 0
                             ) -> tuple[str, int]: ...

    @abc.abstractmethod
    async def port_open(self, port: int) -> bool: ...

    def alive(self) -> bool:
        return True

    async def close(self) -> None:
        return None

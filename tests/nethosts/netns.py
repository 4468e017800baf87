"""Network-namespace primitives: ``ip`` commands, namespace processes, sockets inside a namespace."""
from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Iterable, Sequence

_CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


class NetHostError(RuntimeError):
    """Something in building the test network failed; the message says what."""


def run_ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip"] + (["-n", netns] if netns else []) + list(args)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise NetHostError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res


def ip_batch(lines: Iterable[str], netns: str | None = None) -> None:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    text = "".join(line + "\n" for line in lines)
    res = subprocess.run(cmd, input=text, capture_output=True, text=True)
    if res.returncode != 0:
        raise NetHostError(f"{' '.join(cmd)} failed on\n{text}{res.stderr.strip()}")


def netns_list() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def netns_pids(netns: str) -> list[int]:
    res = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    if res.returncode != 0:
        return []
    return [int(p) for p in res.stdout.split()]


def kill_and_wait(pids: Sequence[int], timeout: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if alive(p)]
        if left:
            time.sleep(0.01)


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def socket_in_netns(netns: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created inside network namespace ``netns`` (usable from any thread afterwards).

    setns() affects only the calling thread, so it is done in a throwaway thread.
    """
    box: dict = {}

    def make() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["sock"] = socket.socket(family, type)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["err"] = e

    t = threading.Thread(target=make, name=f"setns-{netns}")
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]
    return box["sock"]


def tcp_port_open(netns: str, ip: str, port: int, timeout: float = 0.2) -> bool:
    """True if ``ip:port`` accepts a TCP connection as seen from inside ``netns``."""
    s = socket_in_netns(netns)
    try:
        s.settimeout(timeout)
        s.connect((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def mac_for(ip: str) -> str:
    """A locally administered MAC derived from the IP: a reused address gets the same MAC, so
    stale ARP entries of the gateway/neighbours never point to a destroyed host's interface."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed)


def listening(pid: int, port: int) -> bool:
    """Is there a TCP socket in LISTEN state on ``port`` in the network namespace of ``pid``?"""
    want = f":{port:04X}"
    try:
        with open(f"/proc/{pid}/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1].endswith(want) and fields[3] == "0A":
                    return True
    except (OSError, StopIteration):
        pass
    return False

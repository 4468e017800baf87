"""A job's files, read safely, and its results delivered where its user asked (fsspec).

The job's folder belongs to the job's account, and the service may be root: every file the
service reads there for a user (a result to download or deliver, a log) is opened without
following a link, and only when the opened file really is inside the folder, so a job cannot
swap a result for a link to another account's file. The default destination is the job's own
folder in the user's home: nothing to deliver. A URL carries no password (the descriptor layer
refuses one):

``file:///path``  copied as the job's own account (what that account may write, nothing more).
``ftp://[user@]host[:port]/path``  anonymous (or the named user without a password), as the
    reference service's FTP upload.
``sftp://user@host[:port]/path``  the service's key (``JobsService.sftp_key_file``); the
    server's host key is pinned at the first delivery of that user to that server and must
    match afterwards.

FTP and SFTP servers are checked like users' own SSH machines (``machines.netguard``): never the
service's own machine, its loopback or the cloud's metadata address, and within the admin's
networks; the checked address is the one connected to.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import stat
from typing import BinaryIO, Optional
from urllib.parse import urlsplit

import fsspec

from machines.hosts import LocalHost

CHUNK = 1 << 20


class UnsafeFile(LookupError):
    """Not a regular file inside the job's folder (a link, a device, gone)."""


def open_in(folder: str, rel: str, owner: Optional[int] = None) -> BinaryIO:
    """Open ``folder/rel`` for reading, refusing links and anything outside ``folder`` (which
    must belong to ``owner`` when given: the job's account, not whoever a link points at)."""
    real_folder = os.path.realpath(folder)
    try:
        if owner is not None and os.stat(real_folder).st_uid != owner:
            raise UnsafeFile(rel)
    except OSError:
        raise UnsafeFile(rel) from None
    path = os.path.join(real_folder, rel)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise UnsafeFile(rel) from None
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
        if not opened.startswith(real_folder + os.sep) or not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFile(rel)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _filesystem(url: str, address: str, key_file: str, host_key=None):
    parts = urlsplit(url)
    if parts.scheme == "ftp":
        return fsspec.filesystem("ftp", host=address, port=parts.port or 21,
                                 username=parts.username or "anonymous", password="",
                                 skip_instance_cache=True)
    if parts.scheme == "sftp":
        return fsspec.filesystem("sftp", host=address, port=parts.port or 22,
                                 username=parts.username, client_keys=[key_file] if key_file
                                 else [], known_hosts=([host_key], [], []), agent_path=None,
                                 skip_instance_cache=True)
    raise ValueError(f"results cannot go to {parts.scheme}:// URLs")


def deliver_remote(workdir: str, results: list[str], url: str, address: str,
                   key_file: str = "", host_key=None) -> None:
    """Copy each result (relative to ``workdir``) under the FTP/SFTP URL's folder, reached at
    the checked ``address``."""
    fs = _filesystem(url, address, key_file, host_key)
    base = urlsplit(url).path or "/"
    for rel in results:
        target = posixpath.join(base, rel)
        parent = posixpath.dirname(target)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with open_in(workdir, rel) as src, fs.open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)


async def deliver_local(workdir: str, results: list[str], url: str, account: LocalHost) -> None:
    """``file://`` destinations: copied by the job's own account."""
    base = urlsplit(url).path
    for rel in results:
        target = os.path.join(base, rel)
        for argv in (["mkdir", "-p", "--", os.path.dirname(target)],
                     ["cp", "--", os.path.join(workdir, rel), target]):
            result = await account.run(argv, timeout=600)
            if result.returncode != 0:
                raise OSError(f"{result.stderr.strip()[-300:] or argv[0] + ' failed'}")


def host_and_port(url: str) -> tuple[str, int, Optional[str]]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or {"ftp": 21, "sftp": 22}.get(parts.scheme, 0), \
        parts.scheme

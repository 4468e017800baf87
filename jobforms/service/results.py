"""Delivering a job's results to the URL its user gave (FTP, SFTP, a local folder) with fsspec.

The default destination is the job's own folder in the user's home: nothing to deliver. A URL
carries no password (the descriptor layer refuses one): FTP is anonymous or as the named user
without a password, SFTP logs in with the service's key (``JobsService.sftp_key_file``: its public
half goes into the destination account's authorized_keys).
"""
from __future__ import annotations

import os
import posixpath
from urllib.parse import urlsplit

import fsspec


def _filesystem(url: str, key_file: str = ""):
    parts = urlsplit(url)
    if parts.scheme == "ftp":
        return fsspec.filesystem("ftp", host=parts.hostname, port=parts.port or 21,
                                 username=parts.username or "anonymous", password=""), parts.path
    if parts.scheme == "sftp":
        return fsspec.filesystem("sftp", host=parts.hostname, port=parts.port or 22,
                                 username=parts.username,
                                 client_keys=[key_file] if key_file else None,
                                 known_hosts=None), parts.path
    if parts.scheme == "file":
        return fsspec.filesystem("file"), parts.path
    raise ValueError(f"results cannot go to {parts.scheme}:// URLs")


def deliver(workdir: str, results: list[str], url: str, key_file: str = "") -> None:
    """Copy each result file (relative to ``workdir``) under the URL's folder."""
    fs, base = _filesystem(url, key_file)
    base = base or "/"
    for rel in results:
        target = posixpath.join(base, rel)
        parent = posixpath.dirname(target)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.put_file(os.path.join(workdir, rel), target)

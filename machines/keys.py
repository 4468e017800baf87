"""SSH key material: per-acquisition key pairs, and the per-user pairs used on users' own machines.

Private halves are sealed with the hub's crypt key (:mod:`machines.secretbox`) wherever they are
stored: in machine records (per-acquisition keys) and in the per-user key files.
"""
from __future__ import annotations

import base64
import os

import asyncssh

from .secretbox import SecretBox


def new_spawn_key() -> tuple[str, str]:
    """A fresh ed25519 pair for one spawn: (private key in OpenSSH format, public key line)."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment="nebulahub-spawn")
    return (key.export_private_key("openssh").decode(),
            key.export_public_key("openssh").decode().strip())


class UserKeyStore:
    """One ed25519 pair per user in a hub-private directory (files 0600, directory 0700), the
    private half sealed with the hub's crypt key."""

    def __init__(self, directory: str, box: SecretBox):
        self.directory = os.path.abspath(directory)
        self.box = box

    def _path(self, username: str) -> str:
        # user names may hold '@', '.', unicode: a reversible, filesystem-safe name
        safe = base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")
        return os.path.join(self.directory, f"{safe}.key")

    def _write(self, path: str, private_text: str, *, replace: bool) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.box.seal(private_text))
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # never overwrite a key another spawn made meanwhile
            except FileExistsError:
                pass
            os.unlink(tmp)

    def private_key(self, username: str) -> asyncssh.SSHKey:
        path = self._path(username)
        if not os.path.exists(path):
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"nebulahub-{username}")
            self._write(path, key.export_private_key("openssh").decode(), replace=False)
        with open(path) as f:
            stored = f.read()
        if stored.startswith("-----BEGIN"):  # written in clear by an earlier release: seal it
            self._write(path, stored, replace=True)
            return asyncssh.import_private_key(stored)
        return asyncssh.import_private_key(self.box.open(stored))

    def public_line(self, username: str) -> str:
        return self.private_key(username).export_public_key("openssh").decode().strip()

"""SSH key material: per-spawn key pairs, and the per-user pairs used on users' own resources."""
from __future__ import annotations

import base64
import os

import asyncssh


def new_spawn_key() -> tuple[str, str]:
    """A fresh ed25519 pair for one spawn: (private key in OpenSSH format, public key line)."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment="nebulahub-spawn")
    return (key.export_private_key("openssh").decode(),
            key.export_public_key("openssh").decode().strip())


class UserKeyStore:
    """One ed25519 pair per user in a hub-private directory (files 0600, directory 0700)."""

    def __init__(self, directory: str):
        self.directory = os.path.abspath(directory)

    def _path(self, username: str) -> str:
        # user names may hold '@', '.', unicode: a reversible, filesystem-safe name
        safe = base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")
        return os.path.join(self.directory, f"{safe}.key")

    def private_key(self, username: str) -> asyncssh.SSHKey:
        path = self._path(username)
        if not os.path.exists(path):
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            key = asyncssh.generate_private_key("ssh-ed25519", comment=f"nebulahub-{username}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.export_private_key("openssh"))
        return asyncssh.read_private_key(path)

    def public_line(self, username: str) -> str:
        return self.private_key(username).export_public_key("openssh").decode().strip()

"""SSH host keys pinned across spawns, so a machine whose key changed never gets a user's token.

A server's state forgets everything when the server stops; the machines it ran on do not change
between spawns. Keys of machines that outlive a server are therefore kept here, per ``host:port``:

* scope ``hub``: the admin's machines (the fixed SSH host, the admin's bastion), hub-wide;
* scope ``user:<name>``: a user's own machines and their jump hosts, per user.

VMs are not kept here: an address is reused by another VM with another key, so VM keys live only
in the server's state and go with the VM. Trust on first contact, strict afterwards; a changed key
is accepted only deliberately (``nebulahub hostkeys forget``, or, for a user's own machine, the
spawn form's "trust the new host key" choice).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
from contextlib import contextmanager

HUB_SCOPE = "hub"


def user_scope(username: str) -> str:
    return f"user:{username}"


class HostKeyStore:
    """Pinned keys in a hub-private directory: one JSON file per scope (0600, folder 0700)."""

    def __init__(self, directory: str):
        self.directory = os.path.abspath(os.path.expanduser(directory))

    def _path(self, scope: str) -> str:
        safe = base64.urlsafe_b64encode(scope.encode()).decode().rstrip("=")
        return os.path.join(self.directory, f"{safe}.json")

    @contextmanager
    def _locked(self, scope: str):
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        with open(self._path(scope) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def load(self, scope: str) -> dict[str, str]:
        try:
            with open(self._path(scope)) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        return {k: v for k, v in data.get("keys", {}).items() if isinstance(v, str)}

    def _write(self, scope: str, keys: dict[str, str]) -> None:
        path = self._path(scope)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"scope": scope, "keys": keys}, f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    def pin(self, scope: str, key_id: str, key_line: str) -> None:
        """Record a key seen at first contact; an existing, different pin is never overwritten."""
        with self._locked(scope):
            keys = self.load(scope)
            if key_id in keys:
                return
            keys[key_id] = key_line
            self._write(scope, keys)

    def forget(self, scope: str, key_id: str) -> bool:
        """Drop a pin so the next contact records the machine's (new) key; True if one existed."""
        with self._locked(scope):
            keys = self.load(scope)
            if keys.pop(key_id, None) is None:
                return False
            self._write(scope, keys)
            return True

    def scopes(self) -> dict[str, dict[str, str]]:
        """Every scope with its pins (for ``nebulahub hostkeys list``)."""
        out = {}
        if not os.path.isdir(self.directory):
            return out
        for name in sorted(os.listdir(self.directory)):
            if name.endswith(".json"):
                with open(os.path.join(self.directory, name)) as f:
                    data = json.load(f)
                out[data.get("scope", name)] = data.get("keys", {})
        return out

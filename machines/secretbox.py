"""Private keys at rest: sealed with the hub's crypt key, as JupyterHub seals ``auth_state``.

The key comes from ``$JUPYTERHUB_CRYPT_KEY`` (``;``-separated 32-byte keys, hex or base64, the
first one seals, all of them open: JupyterHub's own rotation rule) or, when that is not set,
from a hub-private key file created on first use (0600). What is stored is a Fernet token:
readable by nobody without the key, which never leaves the hub machine and is never in the
database or the REST API.
"""
from __future__ import annotations

import base64
import binascii
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import SecretError

CRYPT_KEY_ENV = "JUPYTERHUB_CRYPT_KEY"


def _decode_key(text: str) -> bytes:
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 44:
        try:
            raw = base64.urlsafe_b64decode(text)
        except (binascii.Error, ValueError):
            raw = None
    elif len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None or len(raw) != 32:
        raise ValueError("Encryption keys must be 32 bytes, hex or base64-encoded.")
    return raw


class SecretBox:
    """Seal and open short secrets (private keys) with the hub's crypt key(s)."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise ValueError("SecretBox needs at least one key")
        self._fernet = MultiFernet([Fernet(base64.urlsafe_b64encode(k)) for k in keys])

    @classmethod
    def from_environment(cls, key_file: str) -> "SecretBox":
        """Keys from $JUPYTERHUB_CRYPT_KEY, else from ``key_file`` (made 0600 if missing)."""
        env = os.environ.get(CRYPT_KEY_ENV, "").strip()
        if env:
            return cls([_decode_key(k) for k in env.split(";") if k.strip()])
        path = os.path.abspath(os.path.expanduser(key_file))
        try:
            with open(path) as f:
                return cls([_decode_key(f.read())])
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        key = os.urandom(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another hub thread made it first
            with open(path) as f:
                return cls([_decode_key(f.read())])
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
        return cls([key])

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretError(
                "A stored key cannot be decrypted: the hub's crypt key changed "
                f"(${CRYPT_KEY_ENV} or the crypt key file).") from None

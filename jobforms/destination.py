"""Where a job's results go: a new folder in the user's home, or an fsspec URL.

The reference service asked for "an URL for uploading results" (``ftp://10.93.221.96/pub``).
Here the default is a unique folder in the user's home (the service names it after the job); a
user may instead give an ``ftp://``, ``sftp://`` or ``file://`` URL, the schemes an app's
descriptor allows. Only the URL's scheme and shape are checked here; reaching it is the service's
job. Passwords do not belong in a URL: it is stored with the job and shown in its list.
"""
from __future__ import annotations

import enum
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from .paths import MAX_PATH_LENGTH


class DestinationKind(str, enum.Enum):
    """Kinds of result destinations an app may allow."""

    HOME = "home"
    FTP = "ftp"
    SFTP = "sftp"
    FILE = "file"


URL_KINDS = (DestinationKind.FTP, DestinationKind.SFTP, DestinationKind.FILE)


class Destination(BaseModel):
    """A checked result destination: ``url`` None means a new folder in the user's home."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = None

    @property
    def kind(self) -> DestinationKind:
        return DestinationKind.HOME if self.url is None else DestinationKind(urlsplit(self.url).scheme.lower())


def parse_destination(text, allowed: tuple[DestinationKind, ...]) -> Destination:
    """The destination the user typed (empty: their home), or :class:`ValueError` with a sentence."""
    if text is None or (isinstance(text, str) and not text.strip()):
        if DestinationKind.HOME not in allowed:
            raise ValueError("Give a URL for the results: " + _allowed_words(allowed) + ".")
        return Destination()
    if not isinstance(text, str):
        raise ValueError("The result destination must be a URL written as text.")
    url = text.strip()
    if len(url) > MAX_PATH_LENGTH:
        raise ValueError(f"The result URL is longer than {MAX_PATH_LENGTH} characters.")
    if any(not ch.isprintable() or ch.isspace() for ch in url):
        raise ValueError("The result URL must not contain spaces, line breaks or control characters.")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    kinds = {k.value: k for k in allowed if k in URL_KINDS}
    if scheme not in kinds:
        raise ValueError(f"'{_short(url)}' is not a result URL this app accepts: {_allowed_words(allowed)}.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"'{_short(url)}' is not a valid URL ({exc}).") from None
    if parts.query or parts.fragment:
        raise ValueError("The result URL must not have a '?' query or a '#' part.")
    if ".." in parts.path.split("/"):
        raise ValueError("The result URL's path must not contain '..'.")
    if parts.password is not None:
        raise ValueError("Do not put a password in the result URL: it would be stored and shown with the job. "
                         "Use a key or a stored credential.")
    if kinds[scheme] is DestinationKind.FILE:
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError("A file:// URL names a folder on this system: file:///path/to/folder.")
    else:
        if not parts.hostname:
            raise ValueError(f"The result URL needs a server name: {scheme}://server/path.")
        if port == 0:
            raise ValueError("The result URL's port must be between 1 and 65535.")
    return Destination(url=url)


def _allowed_words(allowed) -> str:
    words = {DestinationKind.HOME: "empty for a new folder in your home", DestinationKind.FTP: "ftp://server/path",
             DestinationKind.SFTP: "sftp://[user@]server/path", DestinationKind.FILE: "file:///path"}
    return ", ".join(words[k] for k in allowed)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Which files a user may open: only inside the allowed roots, with no way out.

A user names a file relative to one root. ``..`` components, absolute paths and symlinks whose
target leaves the root are refused with :class:`PathRefused`, whose message is shown as is.

Checking a name and then opening it by name leaves a gap: a folder on the way can be swapped
for a link to somewhere else in between. So :meth:`AllowedRoots.open` opens the file once and
checks what was opened (the descriptor's real path and type), and everything is then read
through that descriptor (:class:`OpenedFile`), never through the name again.
"""
from __future__ import annotations

import errno
import os
import stat
import weakref
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DATA_SUFFIXES = {".txt", ".dat", ".csv", ".tsv", ".tab", ".out", ".parquet", ".pq",
                 ".h5", ".hdf5", ".hdf", ".root"}


class PathRefused(ValueError):
    """The requested path is outside the allowed folders; the message is for the user."""


class OpenedFile:
    """A data file opened once and checked through its descriptor.

    Readers (pandas, pyarrow, h5py, uproot) get ``os.fspath(opened)``, the ``/proc/self/fd/N``
    path, which reopens exactly this file even if its name now leads elsewhere. ``real`` (the
    path that was opened) and ``name`` are for messages and exported notebooks. The descriptor
    is closed by :meth:`close` (or when the object is garbage collected).
    """

    def __init__(self, fd: int, real: Path):
        self.fd = fd
        self.real = real
        self._finalizer = weakref.finalize(self, os.close, fd)

    @classmethod
    def open(cls, path: Path | str) -> "OpenedFile":
        """Open ``path`` (links followed, no folder restriction): for files the app chose itself."""
        return _open_checked(Path(os.path.realpath(path)), None, Path(path).name)

    @property
    def name(self) -> str:
        return self.real.name

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __fspath__(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def close(self) -> None:
        self._finalizer()

    def __repr__(self) -> str:
        return f"OpenedFile({str(self.real)!r}, fd={self.fd})"


def _open_descriptor(path: Path) -> int:
    # O_NOFOLLOW: a last component swapped for a link fails (ELOOP); O_NONBLOCK: a pipe put in
    # place of a data file must not block the server until someone writes to it
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)


def _open_checked(real: Path, base: Path | None, shown: str) -> OpenedFile:
    """Open ``real`` and check the descriptor: a regular file, inside ``base`` (when given)."""
    try:
        fd = _open_descriptor(real)
    except FileNotFoundError:
        raise PathRefused(f"'{shown}' does not exist (any more): was it deleted or moved?") from None
    except PermissionError:
        raise PathRefused(f"You are not allowed to read '{shown}' (file permissions).") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PathRefused(f"'{shown}' turned into a link while it was being opened; it cannot be opened here.") from None
        raise PathRefused(f"'{shown}' cannot be opened: {exc.strerror or exc}.") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise PathRefused(f"'{shown}' is a folder, not a file.")
        if not stat.S_ISREG(mode):
            raise PathRefused(f"'{shown}' is not a regular file (it is a pipe, device or socket).")
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if base is not None and base not in opened.parents:
            raise PathRefused(f"'{shown}' leads outside {base} (a folder on the way was changed while it was "
                              "being opened); it cannot be opened here.")
    except BaseException:
        os.close(fd)
        raise
    return OpenedFile(fd, opened)


@dataclass(frozen=True)
class AllowedRoots:
    """The folders a user may browse, e.g. their home and admin-configured data folders."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, roots) -> "AllowedRoots":
        return cls(tuple(Path(r).expanduser() for r in roots))

    def root(self, name_or_index) -> Path:
        """A root by its index or its path string."""
        if isinstance(name_or_index, int):
            return self.roots[name_or_index]
        for r in self.roots:
            if str(r) == str(name_or_index):
                return r
        raise PathRefused(f"{name_or_index} is not one of your data folders.")

    def resolve(self, root: Path | str, relative: str) -> Path:
        """The real path of ``relative`` inside ``root``, or :class:`PathRefused`.

        Checks the text first (absolute, ``..``) so the message says what was wrong, then the real
        path after following symlinks, so a link pointing outside is refused too.
        """
        base = self.root(str(root))
        text = (relative or "").strip()
        if not text:
            raise PathRefused("Choose a file first.")
        if "\x00" in text:
            raise PathRefused("That file name contains a NUL character.")
        pure = PurePosixPath(text)
        if pure.is_absolute() or text.startswith("~"):
            raise PathRefused(f"'{text}' is an absolute path; give a path inside {base}.")
        if ".." in pure.parts:
            raise PathRefused(f"'{text}' uses '..' to leave the folder; only files inside {base} can be opened.")
        real_base = Path(os.path.realpath(base))
        real = Path(os.path.realpath(base / pure))
        if real != real_base and real_base not in real.parents:
            raise PathRefused(f"'{text}' is a link leading outside {base}; it cannot be opened here.")
        return real

    def open(self, root: Path | str, relative: str) -> OpenedFile:
        """Open ``relative`` inside ``root`` once, and check what was opened (see the module docstring)."""
        real = self.resolve(root, relative)
        base = Path(os.path.realpath(self.root(str(root))))
        return _open_checked(real, base, relative.strip())

    def list_files(self, root: Path | str, max_files: int = 500, max_depth: int = 4) -> list[str]:
        """Data-looking files under ``root`` (relative paths, sorted), skipping hidden folders.

        Links leading outside the root are left out rather than listed and refused later.
        """
        base = self.root(str(root))
        real_base = os.path.realpath(base)
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            depth = Path(dirpath).relative_to(base).parts
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if len(depth) < max_depth else []
            for name in sorted(filenames):
                if name.startswith(".") or Path(name).suffix.lower() not in DATA_SUFFIXES:
                    continue
                full = os.path.join(dirpath, name)
                real = os.path.realpath(full)
                if not (real == real_base or real.startswith(real_base.rstrip(os.sep) + os.sep)):
                    continue
                found.append(os.path.relpath(full, base))
                if len(found) >= max_files:
                    return sorted(found)
        return sorted(found)

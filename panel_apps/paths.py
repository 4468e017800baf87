"""Which files a user may open: only inside the allowed roots, with no way out.

A user names a file relative to one root. ``..`` components, absolute paths and symlinks whose
target leaves the root are refused with :class:`PathRefused`, whose message is shown as is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DATA_SUFFIXES = {".txt", ".dat", ".csv", ".tsv", ".tab", ".out", ".parquet", ".pq",
                 ".h5", ".hdf5", ".hdf", ".root"}


class PathRefused(ValueError):
    """The requested path is outside the allowed folders; the message is for the user."""


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

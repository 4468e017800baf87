"""The columnar cache: each number column of a converted file is one contiguous float64 file,
mapped into memory (``mmap``) instead of read.

A plot reads nothing: its columns are views of the mapping, so every open plot (browser tab) and
every process plotting the same file shares one copy, the one in the operating system's page
cache; data larger than memory is paged in and out by the kernel while it is aggregated. Each
entry is a folder ``<stem>-<digest>.columns/`` holding ``c<i>.f64`` per column (raw little-endian
float64, what ``numpy`` maps without conversion) and ``meta.json``: the source's identity, the row
count, the column names, lines skipped, and per-column statistics (smallest and largest finite
value, smallest value above zero) that give axis ranges without a pass over the data.

An entry is trusted only if it is this user's own (folder and every file owned by the user, no
links, opened through descriptors) and records the identity of the source being opened; it is
built in a hidden temporary folder and renamed into place when complete (:class:`CacheWriter`).
"""
from __future__ import annotations

import json
import math
import mmap
import os
import shutil
import stat
import tempfile
import threading
import warnings
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FORMAT = 1
META = "meta.json"
SUFFIX = ".columns"
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class ColumnStats:
    """What an axis range needs of a column: finite extent and the smallest value above zero."""

    lo: float = math.nan  # smallest finite value (nan: none)
    hi: float = math.nan
    lo_positive: float = math.nan  # smallest value > 0 (nan: none)
    not_finite: int = 0  # NaN and infinite values

    @classmethod
    def of(cls, values: np.ndarray) -> "ColumnStats":
        """Statistics of ``values`` (per chunk while converting: later plots never scan the data)."""
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN chunks
            lo, hi = np.nanmin(values, initial=np.inf), np.nanmax(values, initial=-np.inf)
            not_finite = 0
            if not (np.isfinite(lo) and np.isfinite(hi)) or np.isnan(np.add.reduce(values)):
                finite = np.isfinite(values)
                not_finite = int(values.size - np.count_nonzero(finite))
                if not_finite == values.size:
                    return cls(not_finite=not_finite)
                lo, hi = values[finite].min(), values[finite].max()
            positive = np.min(values, where=values > 0, initial=np.inf)
        return cls(float(lo), float(hi), float(positive) if math.isfinite(positive) else math.nan, not_finite)

    def merge(self, other: "ColumnStats") -> "ColumnStats":
        return ColumnStats(_nanmin(self.lo, other.lo), _nanmax(self.hi, other.hi),
                           _nanmin(self.lo_positive, other.lo_positive), self.not_finite + other.not_finite)


def _nanmin(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else min(a, b)


def _nanmax(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


class CachedColumns:
    """A cache entry's columns, mapped read-only; one object per entry and process (see :func:`open_entry`).

    ``rows`` rows of the columns ``names``; :meth:`column` maps a column on first use and returns
    a read-only float64 array viewing the mapping (no copy). ``partial`` is True for the rows of a
    conversion still under way (:meth:`CacheWriter.view`).
    """

    def __init__(self, folder_fd: int, files: dict[str, str], rows: int, stats: dict[str, ColumnStats],
                 skipped_lines: int = 0, partial: bool = False, path: Path | None = None,
                 identity: dict | None = None):
        self._fd = folder_fd
        self._finalizer = weakref.finalize(self, os.close, folder_fd)
        self.files, self.rows, self.stats = files, rows, stats
        self.skipped_lines, self.partial, self.path = skipped_lines, partial, path
        self.identity = identity  # the source it records (a Dask worker opens the entry by it)
        self._mapped: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.files)

    def column(self, name: str) -> np.ndarray:
        """The whole column ``name`` as a read-only array on the mapping."""
        with self._lock:
            if name not in self._mapped:
                self._mapped[name] = self._map(name)
            return self._mapped[name]

    def _map(self, name: str) -> np.ndarray:
        if self.rows == 0:
            return np.empty(0, dtype="<f8")
        fd = os.open(self.files[name], _FLAGS, dir_fd=self._fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size < self.rows * 8:
                raise OSError(f"cache column {self.files[name]} is not the one written")
            mapping = mmap.mmap(fd, self.rows * 8, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        array = np.frombuffer(mapping, dtype="<f8", count=self.rows)
        array.flags.writeable = False
        return array

    def nbytes(self, names) -> int:
        return self.rows * 8 * len(list(names))


_OPEN: "weakref.WeakValueDictionary[tuple, CachedColumns]" = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()


def entry_path(folder: Path, stem: str, digest: str) -> Path:
    return Path(folder) / f"{stem}-{digest}{SUFFIX}"


def open_entry(entry: Path, identity: dict) -> CachedColumns | None:
    """The trusted entry at ``entry`` recording ``identity``, mapped once per process; else None.

    Checked on every call (owner, no links, sizes, identity); every tab of this process plotting
    the file then gets the same object, hence the same mapping.
    """
    try:
        fd = os.open(entry, _FLAGS | os.O_DIRECTORY)
    except OSError:
        return None
    keep_fd = False
    try:
        st = os.fstat(fd)
        meta = _read_meta(fd) if st.st_uid == os.geteuid() else None
        if meta is None or meta.get("format") != FORMAT or meta.get("identity") != identity:
            return None
        files = {name: f"c{i}.f64" for i, name in enumerate(meta["names"])}
        signature = [st.st_dev, st.st_ino, st.st_mtime_ns]
        for file in [META, *files.values()]:
            cst = os.stat(file, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISREG(cst.st_mode) or cst.st_uid != os.geteuid() or \
                    (file != META and cst.st_size != meta["rows"] * 8):
                return None
            signature += [cst.st_ino, cst.st_mtime_ns, cst.st_ctime_ns]
        key = (str(entry), tuple(signature), json.dumps(identity, sort_keys=True))
        with _OPEN_LOCK:
            shared = _OPEN.get(key)
            if shared is None:
                shared = CachedColumns(fd, files, int(meta["rows"]),
                                       {n: ColumnStats(**v) for n, v in meta["stats"].items()},
                                       int(meta.get("skipped_lines", 0)), path=Path(entry), identity=identity)
                keep_fd = True
                _OPEN[key] = shared
            return shared
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        if not keep_fd:
            os.close(fd)


def _read_meta(folder_fd: int) -> dict | None:
    try:
        fd = os.open(META, _FLAGS, dir_fd=folder_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > 16 << 20:
            return None
        try:
            meta = json.loads(fh.read())
        except ValueError:
            return None
    return meta if isinstance(meta, dict) else None


class CacheWriter:
    """Builds an entry in a hidden folder next to ``target``; :meth:`commit` puts it in place.

    :meth:`append` adds rows (one float64 array per column, in order); :meth:`view` maps the rows
    written so far, for a first look while the conversion goes on.
    """

    def __init__(self, target: Path, names: list[str], identity: dict):
        self.target, self.names, self.identity = Path(target), list(names), identity
        self.tmp = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".part"))
        self.files = {name: f"c{i}.f64" for i, name in enumerate(self.names)}
        self._handles = {name: open(self.tmp / file, "wb") for name, file in self.files.items()}
        self.rows = 0
        self.stats = {name: ColumnStats() for name in self.names}

    def append(self, columns: dict[str, np.ndarray], stats: dict[str, ColumnStats] | None = None) -> None:
        """Add rows; ``stats`` of these rows may be given (computed where the rows were parsed)."""
        n = None
        for name in self.names:
            values = np.ascontiguousarray(columns[name], dtype="<f8")
            n = values.size if n is None else n
            if values.size != n:
                raise ValueError("columns of one chunk differ in length")
            self._handles[name].write(memoryview(values).cast("B"))
            chunk = stats[name] if stats is not None else ColumnStats.of(values)
            self.stats[name] = self.stats[name].merge(chunk)
        self.rows += n or 0

    def view(self) -> CachedColumns:
        """The rows written so far, mapped (marked partial)."""
        for fh in self._handles.values():
            fh.flush()
        fd = os.open(self.tmp, _FLAGS | os.O_DIRECTORY)
        return CachedColumns(fd, dict(self.files), self.rows, dict(self.stats), partial=True, path=self.tmp)

    def commit(self, skipped_lines: int = 0) -> Path:
        """Write the metadata and rename the entry into place (an existing untrusted one is replaced)."""
        self._close()
        meta = {"format": FORMAT, "identity": self.identity, "rows": self.rows, "names": self.names,
                "skipped_lines": skipped_lines, "stats": {n: asdict(s) for n, s in self.stats.items()}}
        (self.tmp / META).write_text(json.dumps(meta))
        if open_entry(self.target, self.identity) is None:  # another process may have finished first
            discard(self.target)
            try:
                os.rename(self.tmp, self.target)
            except OSError:  # lost a race with another conversion of the same file
                if open_entry(self.target, self.identity) is None:
                    raise
        self.abort()
        return self.target

    def abort(self) -> None:
        """Remove the temporary folder (after :meth:`commit`, or when the conversion failed)."""
        self._close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _close(self) -> None:
        for fh in self._handles.values():
            fh.close()


def discard(path: Path) -> None:
    """Remove whatever is at ``path`` in the private cache folder (a file, a link or a folder)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        trash = Path(tempfile.mkdtemp(dir=Path(path).parent, prefix=".discarded."))
        os.rename(path, trash / "old")
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.unlink(path)

"""Convert text tables once into the columnar cache (:mod:`panel_apps.colcache`), on both cores.

The cache entry is named after the source's real path, size, modification time and reader
options, so an edited file is converted again and an unchanged one never is. The file is cut into
segments at line ends; pandas' C parser reads them on ``workers`` threads at once (its tokenizer
and number conversion release the GIL) while the calling thread appends the finished segments,
in file order, to the cache's column files. At most ``workers + 2`` segments are in memory,
whatever the file size. The first segment is small and parsed alone first: its rows give a first
look at the data (``on_rows``) within a fraction of a second, refined as segments follow.
``pyarrow.csv`` is not used because it cannot split on runs of whitespace nor skip comment lines,
the common case for lab output.

Lines with too many values are refused with the line named, or, with the reader option
``skip_bad_lines``, skipped (as are lines with text in a number column) and counted: the data
lines of a segment that gave no row. The count is kept in the cache and shown to the student.

A cache is trusted only if it can be nobody else's: the folder is the user's own (created 0700,
a folder of another user or a link is refused, a too open one is repaired), the entry is owned
by the user, and the source identity it records (device, inode, size, mtime, reader options) is
the one of the file being opened. A conversion is kept only when the source did not change while
it was read and was read to its end: the temporary entry is renamed into place after those
checks, never before.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .colcache import CachedColumns, CacheWriter, ColumnStats, entry_path, open_entry
from .loaders import LoadError, TextOptions, display_name, parser_error_detail

ProgressCallback = Callable[[float, int], None]  # (fraction of bytes read, rows converted so far)
RowsCallback = Callable[[CachedColumns], None]  # the rows converted so far, mapped (partial)
FIRST_SEGMENT_BYTES = 2 << 20  # a first look after ~15,000 rows of a wide file
SEGMENT_BYTES = 24 << 20


def private_folder(folder: Path) -> Path:
    """``folder``, created 0700 if missing; LoadError if it is a link or another user's folder."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode):
        raise LoadError(f"The cache folder {folder} is a link; the app only uses a real folder of your own "
                        "there. Remove the link (or ask your admin).")
    if not stat.S_ISDIR(st.st_mode):
        raise LoadError(f"The cache folder {folder} is not a folder; remove it (or ask your admin).")
    if st.st_uid != os.geteuid():
        raise LoadError(f"The cache folder {folder} belongs to another user (uid {st.st_uid}); the app will not "
                        "use it. Ask your admin to remove it.")
    if st.st_mode & 0o077:  # ours, but others could read or plant files: close it
        os.chmod(folder, 0o700)
    return folder


def _identity(st: os.stat_result, options: TextOptions, numeric) -> dict:
    return {"device": st.st_dev, "inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "options": options.to_dict(), "numeric": None if numeric is None else list(numeric)}


def cache_path(source, options: TextOptions, cache_dir: Path, numeric=None, st: os.stat_result | None = None) -> Path:
    """Where the cache entry of ``source`` lives; changes when the file or the options change."""
    st = st or os.stat(source)
    real = str(getattr(source, "real", None) or os.path.realpath(source))
    key = json.dumps([real, st.st_size, st.st_mtime_ns, options.to_dict()]
                     + ([list(numeric)] if numeric is not None else []), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return entry_path(Path(cache_dir), Path(display_name(source)).stem[:40], digest)


def ensure_cache(source, options: TextOptions, numeric: list[str] | None, cache_dir: Path,
                 progress: ProgressCallback | None = None, chunk_rows: int = 1 << 20,
                 on_rows: RowsCallback | None = None, workers: int | None = None) -> CachedColumns:
    """The cache entry of text file ``source`` (a path or an OpenedFile), converting it first if needed.

    ``numeric`` names the columns to keep, as float64 (text columns cannot be plotted and are not
    stored); None means all. ``cache_dir`` must be (or becomes) the user's private folder.
    ``progress`` is called after every ``chunk_rows`` rows at most; ``on_rows`` after each segment with
    the rows so far. Raises :class:`LoadError` with a readable message for ragged rows, text in a
    number column, a file that changed while it was converted, a vanished or unreadable file, or
    a cache folder that is not the user's own.
    """
    name = display_name(source)
    folder = private_folder(Path(cache_dir))
    try:
        raw = open(source, "rb")  # an OpenedFile: its descriptor, whatever the name leads to now
    except FileNotFoundError:
        raise LoadError(f"'{name}' does not exist (any more): was it deleted or moved?") from None
    except PermissionError:
        raise LoadError(f"You are not allowed to read '{name}' (file permissions).") from None
    with raw:
        before = os.fstat(raw.fileno())
        identity = _identity(before, options, numeric)
        target = cache_path(source, options, folder, numeric, st=before)
        cached = open_entry(target, identity)
        if cached is None:
            _Conversion(raw.fileno(), name, before, options, numeric, target, identity, progress, chunk_rows,
                        on_rows, workers or min(2, os.cpu_count() or 1)).run()
            cached = open_entry(target, identity)
            if cached is None:
                raise LoadError(f"The converted copy of '{name}' could not be opened; press 'Load and plot' again.")
        if progress:
            progress(1.0, cached.rows)
        return cached


class _Conversion:
    """One text file read into a :class:`~panel_apps.colcache.CacheWriter`, segment by segment."""

    def __init__(self, fd, name, before, options: TextOptions, numeric, target, identity, progress, chunk_rows,
                 on_rows, workers):
        self.fd, self.name, self.before, self.options, self.numeric = fd, name, before, options, numeric
        self.target, self.identity, self.progress, self.chunk_rows = target, identity, progress, chunk_rows
        self.on_rows, self.workers = on_rows, workers
        self.size = before.st_size
        self.skipped = 0
        self._count_lock = threading.Lock()

    def segments(self) -> list[tuple[int, int]]:
        """(start, end) byte ranges ending at line ends: a small first one, then ``SEGMENT_BYTES`` each."""
        bounds, at = [0], 0
        while at < self.size:
            step = FIRST_SEGMENT_BYTES if len(bounds) == 1 else SEGMENT_BYTES
            at = min(self.size, at + step)
            if at < self.size:
                tail = os.pread(self.fd, 1 << 20, at)
                newline = tail.find(b"\n")
                at = self.size if newline < 0 else at + newline + 1
            bounds.append(at)
        return list(zip(bounds[:-1], bounds[1:]))

    def run(self) -> None:
        segments = self.segments()
        writer = None
        rows, done_bytes = 0, 0
        with ThreadPoolExecutor(self.workers) as pool:
            try:
                first = self.parse(0, segments[0], None, 0)
                names = list(first[0][0]) if first else self._names_of_empty_first()
                writer = CacheWriter(self.target, names, self.identity)
                pending = []
                window = self.workers + 1
                index = 1
                results = iter([first])
                for seg_no in range(len(segments)):
                    while index < len(segments) and len(pending) < window:
                        pending.append(pool.submit(self.parse, index, segments[index], names, rows))
                        index += 1
                    chunks = next(results) if seg_no == 0 else pending.pop(0).result()
                    for chunk, stats in chunks:
                        writer.append(chunk, stats)
                        rows = writer.rows
                        if self.progress:
                            start, end = segments[seg_no]
                            self.progress(min(1.0, (done_bytes + end - start) / max(1, self.size)), rows)
                    done_bytes += segments[seg_no][1] - segments[seg_no][0]
                    if self.on_rows and writer.rows:
                        self.on_rows(writer.view())
                self._check_complete(done_bytes)
                if rows == 0:
                    raise LoadError(f"'{self.name}' has zero data rows.")
                writer.commit(self.skipped)
            except BaseException:
                for future in pending if writer is not None else []:
                    future.cancel()
                if writer is not None:
                    writer.abort()
                raise

    def _names_of_empty_first(self) -> list[str]:
        raise LoadError(f"'{self.name}' has no data rows.")

    def kwargs(self, names: list[str] | None) -> dict:
        kw = self.options.pandas_kwargs()
        kw["on_bad_lines"] = "skip" if self.options.skip_bad_lines else "error"
        if names is not None:  # a later segment: no header, no leading rows to skip
            kw.update(header=None, skiprows=0, names=self._all_names(), usecols=names)
        elif self.numeric is not None:
            kw["usecols"] = list(self.numeric)
        kw["dtype"] = "float64"
        return kw

    def _all_names(self) -> list[str]:
        return list(self.options.names) or self._header_names

    def parse(self, number: int, segment: tuple[int, int], names: list[str] | None, rows_before: int) -> list:
        """The segment's rows as (float64 array per column, their statistics), ``chunk_rows`` rows each."""
        start, end = segment
        data = os.pread(self.fd, end - start, start)
        if names is None:
            self._header_names = self._read_header_names(data)
        kw = self.kwargs(names)
        try:
            try:
                frames = list(pd.read_csv(io.BytesIO(data), chunksize=self.chunk_rows, **kw))
            except ValueError as exc:
                if isinstance(exc, pd.errors.ParserError) or not self.options.skip_bad_lines:
                    raise
                frames = [self._without_text_rows(data, kw)]
        except pd.errors.EmptyDataError:
            return []
        except pd.errors.ParserError as exc:
            self._check_complete(None)  # a file cut mid-row: say that instead
            raise LoadError(f"'{self.name}' has rows with different numbers of values: "
                            f"{_absolute_line(parser_error_detail(exc), self._lines_before(start))}") from None
        except ValueError as exc:
            self._check_complete(None)
            raise LoadError(f"'{self.name}' has text where numbers were expected near row {rows_before + 1:,}: "
                            f"{exc}") from None
        except OSError as exc:
            raise LoadError(f"'{self.name}' could not be read: {exc.strerror or exc}.") from None
        if self.options.skip_bad_lines:  # what pandas skipped: the data lines that gave no row
            skipped = self._data_lines(data, first=names is None) - sum(len(f) for f in frames)
            with self._count_lock:
                self.skipped += skipped
        out = []
        for frame in frames:
            frame.columns = [str(c) for c in frame.columns]
            columns = {c: frame[c].to_numpy(dtype=np.float64) for c in frame.columns}
            out.append((columns, {c: ColumnStats.of(v) for c, v in columns.items()}))
        return out

    def _read_header_names(self, data: bytes) -> list[str]:
        kw = self.options.pandas_kwargs()
        kw.pop("on_bad_lines", None)
        head = pd.read_csv(io.BytesIO(data), nrows=0, **kw)
        return [str(c) for c in head.columns]

    def _without_text_rows(self, data: bytes, kw: dict) -> pd.DataFrame:
        """Skip-bad-lines mode: rows holding text in a number column are dropped (and counted as
        lines that gave no row)."""
        frame = pd.read_csv(io.BytesIO(data), **{**kw, "dtype": str, "keep_default_na": False})
        numbers = frame.apply(pd.to_numeric, errors="coerce")
        blank = frame.apply(lambda col: col.str.strip().isin(["", "nan", "NaN", "NA", "N/A", "null"]))
        bad = (numbers.isna() & ~blank).any(axis=1)
        return numbers[~bad].astype("float64")

    def _data_lines(self, data: bytes, first: bool) -> int:
        """Lines of a segment that should give a row: not blank, not comments, not the header."""
        comment = (self.options.comment or "").encode() or None
        lines = [line for line in data.split(b"\n")[(self.options.skiprows if first else 0):]
                 if line.strip() and not (comment and line.lstrip().startswith(comment))]
        return len(lines) - (1 if first and self.options.header else 0)

    def _lines_before(self, start: int) -> int:
        count, at = 0, 0
        while at < start:
            block = os.pread(self.fd, min(64 << 20, start - at), at)
            count += block.count(b"\n")
            at += len(block)
        return count

    def _check_complete(self, bytes_read: int | None) -> None:
        """LoadError unless the file is unchanged since conversion began (and was read to its end)."""
        after = os.fstat(self.fd)
        before = self.before
        if (after.st_size, after.st_mtime_ns, after.st_ino, after.st_dev) != \
                (before.st_size, before.st_mtime_ns, before.st_ino, before.st_dev):
            raise LoadError(f"'{self.name}' changed while it was being converted ({before.st_size:,} bytes when "
                            f"conversion started, {after.st_size:,} now); nothing was kept. Wait until the program "
                            "writing it has finished, then press 'Load and plot' again.")
        if bytes_read is not None and bytes_read != before.st_size:
            raise LoadError(f"'{self.name}' was not read to its end ({bytes_read:,} of {before.st_size:,} bytes); "
                            "nothing was kept. Press 'Load and plot' to try again.")


def _absolute_line(detail: str, lines_before: int) -> str:
    """pandas counts lines within the segment it read: add the lines before the segment."""
    return re.sub(r"^line (\d+)", lambda m: f"line {int(m.group(1)) + lines_before:,}", detail)

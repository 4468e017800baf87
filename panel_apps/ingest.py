"""Convert text tables once into a columnar Parquet cache, streaming, with progress.

The cache file is named after the source's real path, size, modification time and reader
options, so an edited file is converted again and an unchanged one never is. Conversion reads the
text in chunks of ``chunk_rows`` (memory stays bounded whatever the file size) with pandas' C
parser, and a second thread writes each chunk to Parquet while the next one is parsed: measured
on the seed-size file this costs about the same wall time as a single ``pandas.read_csv``
(see ``benchmarks/bench_plot.py``). ``pyarrow.csv.open_csv`` is not used because it cannot split
on runs of whitespace nor skip comment lines, the common case for lab output.

A cache is trusted only if it can be nobody else's: the folder is the user's own (created 0700,
a folder of another user or a link is refused, a too open one is repaired), the file is owned by
the user, and the source identity it records in its key-value metadata (device, inode, size,
mtime, reader options) is the one of the file being opened. A conversion is kept only when the
source did not change while it was read and was read to its end: the temporary file is renamed
into place after those checks, never before.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .loaders import LoadError, TextOptions, display_name, parser_error_detail

ProgressCallback = Callable[[float, int], None]  # (fraction of bytes read, rows converted so far)
IDENTITY_KEY = b"nebulahub.source"  # Parquet key-value metadata: which source a cache was made from


class _CountingReader:
    """A binary file wrapper that counts bytes handed to the parser (progress, and the end check)."""

    def __init__(self, fh):
        self._fh = fh
        self.bytes_read = 0

    def read(self, n=-1):
        data = self._fh.read(n)
        self.bytes_read += len(data)
        return data

    def __iter__(self):
        return iter(self._fh)

    def __getattr__(self, name):
        return getattr(self._fh, name)


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
    """Where the Parquet copy of ``source`` lives; changes when the file or the options change."""
    st = st or os.stat(source)
    real = str(getattr(source, "real", None) or os.path.realpath(source))
    key = json.dumps([real, st.st_size, st.st_mtime_ns, options.to_dict()]
                     + ([list(numeric)] if numeric is not None else []), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path(cache_dir) / f"{Path(display_name(source)).stem[:40]}-{digest}.parquet"


def ensure_parquet(source, options: TextOptions, numeric: list[str] | None, cache_dir: Path,
                   progress: ProgressCallback | None = None, chunk_rows: int = 500_000) -> Path:
    """The Parquet cache of text file ``source`` (a path or an OpenedFile), converting it first if needed.

    ``numeric`` names the columns to store as float64 (others are kept as text); None means all.
    ``cache_dir`` must be (or becomes) the user's private folder. Raises :class:`LoadError` with a
    readable message for ragged rows, text in a number column, a file that changed while it was
    converted, a vanished or unreadable file, or a cache folder that is not the user's own.
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
        rows = _trusted_rows(target, identity)
        if rows is not None:
            if progress:
                progress(1.0, rows)
            return target
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
        try:
            _convert(raw, name, before, options, numeric, Path(tmp), identity, progress, chunk_rows)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return target


def _trusted_rows(target: Path, identity: dict) -> int | None:
    """Rows of the cache at ``target`` if it is this user's and records ``identity``; else None."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return None
        try:
            meta = pq.read_metadata(fh)
            recorded = json.loads((meta.metadata or {}).get(IDENTITY_KEY, b"null"))
        except Exception:  # damaged or not Parquet: converted again
            return None
    return meta.num_rows if recorded == identity else None


def _convert(raw, name: str, before: os.stat_result, options: TextOptions, numeric, tmp: Path, identity: dict,
             progress, chunk_rows: int) -> None:
    size = max(1, before.st_size)
    kwargs = options.pandas_kwargs()
    if numeric is not None:
        names = options.names or None
        kwargs["dtype"] = {c: "float64" for c in numeric}
        if names:
            kwargs["dtype"].update({c: "string" for c in names if c not in numeric})
    else:
        kwargs["dtype"] = "float64"
    chunks: queue.Queue = queue.Queue(maxsize=2)  # bounded: at most ~3 chunks in memory
    failure: list[BaseException] = []
    recorded = {IDENTITY_KEY: json.dumps(identity).encode()}

    def write():
        writer = None
        try:
            while (table := chunks.get()) is not None:
                if writer is None:
                    # no dictionary encoding: measured numbers rarely repeat, and trying it made
                    # writing 3x slower; no compression: the cache is read far more than written
                    schema = table.schema.with_metadata({**(table.schema.metadata or {}), **recorded})
                    writer = pq.ParquetWriter(tmp, schema, compression="none", use_dictionary=False)
                writer.write_table(table)
        except BaseException as exc:  # reported by the reading thread
            failure.append(exc)
            while chunks.get() is not None:
                pass
        finally:
            if writer is not None:
                writer.close()

    writer_thread = threading.Thread(target=write, name="parquet-writer", daemon=True)
    writer_thread.start()
    rows = 0
    counting = _CountingReader(raw)
    try:
        for chunk in pd.read_csv(counting, chunksize=chunk_rows, **kwargs):
            if failure:
                break
            chunk.columns = [str(c) for c in chunk.columns]
            chunks.put(pa.Table.from_pandas(chunk, preserve_index=False))
            rows += len(chunk)
            if progress:
                progress(min(1.0, counting.bytes_read / size), rows)
    except pd.errors.ParserError as exc:
        _check_complete(raw, name, before, counting.bytes_read)  # a file cut mid-row: say that instead
        raise LoadError(f"'{name}' has rows with different numbers of values: {parser_error_detail(exc)}") from None
    except ValueError as exc:
        _check_complete(raw, name, before, counting.bytes_read)
        raise LoadError(f"'{name}' has text where numbers were expected near row {rows + 1:,}: {exc}") from None
    except OSError as exc:
        raise LoadError(f"'{name}' could not be read: {exc.strerror or exc}.") from None
    finally:
        chunks.put(None)
        writer_thread.join()
    if failure:
        raise LoadError(f"Could not write the cache for '{name}': {failure[0]}")
    _check_complete(raw, name, before, counting.bytes_read)
    if rows == 0:
        raise LoadError(f"'{name}' has zero data rows.")
    if progress:
        progress(1.0, rows)


def _check_complete(raw, name: str, before: os.stat_result, bytes_read: int) -> None:
    """LoadError unless the file is unchanged since conversion began and was read to its end."""
    after = os.fstat(raw.fileno())
    if (after.st_size, after.st_mtime_ns, after.st_ino, after.st_dev) != \
            (before.st_size, before.st_mtime_ns, before.st_ino, before.st_dev):
        raise LoadError(f"'{name}' changed while it was being converted ({before.st_size:,} bytes when conversion "
                        f"started, {after.st_size:,} now); nothing was kept. Wait until the program writing it "
                        "has finished, then press 'Load and plot' again.")
    if bytes_read != before.st_size:
        raise LoadError(f"'{name}' was not read to its end ({bytes_read:,} of {before.st_size:,} bytes); "
                        "nothing was kept. Press 'Load and plot' to try again.")

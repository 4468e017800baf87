"""Convert text tables once into a columnar Parquet cache, streaming, with progress.

The cache file is keyed by the source's real path, size, modification time and reader options,
so an edited file is converted again and an unchanged one never is. Conversion reads the text in
chunks of ``chunk_rows`` (memory stays bounded whatever the file size) with pandas' C parser,
and a second thread writes each chunk to Parquet while the next one is parsed: measured on the
seed-size file this costs about the same wall time as a single ``pandas.read_csv``
(see ``benchmarks/bench_plot.py``). ``pyarrow.csv.open_csv`` is not used because it cannot split
on runs of whitespace nor skip comment lines, the common case for lab output.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .loaders import LoadError, TextOptions, _name, parser_error_detail

ProgressCallback = Callable[[float, int], None]  # (fraction of bytes read, rows converted so far)


class _CountingReader:
    """A binary file wrapper that counts bytes handed to the parser, for the progress bar."""

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


def cache_path(source, options: TextOptions, cache_dir: Path) -> Path:
    """Where the Parquet copy of ``source`` lives; changes when the file or the options change."""
    st = os.stat(source)
    real = str(getattr(source, "real", None) or os.path.realpath(source))
    key = json.dumps([real, st.st_size, st.st_mtime_ns, options.to_dict()], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path(cache_dir) / f"{Path(_name(source)).stem[:40]}-{digest}.parquet"


def ensure_parquet(source: Path, options: TextOptions, numeric: list[str] | None, cache_dir: Path,
                   progress: ProgressCallback | None = None, chunk_rows: int = 500_000) -> Path:
    """The Parquet cache of text file ``source``, converting it first if needed.

    ``numeric`` names the columns to store as float64 (others are kept as text); None means all.
    Raises :class:`LoadError` with a readable message for ragged rows, text in a number column,
    a vanished or unreadable file.
    """
    try:
        target = cache_path(source, options, cache_dir)
    except FileNotFoundError:
        raise LoadError(f"'{_name(source)}' does not exist (any more): was it deleted or moved?") from None
    if target.exists():
        if progress:
            progress(1.0, pq.ParquetFile(target).metadata.num_rows)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        _convert(source, options, numeric, tmp, progress, chunk_rows)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _convert(source, options: TextOptions, numeric, tmp: Path, progress, chunk_rows: int) -> None:
    size = max(1, os.stat(source).st_size)
    name = _name(source)
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

    def write():
        writer = None
        try:
            while (table := chunks.get()) is not None:
                if writer is None:
                    # no dictionary encoding: measured numbers rarely repeat, and trying it made
                    # writing 3x slower; no compression: the cache is read far more than written
                    writer = pq.ParquetWriter(tmp, table.schema, compression="none", use_dictionary=False)
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
    try:
        with open(source, "rb") as raw:
            counting = _CountingReader(raw)
            for chunk in pd.read_csv(counting, chunksize=chunk_rows, **kwargs):
                if failure:
                    break
                chunk.columns = [str(c) for c in chunk.columns]
                chunks.put(pa.Table.from_pandas(chunk, preserve_index=False))
                rows += len(chunk)
                if progress:
                    progress(min(1.0, counting.bytes_read / size), rows)
    except pd.errors.ParserError as exc:
        raise LoadError(f"'{name}' has rows with different numbers of values: {parser_error_detail(exc)}") from None
    except ValueError as exc:
        raise LoadError(f"'{name}' has text where numbers were expected near row {rows + 1:,}: {exc}") from None
    except FileNotFoundError:
        raise LoadError(f"'{name}' does not exist (any more): was it deleted or moved?") from None
    except PermissionError:
        raise LoadError(f"You are not allowed to read '{name}' (file permissions).") from None
    finally:
        chunks.put(None)
        writer_thread.join()
    if failure:
        raise LoadError(f"Could not write the cache for '{name}': {failure[0]}")
    if rows == 0:
        raise LoadError(f"'{name}' has zero data rows.")
    if progress:
        progress(1.0, rows)

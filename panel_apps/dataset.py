"""One opened data file: its preview, its columnar cache and the table a plot spec asks for.

:class:`DataSource` keeps loading apart from plotting: it knows how to get whole columns
(the mapped columnar cache for text, direct reads for Parquet/HDF5/ROOT), keeps the columns it
read, and applies the spec's renames, derived columns and row filters in :meth:`DataSource.table`.
Columns of the cache are never copied: a plain plot's table views the mapping, shared by every tab
and process plotting the file, and carries the cache's column statistics
(``frame.attrs["column_stats"]``) so axis ranges need no pass over the data.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd

from . import expressions
from .colcache import CachedColumns
from .ingest import ensure_cache
from .loaders import LoadError, Preview, TextOptions, preview, read_columns, read_size
from .paths import OpenedFile
from .spec import FileColumns


class DataSource:
    """A previewed file; heavy reading happens in :meth:`prepare` and :meth:`table`.

    ``source`` is an :class:`~panel_apps.paths.OpenedFile` (the app opens files through the
    allowed roots) or a path; every read goes through the opened descriptor, which this object
    owns: :meth:`close` it when the student opens another file.
    """

    def __init__(self, source: OpenedFile | Path, options: dict | None = None, preview_rows: int = 20,
                 max_read_bytes: int | None = None):
        self.max_read_bytes = max_read_bytes  # None: no limit
        self.file = source if isinstance(source, OpenedFile) else OpenedFile.open(source)
        self.path = self.file.real
        try:
            self.preview: Preview = preview(self.file, options, preview_rows)
        except BaseException:
            self.file.close()
            raise
        self.options = self.preview.options
        self.format = self.preview.format
        self.cached: CachedColumns | None = None  # the mapped cache of a converted text file
        self._columns: dict[str, np.ndarray] = {}
        self._reading = threading.Lock()  # replots run in worker threads; read each column once
        self.total_rows = self.preview.total_rows
        self.ready = self.format != "text"  # text files need prepare() (conversion) first

    @property
    def numeric_columns(self) -> list[str]:
        return self.preview.numeric_columns

    def prepare(self, cache_dir: Path, progress=None, on_rows=None) -> None:
        """Convert a text file to the columnar cache (no-op for the binary formats).

        ``on_rows(columns)`` is called with the rows converted so far, for a first look at a new file.
        """
        if self.format == "text":
            self.cached = ensure_cache(self.file, TextOptions.from_dict(self.options), self.numeric_columns,
                                       Path(cache_dir), progress, on_rows=on_rows)
            self.total_rows = self.cached.rows
        elif progress:
            progress(1.0, self.total_rows or 0)
        self.ready = True

    @property
    def skipped_lines(self) -> int:
        """Lines of a text file skipped as bad (reader option ``skip_bad_lines``)."""
        return self.cached.skipped_lines if self.cached is not None else 0

    def columns(self, names: list[str], partial: CachedColumns | None = None) -> dict[str, np.ndarray]:
        """Whole columns by original name: views of the mapped cache, or read once and kept in memory.

        ``partial`` reads the rows converted so far instead (a first look while converting).
        """
        if not self.path.exists():
            raise LoadError(f"'{self.path.name}' was deleted or moved while you were plotting; open it again.")
        cached = partial or self.cached
        if cached is not None:
            if self.max_read_bytes is not None and cached.nbytes(names) > self.max_read_bytes:
                self._refuse(names, cached.nbytes(names), cached.rows)
            return {n: cached.column(n) for n in names}
        if self.format == "text":
            raise LoadError("The file has not been converted yet; press 'Load'.")
        with self._reading:
            missing = [n for n in names if n not in self._columns]
            if missing:
                for kept in [n for n in self._columns if n not in names]:  # hold only what this plot reads
                    del self._columns[kept]
                self._check_size(self.file, self.format, self.options, missing)
                frame = read_columns(self.file, self.format, self.options, missing)
                for n in missing:
                    self._columns[n] = frame[n].to_numpy()
            return {n: self._columns[n] for n in names}

    def _check_size(self, where, fmt: str, options: dict, missing: list[str]) -> None:
        """LoadError if reading ``missing`` would take more memory than the admin allows."""
        if self.max_read_bytes is None:
            return
        needed, rows = read_size(where, fmt, options, missing)
        held = sum(a.nbytes for a in self._columns.values())
        if needed + held > self.max_read_bytes:
            self._refuse(missing, needed + held, rows)

    def _refuse(self, names: list[str], needed: int, rows: int):
        columns = ", ".join(f"'{c}'" for c in names)
        raise LoadError(f"Reading {columns} of '{self.file.name}' needs about {human_bytes(needed)} of memory "
                        f"({rows:,} rows); the limit set by your admin is {human_bytes(self.max_read_bytes)}. "
                        "Use a smaller file or a table with fewer rows.")

    def close(self) -> None:
        """Close the file (the student opened another one)."""
        self.file.close()

    def file_columns(self) -> FileColumns:
        """All columns of the file and the numeric ones, for the configuration rules."""
        return FileColumns(tuple(self.preview.frame.columns), tuple(self.numeric_columns))

    def table(self, spec, partial: CachedColumns | None = None) -> pd.DataFrame:
        """The rows and columns ``spec`` plots: renamed, derived columns added, filters applied.

        The spec is checked against this file first, with the rules the app's buttons use. Without
        derived columns and filters the table views the cache's mapping (no copy) and carries its
        column statistics in ``attrs["column_stats"]``. ``partial``: the rows converted so far.
        """
        file_columns = self.file_columns()
        spec.check(file_columns)
        finals = {c: spec.rename.get(c) or c for c in file_columns.names}
        original_of = {new: orig for orig, new in finals.items()}
        wanted = spec.used_columns()
        from_file, derived = self._needed(spec, list(finals.values()), wanted)
        data = self.columns([original_of[n] for n in from_file], partial)
        frame = pd.DataFrame({finals[k]: v for k, v in data.items()}, copy=False)
        if not data:  # only formulas of constants: the table still has one row per file row
            rows = (partial or self.cached).rows if (partial or self.cached) is not None else self.total_rows
            frame = pd.DataFrame(index=pd.RangeIndex(rows or 0))
        for name, formula in spec.derived.items():  # in order: a formula sees the columns before it
            if name in derived:
                frame[name] = expressions.evaluate(formula, frame)
        for col in wanted:
            if not pd.api.types.is_numeric_dtype(frame[col]):
                raise LoadError(f"Column '{col}' contains text, not numbers; it cannot be plotted.")
        if spec.filters:
            mask = np.ones(len(frame), dtype=bool)
            for f in spec.filters:
                col = frame[f["column"]].to_numpy()
                if f.get("min") is not None:
                    mask &= col >= f["min"]
                if f.get("max") is not None:
                    mask &= col <= f["max"]
            if not mask.all():
                frame = frame[mask]
        frame = frame[[c for c in wanted if c in frame]] if wanted else frame
        source = partial or self.cached
        if source is not None and not spec.filters:
            frame.attrs["column_stats"] = {finals[n]: source.stats[n] for n in from_file if n in source.stats
                                           and finals[n] in frame}
        return frame

    @staticmethod
    def _needed(spec, file_names: list[str], wanted: list[str]) -> tuple[list[str], set[str]]:
        """File columns to read and derived columns to compute for ``wanted`` (formulas may chain)."""
        order = list(spec.derived)
        from_file: dict[str, None] = {}
        derived: set[str] = set()

        def need(name: str) -> None:
            if name in spec.derived:
                if name not in derived:
                    derived.add(name)
                    earlier = file_names + order[:order.index(name)]
                    for ref in expressions.referenced_columns(spec.derived[name], earlier):
                        need(ref)
            elif name in file_names:
                from_file[name] = None
            else:
                raise LoadError(f"There is no column '{name}' in this file.")

        for name in wanted:
            need(name)
        return list(from_file), derived

    def available_columns(self, spec) -> list[str]:
        """Numeric columns after renames, plus derived ones: what the column selectors offer."""
        return spec.available_columns(self.file_columns())


def human_bytes(n: int) -> str:
    """``4.0 GB``: a size in decimal units, as file managers show it."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")

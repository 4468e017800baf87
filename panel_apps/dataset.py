"""One opened data file: its preview, its columnar cache and the table a plot spec asks for.

:class:`DataSource` keeps loading apart from plotting: it knows how to get whole columns
(Parquet cache for text, direct reads for Parquet/HDF5/ROOT), keeps the columns it already read,
and applies the spec's renames, derived columns and row filters in :meth:`DataSource.table`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import expressions
from .ingest import ensure_parquet
from .loaders import LoadError, Preview, TextOptions, preview, read_columns


class DataSource:
    """A previewed file; heavy reading happens in :meth:`prepare` and :meth:`table`."""

    def __init__(self, path: Path, options: dict | None = None, preview_rows: int = 20):
        self.path = Path(path)
        self.preview: Preview = preview(self.path, options, preview_rows)
        self.options = self.preview.options
        self.format = self.preview.format
        self.parquet: Path | None = self.path if self.format == "parquet" else None
        self._columns: dict[str, np.ndarray] = {}
        self.total_rows = self.preview.total_rows
        self.ready = self.format != "text"  # text files need prepare() (conversion) first

    @property
    def numeric_columns(self) -> list[str]:
        return self.preview.numeric_columns

    def prepare(self, cache_dir: Path, progress=None) -> None:
        """Convert a text file to the Parquet cache (no-op for the binary formats)."""
        if self.format == "text":
            self.parquet = ensure_parquet(self.path, TextOptions.from_dict(self.options), self.numeric_columns,
                                          Path(cache_dir), progress)
        if self.parquet is not None:
            import pyarrow.parquet as pq
            self.total_rows = pq.ParquetFile(self.parquet).metadata.num_rows
        elif progress:
            progress(1.0, self.total_rows or 0)
        self.ready = True

    def columns(self, names: list[str]) -> dict[str, np.ndarray]:
        """Whole columns by original name, read once and kept in memory."""
        if not self.path.exists():
            raise LoadError(f"'{self.path.name}' was deleted or moved while you were plotting; open it again.")
        missing = [n for n in names if n not in self._columns]
        if missing:
            if self.parquet is not None:
                frame = read_columns(self.parquet, "parquet", {}, missing)
            elif self.format == "text":
                raise LoadError("The file has not been converted yet; press 'Load'.")
            else:
                frame = read_columns(self.path, self.format, self.options, missing)
            for n in missing:
                self._columns[n] = frame[n].to_numpy()
        return {n: self._columns[n] for n in names}

    def table(self, spec) -> pd.DataFrame:
        """The rows and columns ``spec`` plots: renamed, derived columns added, filters applied."""
        renamed = {orig: new for orig, new in spec.rename.items() if new and new != orig}
        original_of = {new: orig for orig, new in renamed.items()}
        available = [renamed.get(c, c) for c in self.preview.frame.columns]
        wanted = spec.used_columns()
        needed: list[str] = []
        for name in wanted:
            if name in spec.derived:
                needed += expressions.referenced_columns(spec.derived[name], available)
            elif name in available:
                needed.append(name)
            else:
                raise LoadError(f"There is no column '{name}' in this file.")
        data = self.columns([original_of.get(n, n) for n in dict.fromkeys(needed)])
        frame = pd.DataFrame({renamed.get(k, k): v for k, v in data.items()}, copy=False)
        for name, formula in spec.derived.items():
            if name in wanted:
                frame[name] = expressions.evaluate(formula, frame)
        for col in wanted:
            if not pd.api.types.is_numeric_dtype(frame[col]):
                raise LoadError(f"Column '{col}' contains text, not numbers; it cannot be plotted.")
        mask = np.ones(len(frame), dtype=bool)
        for f in spec.filters:
            col = frame[f["column"]].to_numpy()
            if f.get("min") is not None:
                mask &= col >= f["min"]
            if f.get("max") is not None:
                mask &= col <= f["max"]
        if not mask.all():
            frame = frame[mask]
        return frame[[c for c in wanted if c in frame]] if wanted else frame

    def available_columns(self, spec) -> list[str]:
        """Numeric columns after renames, plus derived ones: what the column selectors offer."""
        renamed = [spec.rename.get(c) or c for c in self.numeric_columns]
        return renamed + [d for d in spec.derived if d not in renamed]

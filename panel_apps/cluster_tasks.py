"""What Dask workers do for the plotting app: hold rows of the columnar cache, aggregate them.

The workers read the user's cache entry themselves (a filesystem they share with the user's
server, as the user): :class:`Rows` is one partition, rows ``start:stop`` of the plotted columns,
copied into the worker's memory when the admin's workers have room for the whole table
("persisted"), else mapped from the cache file and read through the page cache at every frame
(data larger than the workers' memory still plots). The entry is opened with the same checks as
in the server (:func:`panel_apps.colcache.open_entry`: the user's own files, no links, the
recorded source identity).

Per frame each worker turns its partitions into (counts, sums) per pixel with the app's own
aggregation (:func:`panel_apps.aggregate.point_sums`, the numpy twin of Datashader until the
worker has compiled Datashader's kernels): adding the parts gives exactly the counts the server
would get; sums may differ from the server's in the last bits (floating-point addition in
another order). Derived columns and filters are computed per partition with the app's formula
interpreter (:mod:`panel_apps.expressions`): formulas work row by row, so a partition gives the
rows the whole table would.

This module imports numpy and pandas only (workers need nothing of Panel or Bokeh).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import aggregate as engine
from .colcache import CachedColumns, open_entry

_WARM = threading.Lock()
_WARMED = False


@dataclass(frozen=True)
class TablePlan:
    """How the plotted table is made from the cache entry: the file columns it reads (final
    name -> name in the cache), derived columns in order, filters, and the plotted x, y, c."""

    entry: str
    identity: dict
    rows: int
    columns: dict[str, str]
    derived: dict[str, str] = field(default_factory=dict)
    filters: tuple = ()
    x: str = ""
    y: str = ""
    c: str | None = None

    @property
    def plain(self) -> bool:
        return not self.derived and not self.filters


class Rows:
    """One partition: rows ``start:stop`` of some cache columns (names as in the cache)."""

    def __init__(self, entry: str, identity: dict, names: tuple, start: int, stop: int,
                 arrays: dict | None = None):
        self.entry, self.identity, self.names = entry, identity, tuple(names)
        self.start, self.stop, self.arrays = start, stop, arrays
        self._cached: CachedColumns | None = None  # keeps the mapping while the partition lives

    @classmethod
    def load(cls, entry: str, identity: dict, names: tuple, start: int, stop: int,
             in_memory: bool) -> "Rows":
        rows = cls(entry, identity, names, start, stop)
        if in_memory:
            rows.arrays = {n: np.array(v) for n, v in rows._mapped().items()}
        else:
            rows._mapped()  # fail here, not at the first frame, if the worker cannot open it
        return rows

    def _mapped(self) -> dict:
        cached = self._cached or open_entry(Path(self.entry), self.identity)
        if cached is None:
            raise OSError(f"The Dask worker cannot open your cache folder {self.entry} (it must "
                          "be on a filesystem the worker machines share, and yours).")
        self._cached = cached if self.arrays is None else None
        return {n: cached.column(n)[self.start:self.stop] for n in self.names}

    def columns(self) -> dict:
        return self.arrays if self.arrays is not None else self._mapped()

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values()) if self.arrays is not None else 0

    def __reduce__(self):  # mapped rows travel as where they are, never as their bytes
        return (Rows, (self.entry, self.identity, self.names, self.start, self.stop, self.arrays))


try:  # what dask counts as memory held: the copied bytes (mapped rows are the page cache's)
    from dask.sizeof import sizeof as _sizeof

    @_sizeof.register(Rows)
    def _rows_size(rows: Rows) -> int:
        return rows.nbytes + 200
except ImportError:  # pragma: no cover - dask is installed wherever workers run
    pass


def partitions(rows: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` row ranges covering ``rows``, cut at multiples of the aggregation's chunk."""
    parts = max(1, min(parts, math.ceil(rows / engine.CHUNK_ROWS) or 1))
    chunks = math.ceil(rows / engine.CHUNK_ROWS)
    bounds = [min(rows, round(chunks * i / parts) * engine.CHUNK_ROWS) for i in range(parts + 1)]
    bounds[-1] = rows
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def table(rows: Rows, plan: TablePlan) -> dict:
    """The partition's plotted columns after renames, derived columns and filters."""
    import pandas as pd

    from . import expressions

    data = rows.columns()
    frame = pd.DataFrame({final: data[orig] for final, orig in plan.columns.items()}, copy=False)
    for name, formula in plan.derived.items():
        frame[name] = expressions.evaluate(formula, frame)
    wanted = [n for n in (plan.x, plan.y, plan.c) if n]
    if plan.filters:
        mask = np.ones(len(frame), dtype=bool)
        for f in plan.filters:
            col = frame[f["column"]].to_numpy()
            if f.get("min") is not None:
                mask &= col >= f["min"]
            if f.get("max") is not None:
                mask &= col <= f["max"]
        frame = frame[mask]
    return {n: frame[n].to_numpy(dtype=np.float64, copy=False) for n in wanted}


def aggregate_part(rows: Rows, plan: TablePlan, grid: engine.Grid):
    """(counts, sums or None) of one partition on the grid."""
    cols = table(rows, plan)
    return engine.point_sums(cols[plan.x], cols[plan.y], grid, cols[plan.c] if plan.c else None)


def add_parts(parts: list) -> tuple:
    """The sum of the partitions' (counts, sums); then warms Datashader on this worker once."""
    counts = parts[0][0].copy()
    for p in parts[1:]:
        counts += p[0]
    sums = None
    if parts[0][1] is not None:
        sums = parts[0][1].copy()
        for p in parts[1:]:
            sums += p[1]
    _start_warm_up()
    return counts, sums


def extent_part(rows: Rows, plan: TablePlan, logx: bool, logy: bool) -> dict:
    """Per plotted axis: smallest and largest finite value (above zero on a log axis), and rows a
    log axis cannot show; for the first view of a table with formulas or filters."""
    cols = table(rows, plan)
    found = {}
    for axis, name, log in (("x", plan.x, logx), ("y", plan.y, logy)):
        values = cols[name]
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(values) & (values > 0) if log else np.isfinite(values)
            lo = float(np.min(values, where=keep, initial=np.inf))
            hi = float(np.max(values, where=keep, initial=-np.inf))
        found[axis] = (lo, hi, int(values.size - np.count_nonzero(keep)) if log else 0)
    found["rows"] = int(len(cols[plan.x]))
    return found


def add_extents(parts: list[dict]) -> dict:
    total = {"rows": sum(p["rows"] for p in parts)}
    for axis in ("x", "y"):
        total[axis] = (min(p[axis][0] for p in parts), max(p[axis][1] for p in parts),
                       sum(p[axis][2] for p in parts))
    return total


def _start_warm_up() -> None:
    """After a worker's first frame, compile Datashader's kernels in the background (frames
    meanwhile use numpy, with the same counts)."""
    global _WARMED
    with _WARM:
        if _WARMED:
            return
        _WARMED = True
    threading.Thread(target=engine.warm_up_sums, name="datashader-warm-up", daemon=True).start()

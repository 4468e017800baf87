"""What Dask workers do for the plotting app: hold rows of the columnar cache, aggregate them.

The workers read the user's cache entry themselves (a filesystem they share with the user's
server, as the user): :class:`Rows` is one partition, rows ``start:stop`` of the plotted columns,
read from the cache files straight into arrays in the worker's memory when the admin's workers
have room for the whole table ("persisted"), else read again at every frame, ~64 MB at a time
into buffers reused from slice to slice (data larger than the workers' memory still plots). The
cache is read, never mapped, on workers: Dask's nanny counts a worker's resident memory, which
includes every mapped page the worker has touched, and kills the worker at 95 % of its limit. The entry is opened with the same checks as
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
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import aggregate as engine
from .colcache import _FLAGS, CachedColumns, open_entry

SLICE_BYTES = 64 << 20  # of all a partition's columns together, per step of a frame
WORKER_CHUNK_ROWS = 1 << 21  # numpy steps on a worker: few GIL turns beside its event loop (~80 MB)


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
    """One partition: rows ``start:stop`` of some cache columns (names as in the cache); ``arrays``
    holds them when the partition is kept in the worker's memory, else they are read per frame."""

    def __init__(self, entry: str, identity: dict, names: tuple, start: int, stop: int,
                 arrays: dict | None = None):
        self.entry, self.identity, self.names = entry, identity, tuple(names)
        self.start, self.stop, self.arrays = start, stop, arrays

    @classmethod
    def load(cls, entry: str, identity: dict, names: tuple, start: int, stop: int,
             in_memory: bool) -> Rows:
        rows = cls(entry, identity, names, start, stop)
        with rows._files() as files:  # fails here, not at the first frame, if the worker cannot read it
            if in_memory:
                arrays = {}
                for name, fd in files.items():  # read into the array itself: no second copy
                    arrays[name] = np.empty(stop - start, dtype="<f8")
                    _read_into(fd, arrays[name], start)
                rows.arrays = arrays
        return rows

    @contextmanager
    def _files(self):
        """The partition's column files, opened with the cache's checks (descriptors by name)."""
        cached: CachedColumns | None = open_entry(Path(self.entry), self.identity)
        if cached is None:
            raise OSError(f"The Dask worker cannot open your cache folder {self.entry} (it must "
                          "be on a filesystem the worker machines share, and yours).")
        fds: dict[str, int] = {}
        try:
            for name in self.names:
                fd = fds[name] = os.open(cached.files[name], _FLAGS, dir_fd=cached._fd)
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size < cached.rows * 8 \
                        or self.stop > cached.rows:
                    raise OSError(f"cache column {cached.files[name]} is not the one written")
            yield fds
        finally:
            for fd in fds.values():
                os.close(fd)

    def slices(self, whole: bool = False):
        """The partition's columns ~:data:`SLICE_BYTES` at a time: views of the held arrays (all
        of them at once if ``whole``: nothing is computed from them but pixels), or read from
        the cache into buffers that the next slice reuses (use each before the next)."""
        step = slice_rows(len(self.names))
        size = self.stop - self.start
        if self.arrays is not None:
            if whole:
                yield dict(self.arrays)
                return
            for a in range(0, size, step):
                yield {n: v[a:a + step] for n, v in self.arrays.items()}
            return
        with self._files() as files:
            buffers = {n: np.empty(min(step, size), dtype="<f8") for n in files}
            for a in range(self.start, self.stop, step):
                b = min(a + step, self.stop)
                data = {}
                for name, fd in files.items():
                    data[name] = buffers[name][:b - a]
                    _read_into(fd, data[name], a)
                yield data

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values()) if self.arrays is not None else 0

    def __reduce__(self):  # rows read per frame travel as where they are, never as their bytes
        return (Rows, (self.entry, self.identity, self.names, self.start, self.stop, self.arrays))


def slice_rows(columns: int) -> int:
    """Rows of one slice of ``columns`` columns: ~:data:`SLICE_BYTES`, a multiple of the chunk."""
    rows = SLICE_BYTES // (8 * max(1, columns))
    return max(engine.CHUNK_ROWS, rows // engine.CHUNK_ROWS * engine.CHUNK_ROWS)


def _read_into(fd: int, out: np.ndarray, first_row: int) -> None:
    """Fill ``out`` with float64 rows from ``first_row`` of the column file ``fd`` (pread: the
    pages stay in the kernel's page cache, outside the worker's resident memory)."""
    view = memoryview(out).cast("B")
    offset, done = first_row * 8, 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise OSError("the cache column ended before its rows (was it changed meanwhile?)")
        done += got


try:  # what dask counts as memory held: the arrays kept (rows read per frame hold none)
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


def table(data: dict, plan: TablePlan) -> dict:
    """Plotted columns of some rows (cache name -> values) after renames, derived columns and filters."""
    wanted = [n for n in (plan.x, plan.y, plan.c) if n]
    if plan.plain:  # the cached columns themselves: no pandas (its import alone is ~1 s on a fresh worker)
        return {n: data[plan.columns[n]] for n in wanted}
    import pandas as pd

    from . import expressions

    frame = pd.DataFrame({final: data[orig] for final, orig in plan.columns.items()}, copy=False)
    for name, formula in plan.derived.items():
        frame[name] = expressions.evaluate(formula, frame)
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
    """(counts, sums or None) of one partition on the grid, slice by slice (bounded memory)."""
    counts = sums = None
    for data in rows.slices(whole=plan.plain):
        cols = table(data, plan)
        part = engine.point_sums(cols[plan.x], cols[plan.y], grid, cols[plan.c] if plan.c else None,
                                 chunk=WORKER_CHUNK_ROWS)
        if counts is None:
            counts, sums = np.array(part[0], dtype=np.int64), (None if part[1] is None else np.array(part[1]))
        else:
            counts += part[0]
            if sums is not None:
                sums += part[1]
    return counts, sums


def add_parts(parts: list) -> tuple:
    """The sum of the partitions' (counts, sums)."""
    counts = parts[0][0].copy()
    for p in parts[1:]:
        counts += p[0]
    sums = None
    if parts[0][1] is not None:
        sums = parts[0][1].copy()
        for p in parts[1:]:
            sums += p[1]
    return counts, sums


def extent_part(rows: Rows, plan: TablePlan, logx: bool, logy: bool) -> dict:
    """Per plotted axis: smallest and largest finite value (above zero on a log axis), and rows a
    log axis cannot show; for the first view of a table with formulas or filters."""
    found = {"x": (math.inf, -math.inf, 0), "y": (math.inf, -math.inf, 0), "rows": 0}
    for data in rows.slices():
        cols = table(data, plan)
        for axis, name, log in (("x", plan.x, logx), ("y", plan.y, logy)):
            values = cols[name]
            with np.errstate(invalid="ignore"):
                keep = np.isfinite(values) & (values > 0) if log else np.isfinite(values)
                lo = float(np.min(values, where=keep, initial=np.inf))
                hi = float(np.max(values, where=keep, initial=-np.inf))
            was = found[axis]
            found[axis] = (min(was[0], lo), max(was[1], hi),
                           was[2] + (int(values.size - np.count_nonzero(keep)) if log else 0))
        found["rows"] += len(cols[plan.x])
    return found


def add_extents(parts: list[dict]) -> dict:
    total = {"rows": sum(p["rows"] for p in parts)}
    for axis in ("x", "y"):
        total[axis] = (min(p[axis][0] for p in parts), max(p[axis][1] for p in parts),
                       sum(p[axis][2] for p in parts))
    return total


async def start_warm_up() -> None:
    """Compile Datashader's kernels in the background (frames meanwhile use numpy, with the same
    counts): only the kinds of frames asked for, one at a time
    (:func:`panel_apps.aggregate.start_warm_up`). The server runs this on every worker once a
    whole frame is done, never beside one: numba's compiler holds the GIL for seconds, and a
    partition aggregated beside it waited for the GIL between its steps (100M rows on 2 workers:
    a first frame of 10.9 s instead of ~1.5 s). A coroutine: ``Client.run(..., wait=False)``
    needs one, and it returns at once (the compiling goes on in a thread)."""
    engine.start_warm_up()

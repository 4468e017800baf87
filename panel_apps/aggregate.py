"""Rows into pixels: Datashader's aggregation, and a path that never waits for a compiler.

Datashader compiles a numba kernel for each kind of frame (glyph, reduction, axis types, array
types) the first time it is asked for one, ~0.5-1 s each on this machine, and those kernels are
generated at run time, so they cannot be cached on disk. A student must never wait for that: a
frame whose kernel this process has not compiled yet is aggregated here with numpy, which needs
no JIT and gives the very same pixels (the same float64 arithmetic as Datashader's points glyph:
``int(mapper(x) * sx + tx)``, the upper edge folded into the last bin, rows outside the ranges or
not a number dropped; ``tests/test_panel_aggregate.py`` compares them pixel by pixel). Meanwhile
:func:`start_warm_up` compiles, in a background thread after the first frame, the kernels of the
kinds of frames asked for (one at a time, each new kind after its first frame), and later frames
use Datashader (about 5x faster on millions of rows; counts of a million rows or more are split
between the cores).

Marker size and shape survive rasterizing: :func:`spread` widens every pixel by the marker's
footprint (:func:`marker_mask`), in real pixels.

Importing this module imports numpy only; Datashader is imported by the warm-up and after it.
"""
from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass

import numpy as np

from . import gcsettle, order

log = logging.getLogger(__name__)
CHUNK_ROWS = 1 << 18  # the numpy path's temporaries stay ~10 MB whatever the number of rows
MAX_SPREAD = 10  # pixels of radius: a 21-pixel marker at most
# from this many rows a count is split between the cores: below, the parts' own costs (threads,
# frames, canvases: ~1-2 ms) outweigh the gain (3M rows on 2 cores, whole view 9.0 ms alone and
# 9.1 split, a zoom 3.2 and 4.4; 6M rows 25 and 16 ms; 100M rows 229 and 131 ms)
PARALLEL_ROWS = 5_000_000
MAX_THREADS = 8

# Datashader's compile caches are not safe to fill from two threads at once (seen as garbled
# dimension errors while a warm-up thread runs): one Datashader aggregation at a time per process.
DATASHADER_LOCK = threading.RLock()
_READY: set[tuple] = set()  # kinds of frames Datashader has compiled kernels for in this process
_WANTED: list[tuple] = []  # kinds of frames aggregated with numpy, to compile (start_warm_up)
_WANTED_LOCK = threading.Lock()
_STARTED = False
_COMPILER: threading.Thread | None = None
_POOL = None  # the threads of parallel counts, started at the first one


@dataclass(frozen=True)
class Grid:
    """Where the pixels are: ``width`` x ``height`` bins over the ranges, on linear or log axes."""

    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    logx: bool = False
    logy: bool = False


def kernel_key(method: str, mean: bool, grid: Grid, arrays) -> tuple:
    """What Datashader compiles one kernel for: glyph, reduction, axis types, and read-only arrays."""
    return (method, mean, grid.logx, grid.logy, all(not a.flags.writeable for a in arrays))


def datashader_ready(key: tuple) -> bool:
    return key in _READY


def points(x: np.ndarray, y: np.ndarray, grid: Grid, c: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(count per pixel, mean of ``c`` per pixel or None): a (height, width) image each.

    Datashader's kernel when this process has compiled it, else numpy; the same pixels either way.
    Rows of an ascending x outside the view are not read at all (:mod:`panel_apps.order`).
    A frame never waits for the warm-up: while it compiles (holding :data:`DATASHADER_LOCK` for up
    to a second a kernel) frames use numpy; zooms then waited 0.5-2 s in Chromium.
    """
    start, stop = order.rows_between(x, *grid.x_range)  # an ascending x: only the rows in view
    try:
        if stop <= start:  # no row in the view's x range
            return (np.zeros((grid.height, grid.width), dtype=np.int64),
                    None if c is None else np.full((grid.height, grid.width), np.nan))
        if (start, stop) != (0, len(x)):
            x, y, c = x[start:stop], y[start:stop], (c[start:stop] if c is not None else None)
        return _points(x, y, grid, c)
    finally:
        order.check_queued()  # a column met for the first time: its order is learnt after this frame


def _points(x: np.ndarray, y: np.ndarray, grid: Grid, c: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    key = kernel_key("points", c is not None, grid, [x, y] + ([c] if c is not None else []))
    if datashader_ready(key) and DATASHADER_LOCK.acquire(blocking=False):
        try:
            if c is None and len(x) >= PARALLEL_ROWS and _threads() > 1:
                return _parallel_counts(x, y, grid), None
            return _datashader(x, y, grid, c, "points")
        finally:
            DATASHADER_LOCK.release()
    # not compiled yet, or the warm-up is compiling another kernel (up to a second): numpy now
    found = numpy_points(x, y, grid, c)
    _want(key)
    return found


def _threads() -> int:
    return min(MAX_THREADS, len(os.sched_getaffinity(0)))


def _parallel_counts(x: np.ndarray, y: np.ndarray, grid: Grid) -> np.ndarray:
    """Datashader's count, the rows split between the cores this process may use: its compiled
    kernels release the GIL, so threads run side by side (100M rows on 2 cores: 229 -> 131 ms).
    Only counts are split: they add up exactly (a mean of parts would differ in the last bits, a
    line would lose the segment across each cut). Called once the kernel is compiled, under
    :data:`DATASHADER_LOCK` (no compile can run meanwhile); the parts reuse the compiled kernel."""
    global _POOL
    import datashader as ds
    import pandas as pd
    parts = _threads()
    bounds = [len(x) * i // parts for i in range(parts + 1)]
    canvas = _canvas(grid)

    def count(a: int, b: int) -> np.ndarray:
        frame = pd.DataFrame({"x": x[a:b], "y": y[a:b]}, copy=False)
        return canvas.points(frame, "x", "y", agg=ds.count()).values

    with DATASHADER_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor
            _POOL = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="nebulahub-aggregate")
        counts = sum(_POOL.map(count, bounds[:-1], bounds[1:]))
    return counts.astype(np.int64)


def lines(x: np.ndarray, y: np.ndarray, grid: Grid, c: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Like :func:`points` for a line through the rows in order (Datashader's line glyph)."""
    return _datashader(x, y, grid, c, "line")


def numpy_points(x: np.ndarray, y: np.ndarray, grid: Grid, c: np.ndarray | None = None):
    """Datashader's points aggregation in numpy, chunk by chunk (no JIT, bounded memory)."""
    counts, sums = numpy_point_sums(x, y, grid, c)
    if sums is None:
        return counts, None
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts, sums / counts


def numpy_point_sums(x: np.ndarray, y: np.ndarray, grid: Grid, c: np.ndarray | None = None,
                     chunk: int = CHUNK_ROWS):
    """(count per pixel, sum of ``c`` per pixel or None), in numpy: what a mean is made of, and
    what parts of a table aggregated apart (on Dask workers) add up to. ``chunk`` rows at a time:
    each step gives the GIL back and must win it again, which a busy event loop beside it (a Dask
    worker's) delays; bigger steps take fewer turns, at ~40 bytes of temporaries a row."""
    w, h = grid.width, grid.height
    sx, tx = _scale_translate(grid.x_range, w, grid.logx)
    sy, ty = _scale_translate(grid.y_range, h, grid.logy)
    counts = np.zeros(w * h, dtype=np.int64)
    sums = np.zeros(w * h, dtype=np.float64) if c is not None else None
    (x0, x1), (y0, y1) = grid.x_range, grid.y_range
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, len(x), chunk):
            xs, ys = x[start:start + chunk], y[start:start + chunk]
            keep = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)  # NaN compares False: dropped
            if c is not None:
                cs = c[start:start + chunk]
                keep &= ~np.isnan(cs)  # Datashader's mean skips missing values
            xs, ys = xs[keep], ys[keep]
            xi = _pixel(np.log10(xs) if grid.logx else xs, sx, tx, w)
            yi = _pixel(np.log10(ys) if grid.logy else ys, sy, ty, h)
            flat = yi * w + xi
            counts += np.bincount(flat, minlength=w * h)
            if sums is not None:
                sums += np.bincount(flat, weights=cs[keep], minlength=w * h)
    return counts.reshape(h, w), (sums.reshape(h, w) if sums is not None else None)


def point_sums(x: np.ndarray, y: np.ndarray, grid: Grid, c: np.ndarray | None = None,
               chunk: int = CHUNK_ROWS):
    """:func:`numpy_point_sums` with Datashader's kernels once this process has compiled them
    (the same counts; sums in Datashader's order of addition)."""
    key = kernel_key("points-sum", c is not None, grid, [x, y] + ([c] if c is not None else []))
    if datashader_ready(key) and DATASHADER_LOCK.acquire(blocking=False):
        try:
            return _datashader_sums(x, y, grid, c)
        finally:
            DATASHADER_LOCK.release()
    found = numpy_point_sums(x, y, grid, c, chunk)  # not compiled, or the warm-up is compiling another
    _want(key)
    return found


def _datashader_sums(x, y, grid: Grid, c):
    import datashader as ds
    import pandas as pd
    frame = pd.DataFrame({"x": x, "y": y, **({"c": c} if c is not None else {})}, copy=False)
    canvas = _canvas(grid)
    with DATASHADER_LOCK:
        counts = canvas.points(frame, "x", "y", agg=ds.count("c") if c is not None else ds.count()).values
        sums = canvas.points(frame, "x", "y", agg=ds.sum("c")).values if c is not None else None
    _READY.add(kernel_key("points-sum", c is not None, grid, [x, y] + ([c] if c is not None else [])))
    return counts.astype(np.int64), (np.nan_to_num(sums, nan=0.0) if sums is not None else None)


def _canvas(grid: Grid):
    import datashader as ds
    return ds.Canvas(plot_width=grid.width, plot_height=grid.height, x_range=tuple(map(float, grid.x_range)),
                     y_range=tuple(map(float, grid.y_range)), x_axis_type="log" if grid.logx else "linear",
                     y_axis_type="log" if grid.logy else "linear")


def _scale_translate(bounds, n: int, log: bool) -> tuple[float, float]:
    # Datashader's Axis.compute_scale_and_translate
    start, end = (math.log10(b) for b in bounds) if log else (float(b) for b in bounds)
    s = n / (end - start)
    return s, -start * s


def _pixel(mapped: np.ndarray, s: float, t: float, n: int) -> np.ndarray:
    index = (mapped * s + t).astype(np.int64)  # int(): truncation, as in Datashader's kernel
    np.minimum(index, n - 1, out=index)  # the upper edge belongs to the last bin
    return index


def _datashader(x, y, grid: Grid, c, method: str):
    import datashader as ds
    import pandas as pd
    frame = pd.DataFrame({"x": x, "y": y, **({"c": c} if c is not None else {})}, copy=False)
    canvas = ds.Canvas(plot_width=grid.width, plot_height=grid.height, x_range=tuple(map(float, grid.x_range)),
                       y_range=tuple(map(float, grid.y_range)), x_axis_type="log" if grid.logx else "linear",
                       y_axis_type="log" if grid.logy else "linear")
    glyph = canvas.line if method == "line" else canvas.points
    with DATASHADER_LOCK:
        counts = glyph(frame, "x", "y", agg=ds.count("c") if c is not None else ds.count()).values
        mean = glyph(frame, "x", "y", agg=ds.mean("c")).values if c is not None else None
    _READY.add(kernel_key(method, c is not None, grid, [x, y] + ([c] if c is not None else [])))
    return counts.astype(np.int64), mean


def warm_up(methods: tuple[str, ...] = ("points", "line")) -> None:
    """Compile now, in this thread, every kind of frame of ``methods`` ("points", "line", or the
    Dask workers' "points-sum"): both kinds of arrays, every axis type, with and without a
    colour. For the warm phases of the benchmarks; the app compiles only what it is asked for
    (:func:`start_warm_up`)."""
    for method in methods:
        for mean in (False, True):
            for logx in (False, True):
                for logy in (False, True):
                    for readonly in (True, False):
                        key = (method, mean, logx, logy, readonly)
                        try:
                            _compile(key)
                        except Exception:  # a kernel that does not compile fails (readably) when used
                            log.exception("Datashader warm-up failed for %s", key)


def start_warm_up() -> None:
    """After the first frame: compile, in a background thread, the kinds of frames asked for so
    far (the first frame's), and from now on each new kind right after its first (numpy) frame.

    One kernel at a time, only those used: compiling every kind up front (32 kernels, ~30 s)
    held Datashader's lock so long that the student's zooms meanwhile fell back to numpy."""
    global _STARTED
    _STARTED = True
    _compile_wanted()


def _want(key: tuple) -> None:
    """A frame of this kind was aggregated with numpy: have its kernel compiled (once started)."""
    with _WANTED_LOCK:
        if key in _READY or key in _WANTED:
            return
        _WANTED.append(key)
    if _STARTED:
        _compile_wanted()


def _compile_wanted() -> None:
    global _COMPILER
    with _WANTED_LOCK:
        if not _WANTED or (_COMPILER is not None and _COMPILER.is_alive()):
            return
        _COMPILER = threading.Thread(target=_compile_loop, name="datashader-warm-up", daemon=True)
        _COMPILER.start()


def _compile_loop() -> None:
    _compile_all_wanted()
    gcsettle.freeze_after_warm_up()  # Datashader and numba are imported now: out of the collector's sight
    _compile_all_wanted()  # kinds asked for meanwhile


def _compile_all_wanted() -> None:
    while True:
        with _WANTED_LOCK:
            if not _WANTED:
                break
            key = _WANTED.pop(0)
        if key not in _READY:
            try:
                _compile(key)
            except Exception:  # a kernel that does not compile fails (readably) when used
                log.exception("Datashader warm-up failed for %s", key)


def _compile(key: tuple) -> None:
    """Compile the kernel of ``key`` (see :func:`kernel_key`) on a few rows."""
    method, mean, logx, logy, readonly = key
    arrays = [np.linspace(1.0, 2.0, 64) for _ in range(3)]
    for a in arrays:
        a.flags.writeable = not readonly
    grid = Grid(8, 8, (1.0, 2.0), (1.0, 2.0), logx, logy)
    colour = arrays[2] if mean else None
    if method == "points-sum":
        _datashader_sums(arrays[0], arrays[1], grid, colour)
    else:
        _datashader(arrays[0], arrays[1], grid, colour, method)
        if method == "points" and not mean and _threads() > 1:
            _parallel_counts(arrays[0], arrays[1], grid)  # start the threads now, not at a zoom


# ----------------------------------------------------------------- marker footprints
def marker_mask(marker: str, size: int) -> np.ndarray:
    """The pixels a marker of ``size`` pixels covers, as a square boolean mask of odd side.

    Side ``2r + 1`` with ``r = (size - 1) // 2``: a size-1 marker is one pixel, a size-5 one five.
    """
    r = min(MAX_SPREAD, max(0, (int(size) - 1) // 2))
    if r == 0:
        return np.ones((1, 1), dtype=bool)
    v, u = np.mgrid[-r:r + 1, -r:r + 1] / r  # rows go up the y axis (row 0 is the lowest y)
    thin = 1.0 / r
    shapes = {
        "circle": u ** 2 + v ** 2 <= 1.0 + thin,
        "square": np.ones_like(u, dtype=bool),
        "diamond": abs(u) + abs(v) <= 1.0 + 1e-9,
        "triangle": abs(u) <= (1.0 - v) / 2 + thin / 2,
        "inverted_triangle": abs(u) <= (1.0 + v) / 2 + thin / 2,
        "cross": (abs(u) <= thin / 2 + 1e-9) | (abs(v) <= thin / 2 + 1e-9),
        "x": abs(abs(u) - abs(v)) <= thin / 2 + 1e-9,
        "hex": (abs(v) <= 0.87) & (abs(u) + 0.577 * abs(v) <= 1.0 + 1e-9),
    }
    shapes["star"] = shapes["cross"] | shapes["x"]
    return shapes.get(marker, shapes["circle"])


def spread(image: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """Each pixel's value spread over ``mask`` around it: summed (``add``, counts) or the largest
    (``max``, means; NaN pixels hold nothing). Counts stay in their integer type (exact); the
    result may be a view of a larger buffer made here.

    One contiguous add (or max) per pixel of the mask, on the image laid out flat with a margin of
    ``r`` pixels: a shift by ``(dy, dx)`` is a shift of the flat buffer by ``dy * row + dx``, and the
    margin keeps every shift of a real pixel inside its own row (2-D strided windows took ~11 ms for
    a 3x3 marker on a 640x440 frame, this ~1 ms; a zoom waits for it).
    """
    if mask.shape == (1, 1):
        return image
    r = mask.shape[0] // 2
    h, w = image.shape
    row = w + 2 * r
    add = how == "add"
    if add:  # counts: exact in their own integer type; NaN (no row) counts nothing
        dtype = image.dtype if image.dtype.kind in "iu" else np.float64
        src = np.zeros((h + 2 * r, row), dtype=dtype)
        src[r:r + h, r:r + w] = image if image.dtype.kind in "iu" else np.nan_to_num(image, nan=0.0)
    else:
        src = np.full((h + 2 * r, row), np.nan)
        src[r:r + h, r:r + w] = image
    flat = src.ravel()
    out = np.zeros_like(flat) if add else np.full_like(flat, np.nan)
    n = flat.size
    for dy, dx in zip(*np.nonzero(mask)):
        # the mask's pixel (dy, dx) moves every value by (dy - r, dx - r) pixels
        shift = int((r - dy) * row + (r - dx))
        a, b = max(0, -shift), n - max(0, shift)  # out[a:b] <- flat[a + shift:b + shift]
        if add:
            out[a:b] += flat[a + shift:b + shift]
        else:
            np.fmax(out[a:b], flat[a + shift:b + shift], out=out[a:b])
    return out.reshape(h + 2 * r, row)[r:r + h, r:r + w]

"""Rows a view can skip: when a column ascends (a time series, an event number), the rows whose
value lies in a range are one contiguous run, found by bisection instead of a pass over all rows.

A zoom into a tenth of a time axis then reads a tenth of the rows: the count (the largest part of
a zoom on the server) shrinks with the view. The pixels are the same: a row outside the view's x
range is dropped by the aggregation anyway, and those inside keep their order (means add up in
the same order).

Whether a column ascends is learnt once, in a background thread started after the frame that
met it (one pass, ~5 ms a million rows on this machine: no frame waits for it), and only for columns whose memory can never change: the
read-only mappings of the zero-copy cache (:mod:`panel_apps.colcache`). Until it is known, and for
any other array, every row is read as before.
"""
from __future__ import annotations

import logging
import threading
import weakref

import numpy as np

log = logging.getLogger(__name__)

MIN_ROWS = 100_000  # below this a whole pass is as quick as a bisection
CHUNK = 1 << 20  # rows compared per step while checking (bounded temporaries)

_LOCK = threading.Lock()
_KNOWN: dict[tuple, bool] = {}  # (id(owner), first byte, rows, stride) -> the rows ascend
_OWNERS: dict[int, weakref.ref] = {}  # id(owner) -> a weak reference: forgotten with the owner
_CHECKING: set[tuple] = set()
_QUEUED: dict[tuple, np.ndarray] = {}  # met during a frame, checked after it (check_queued)


def rows_between(values: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    """``(start, stop)``: the rows that may hold ``lo <= value <= hi``; all of them unless the
    column is known to ascend."""
    key = _key(values)
    if key is None:
        return 0, len(values)
    with _LOCK:
        ascends = _KNOWN.get(key)
    if ascends is None:
        _check_soon(key, values)
        return 0, len(values)
    if not ascends:
        return 0, len(values)
    return int(np.searchsorted(values, lo, side="left")), int(np.searchsorted(values, hi, side="right"))


def ascends(values: np.ndarray) -> bool:
    """Every value at least the one before it (NaN anywhere: no)."""
    for start in range(0, max(0, len(values) - 1), CHUNK):
        part = values[start:start + CHUNK + 1]
        if not (part[1:] >= part[:-1]).all():
            return False
    return True


def _owner(values: np.ndarray) -> np.ndarray | None:
    """The array owning ``values``' memory when that memory can never change (a read-only mapping
    or bytes), else None: a writable array could be changed after it was checked."""
    while isinstance(values.base, np.ndarray):
        values = values.base
    buffer = values.base
    return values if isinstance(buffer, memoryview) and buffer.readonly else None


def _key(values: np.ndarray) -> tuple | None:
    if values.ndim != 1 or len(values) < MIN_ROWS or values.dtype.kind != "f":
        return None
    owner = _owner(values)
    if owner is None:
        return None
    first = values.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
    key = (id(owner), first, len(values), values.strides[0])
    with _LOCK:
        if id(owner) not in _OWNERS:  # the entries go with the owner (its id may then be reused)
            _OWNERS[id(owner)] = weakref.ref(owner, lambda _, ident=id(owner): _forget(ident))
    return key


def _forget(ident: int) -> None:
    with _LOCK:
        _OWNERS.pop(ident, None)
        for key in [k for k in _KNOWN if k[0] == ident]:
            del _KNOWN[key]


def check_queued() -> None:
    """Start learning the order of the columns met since the last call, in a background thread.
    Called once a frame is done, so that the pass (0.3 s at 100M rows) never competes with it."""
    with _LOCK:
        queued = list(_QUEUED.items())
        _QUEUED.clear()
    for key, values in queued:
        threading.Thread(target=_check, args=(key, values), name="nebulahub-row-order", daemon=True).start()


def _check_soon(key: tuple, values: np.ndarray) -> None:
    with _LOCK:
        if key in _CHECKING:
            return
        _CHECKING.add(key)
        _QUEUED[key] = values


def _check(key: tuple, values: np.ndarray) -> None:
    try:
        found = ascends(values)
    except Exception:  # never break a frame: the rows are then all read
        log.exception("checking the order of a column failed")
        found = False
    with _LOCK:
        _CHECKING.discard(key)
        if key[0] in _OWNERS:  # the owner is still alive (``values`` keeps it so until here)
            _KNOWN[key] = found

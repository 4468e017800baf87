"""An ascending x (a time series) lets a zoom read only the rows in view, with the same pixels."""
import gc
import mmap
import time

import numpy as np
import pytest

from panel_apps import aggregate, order


def _mapped(values: np.ndarray, tmp_path, name: str) -> np.ndarray:
    """``values`` as the zero-copy cache holds a column: a read-only mapping of a file."""
    path = tmp_path / name
    path.write_bytes(values.astype("<f8").tobytes())
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), len(values) * 8, access=mmap.ACCESS_READ)
    column = np.frombuffer(mapping, dtype="<f8")
    column.flags.writeable = False
    return column


def _known(values: np.ndarray, timeout: float = 30.0) -> tuple[int, int]:
    """rows_between, then (as after a frame) the check of the order; waits until it is known."""
    first = order.rows_between(values, -np.inf, np.inf)
    assert order._key(values) not in order._KNOWN  # queued: nothing runs beside the frame
    order.check_queued()
    deadline = time.monotonic() + timeout
    while order._key(values) not in order._KNOWN:
        assert time.monotonic() < deadline, "the order of the column was never learnt"
        time.sleep(0.01)
    return first


def test_ascending_means_every_value_at_least_the_one_before():
    assert order.ascends(np.array([0.0, 1.0, 1.0, 2.0]))
    assert order.ascends(np.array([])) and order.ascends(np.array([3.0]))
    assert not order.ascends(np.array([0.0, 2.0, 1.0]))
    assert not order.ascends(np.array([0.0, np.nan, 2.0]))  # NaN: rows could be anywhere
    steps = np.arange(3 * order.CHUNK + 5, dtype=float)
    steps[order.CHUNK] = steps[order.CHUNK - 1] - 1  # a step back exactly where two chunks meet
    assert not order.ascends(steps)


def test_a_zoom_into_an_ascending_column_reads_only_its_rows_and_draws_the_same_pixels(tmp_path):
    rng = np.random.default_rng(3)
    rows = 400_000
    t = _mapped(np.sort(rng.uniform(0, 1000, rows)).round(1), tmp_path, "t")  # repeated values too
    q = _mapped(rng.normal(0, 1, rows), tmp_path, "q")
    assert _known(t) == (0, rows)  # the first frame reads all rows: the order was not known yet
    assert order._KNOWN[order._key(t)] is True and order._KNOWN.get(order._key(q)) in (None, False)
    start, stop = order.rows_between(t, 250.0, 500.0)
    assert t[start] >= 250.0 > t[start - 1] and t[stop - 1] <= 500.0 < t[stop]
    plain_t, plain_q = np.array(t), np.array(q)  # writable copies: never sliced
    assert order.rows_between(plain_t, 250.0, 500.0) == (0, rows)
    for x_range in [(250.0, 500.0), (t[1000], t[2000]), (0.0, 1000.0), (1500.0, 1600.0), (-5.0, t[0])]:
        grid = aggregate.Grid(64, 48, x_range, (-3.0, 3.0))
        for colour in (None, "q"):
            counts, means = aggregate.points(t, q, grid, q if colour else None)
            whole, whole_means = aggregate.numpy_points(plain_t, plain_q, grid, plain_q if colour else None)
            assert np.array_equal(counts, whole) and counts.dtype == np.int64
            if colour:
                np.testing.assert_allclose(means, whole_means, rtol=1e-12, equal_nan=True)
    assert aggregate.points(t, q, aggregate.Grid(8, 8, (2000.0, 3000.0), (-3.0, 3.0)))[0].sum() == 0


def test_what_was_learnt_goes_with_the_column(tmp_path):
    t = _mapped(np.arange(200_000, dtype=float), tmp_path, "t")
    _known(t)
    ident = id(t)
    assert any(k[0] == ident for k in order._KNOWN)
    del t
    gc.collect()
    assert not any(k[0] == ident for k in order._KNOWN) and ident not in order._OWNERS


@pytest.mark.parametrize("make", [lambda: np.arange(200_000, dtype=float),  # writable: could change later
                                  lambda: np.arange(50, dtype=float)])  # too few rows to bother
def test_other_arrays_are_read_whole(make):
    values = make()
    values.flags.writeable = False
    assert order.rows_between(values, 10.0, 20.0) == (0, len(values))
    assert order._key(values) is None

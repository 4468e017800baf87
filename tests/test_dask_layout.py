"""How the plotting app cuts a table for the Dask workers (panel_apps.cluster.table_layout)."""
from __future__ import annotations

import pytest

from panel_apps.cluster import PART_BYTES, table_layout

GIB = 1 << 30


@pytest.mark.parametrize("rows, workers, limit", [(100_000_000, 2, 2 * GIB), (300_000_000, 2, 2 * GIB),
                                                   (100_000_000, 3, 6 * GIB), (1_000, 4, 2 * GIB)])
def test_each_worker_gets_an_equal_share_of_partitions_no_bigger_than_allowed(rows, workers, limit):
    ranges, _ = table_layout(rows, 2, workers, limit)
    assert ranges[0][0] == 0 and ranges[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # every row once
    sizes = [b - a for a, b in ranges]
    assert max(sizes) * 16 <= max(PART_BYTES, 16 * rows // len(ranges) + 16 * (1 << 18))
    if rows >= workers * (1 << 18):  # big enough to cut: a multiple of the workers, even sizes
        assert len(ranges) % workers == 0 and max(sizes) - min(sizes) <= 2 << 18  # whole chunks


def test_a_table_too_big_for_the_workers_memory_is_read_at_each_frame():
    assert table_layout(300_000_000, 2, 2, 2 * GIB)[1] is False   # 4.8 GB on 2 x 2 GiB
    assert table_layout(10_000_000, 2, 2, 2 * GIB)[1] is True     # 160 MB: held

"""A table more than twice the memory limit of a Dask worker plots on SLURM workers (the ``slurm``
fixture, from a server running as the user's own account, as in tests/test_dask_slurm.py): the
workers read the cache a slice at a time at each frame, the frames equal the ones aggregated in
the server, and no worker is killed or restarted by Dask's nanny (95 % of its memory limit)."""
from __future__ import annotations

import pytest

from tests.test_dask_slurm import SETTINGS, jobs_of, user  # noqa: F401 - the fixture
from tests.test_dask_support import wait_until

pytestmark = pytest.mark.integration


def test_a_table_over_twice_a_workers_memory_plots_without_killing_a_worker(slurm, user):  # noqa: F811
    user.settings(**SETTINGS)   # two workers of 1 GiB, one core each
    lines = user.run("""
    import numpy as np
    from panel_apps import render
    from panel_apps.cluster import ClusterView, hold_table, start_cluster
    from panel_apps.cluster_tasks import TablePlan
    from panel_apps.colcache import CacheWriter, entry_path, open_entry
    # 90M rows of 3 columns: 2.16 GB of cache, more than twice a worker's 1 GiB
    folder = os.path.expanduser("~/.cache/nebulahub/plot/me")
    os.makedirs(folder, mode=0o700)
    identity = {"file": "made-for-the-test"}
    writer = CacheWriter(entry_path(folder, "big", "0"), ["a", "b", "c"], identity)
    rng = np.random.default_rng(11)
    for _ in range(45):
        writer.append({n: rng.standard_normal(2_000_000) for n in ("a", "b", "c")})
    cached = open_entry(writer.commit(), identity)
    size = sum(os.path.getsize(os.path.join(cached.path, f)) for f in os.listdir(cached.path))
    plan = TablePlan(entry=str(cached.path), identity=identity, rows=cached.rows,
                     columns={"a": "a", "b": "b", "c": "c"}, x="a", y="b", c="c")
    manager, workers = start_cluster(lambda p: None)
    client = manager.client
    pids = client.run(os.getpid)
    parts, in_memory = hold_table(manager, plan, workers)
    view = ClusterView(manager, plan, parts, None, lambda s: None)
    base = dict(spread=0, hover=None, options=dict(logx=False, logy=False), x="a", y="b", method="scatter")
    import pandas as pd
    frame = pd.DataFrame({n: cached.column(n) for n in ("a", "b", "c")}, copy=False)
    for step, settings, xr, yr in (("count", dict(base, aggregator="count", c=None), (-4, 4), (-4, 4)),
                                   ("mean", dict(base, aggregator="mean", c="c"), (-1, 2), (-2, 0.5))):
        started = time.monotonic()
        there = view.cluster_frame(settings, xr, yr, 600, 400)
        took = time.monotonic() - started
        here = render.aggregate(frame, settings, xr, yr, 600, 400)
        report(step=step, seconds=round(took, 1), rows=there.rows_in_view, here=here.rows_in_view,
               same=bool(np.array_equal(there.image, here.image, equal_nan=True)),
               close=bool(np.allclose(there.image, here.image, rtol=1e-6, atol=0, equal_nan=True)))

    def peak():
        with open("/proc/self/status") as fh:
            return int(next(l for l in fh if l.startswith("VmHWM")).split()[1]) * 1024

    report(step="workers", size=size, in_memory=in_memory, parts=len(parts), before=pids,
           after=client.run(os.getpid), peak=client.run(peak),
           limits={a: w["memory_limit"] for a, w in client.scheduler_info()["workers"].items()},
           events=[e.text for e in manager.events])
    """, timeout=300)
    by_step = {line["step"]: line for line in lines}
    workers = by_step["workers"]
    assert workers["size"] >= 2 * 2**30 and not workers["in_memory"], workers   # streamed, not held
    assert set(workers["limits"].values()) == {2**30}, workers
    count = by_step["count"]
    assert count["same"] and count["rows"] == count["here"] > 80_000_000, count   # every pixel
    mean = by_step["mean"]
    assert mean["close"] and mean["rows"] == mean["here"] > 1_000_000, mean
    # the same two worker processes throughout, none near the nanny's 95 %
    assert workers["after"] == workers["before"] and len(workers["before"]) == 2, workers
    assert all(p < 0.8 * 2**30 for p in workers["peak"].values()), workers
    assert not [e for e in workers["events"] if "memory" in e.lower() or "restart" in e.lower()], workers
    wait_until(lambda: not jobs_of(slurm, user.account), 30, "the jobs leave when the server ends")

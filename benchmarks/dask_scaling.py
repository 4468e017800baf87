"""Dask scaling benchmark: the plotting app's rasterized aggregation of a big table on 1 and 2 Dask
workers, beside the same aggregation in the user's server process, same machine, same run.

For each table size (two float64 columns written as the app's columnar cache), each configuration
runs in a fresh process playing the user's server and prints:

* start: the cluster up with its workers connected (none in-process);
* load: the workers read their partitions of the cache into memory (``hold_table``);
* first frame: an 800 x 600 count aggregation of the whole table, cold (what the student waits for);
* zoom p50 / p95: 12 frames zooming in, once each worker (or the server) has compiled Datashader;
* server peak: the peak RSS of the server process (the mapped cache counts where it is read);
* same: the cluster's frames equal the in-process frames pixel for pixel (checked, not assumed).

The workers come from ``dask_clusters`` with the ``local`` backend (worker processes on this
machine) unless ``--settings FILE`` names an admin's settings file (e.g. a SLURM one; then run it
as a user, not root). Figures on a shared 2-core machine are noisy: compare within one run.

    python benchmarks/dask_scaling.py [--rows 10M,30M] [--workers 1,2] [--settings FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

FRAME = """
import hashlib, json, resource, statistics, sys, time
import numpy as np
entry, identity, workers, settings_file = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
from panel_apps import aggregate as engine, render
SETTINGS = dict(aggregator="count", spread=0, hover=None, options=dict(logx=False, logy=False),
                x="a", y="b", c=None, method="scatter")
ZOOMS = [((-6 * 0.8 ** k, 6 * 0.8 ** k), (-6 * 0.8 ** k + 0.1, 6 * 0.8 ** k + 0.1)) for k in range(12)]
found = {"start": 0.0, "load": 0.0}

def digest(agg):
    return hashlib.sha256(np.nan_to_num(agg.image, nan=-1).tobytes()).hexdigest()[:16]

if workers == 0:   # the baseline: the app's aggregation in this process, on the mapped cache
    import pandas as pd
    from panel_apps.colcache import open_entry
    cached = open_entry(__import__("pathlib").Path(entry), identity)
    frame = pd.DataFrame({"a": cached.column("a"), "b": cached.column("b")}, copy=False)
    aggregate = lambda xr, yr: render.aggregate(frame, SETTINGS, xr, yr, 800, 600)
    warm = engine.warm_up
else:
    from dask_clusters import load_config, manager_for
    from panel_apps.cluster import ClusterView, hold_table
    from panel_apps.cluster_tasks import TablePlan
    settings = load_config(path=settings_file or "", adapt_maximum=max(workers, 1),
                           **({} if settings_file else dict(backend="local", worker_cores=1,
                                                             worker_memory="3 GiB", user_max_workers=2,
                                                             user_max_memory="8 GiB", tls=False)))
    t = time.perf_counter()
    manager = manager_for(settings).start()
    manager.scale(workers)
    manager.wait_for_workers(workers, timeout=600)
    found["start"] = time.perf_counter() - t
    plan = TablePlan(entry=entry, identity=identity, rows=int(sys.argv[5]), columns={"a": "a", "b": "b"},
                     x="a", y="b")
    t = time.perf_counter()
    parts, found["in_memory"] = hold_table(manager, plan, workers)
    found["load"] = time.perf_counter() - t
    view = ClusterView(manager, plan, parts, None, print)
    aggregate = lambda xr, yr: view.cluster_frame(SETTINGS, xr, yr, 800, 600)
    warm = lambda: manager.client.run(engine.warm_up_sums)
t = time.perf_counter()
first = aggregate(*ZOOMS[0])
found["first"] = time.perf_counter() - t
warm()
aggregate(*ZOOMS[0])
times, digests = [], [digest(first)]
for xr, yr in ZOOMS:
    t = time.perf_counter()
    agg = aggregate(xr, yr)
    times.append(time.perf_counter() - t)
    digests.append(digest(agg))
times.sort()
found.update(rows=first.rows_in_view, digests=digests, p50=statistics.median(times),
             p95=times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
             peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
if workers:
    manager.close("the benchmark is over")
print(json.dumps(found))
"""


def rows_arg(text: str) -> list[int]:
    units = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
    return [int(float(p[:-1]) * units[p[-1].lower()]) if p[-1].lower() in units else int(p)
            for p in text.split(",") if p]


def write_table(folder: Path, rows: int) -> tuple[Path, dict]:
    """A cache entry of ``rows`` rows of two normal columns, as the app's converter writes it."""
    import numpy as np

    from panel_apps.colcache import CacheWriter, entry_path

    identity = {"benchmark": "dask_scaling", "rows": rows}
    writer = CacheWriter(entry_path(folder, f"bench{rows}", "0"), ["a", "b"], identity)
    rng = np.random.default_rng(7)
    for start in range(0, rows, 2_000_000):
        n = min(2_000_000, rows - start)
        writer.append({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    return writer.commit(), identity


def run(entry: Path, identity: dict, rows: int, workers: int, settings: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", FRAME, str(entry), json.dumps(identity), str(workers),
                          settings, str(rows)], capture_output=True, text=True, cwd=str(PROJECT), env=env,
                         timeout=1800)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10M,30M", help="table sizes, e.g. 10M,30M,100M")
    parser.add_argument("--workers", default="1,2", help="cluster sizes to compare with the server")
    parser.add_argument("--settings", default="", help="an admin's Dask settings file (default: local workers)")
    args = parser.parse_args(argv)
    sizes = [int(w) for w in args.workers.split(",") if w]
    work = Path(tempfile.mkdtemp(prefix="nebulahub-dask-bench-", dir="/var/tmp"))
    env = dict(os.environ, PYTHONPATH=str(PROJECT), NEBULAHUB_DASK_STATE=str(work / "state"))
    print(f"{'rows':>12} {'where':<22} {'start s':>8} {'load s':>7} {'first s':>8} {'zoom p50 ms':>12} "
          f"{'zoom p95 ms':>12} {'server MB':>10}  same frames")
    try:
        for rows in rows_arg(args.rows):
            folder = work / "cache"
            folder.mkdir(mode=0o700, exist_ok=True)
            entry, identity = write_table(folder, rows)
            base = run(entry, identity, rows, 0, args.settings, env)
            for workers in [0, *sizes]:
                found = base if workers == 0 else run(entry, identity, rows, workers, args.settings, env)
                where = "in the server (baseline)" if workers == 0 else \
                    f"{workers} Dask worker{'s' if workers > 1 else ''}" + \
                    ("" if found.get("in_memory", True) else " (mapped)")
                same = "-" if workers == 0 else ("yes" if found["digests"] == base["digests"] else "NO")
                print(f"{rows:>12,} {where:<22} {found['start']:>8.1f} {found['load']:>7.1f} {found['first']:>8.2f} "
                      f"{found['p50'] * 1000:>12.0f} {found['p95'] * 1000:>12.0f} {found['peak_mb']:>10.0f}  {same}",
                      flush=True)
                assert found["rows"] == base["rows"] > 0.99 * rows, found   # every row counted
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

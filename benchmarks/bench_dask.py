"""Dask scaling benchmark: the plotting app's rasterized aggregation of a big table on Dask workers,
beside the same aggregation in the user's server process, same machine, same run.

For each table size (two float64 columns written as the app's columnar cache: 16 bytes a row), each
configuration runs in a fresh process playing the user's server and prints:

* start: the cluster up with its workers connected (none in-process);
* load: the workers read their partitions of the cache (``hold_table``): into their memory when
  the workers have room for the table, else mapped from the cache at every frame ("mapped");
* first frame: an 800 x 600 count aggregation of the whole table, cold (what the student waits for);
* zoom p50 / p95: 12 frames zooming in, once each worker (or the server) has compiled Datashader;
* server MB: the peak RSS of the server process (mapped cache pages count where they are read);
* same: the cluster's frames equal the in-process frames pixel for pixel (checked, not assumed).

Where the workers run:

* ``--backend slurm`` (the default when run as root with slurm-wlm installed): a real single-node
  SLURM started here (tests/slurm.py: 2 CPUs), workers as SLURM jobs of dask-jobqueue's
  SLURMCluster with ``--worker-memory`` each; every process (the "server", its workers) runs as a
  throw-away unprivileged account, as on a hub, and is removed at the end;
* ``--backend local``: worker processes on this machine (dask_clusters' local backend), as the
  current user;
* ``--settings FILE``: an admin's settings file, as the current user (not root for batch backends).

Sizes whose cache does not fit the free disk of /var/tmp (with a margin) are skipped with the
reason printed. Then the targets of the Dask issue are checked against the figures (printed, the
benchmark does not fail on them): at 100M rows the 2-worker frame within 1.5x the in-process frame
on the same cores; the server under 1 GB at 300M rows; a table twice the memory limit of a single
worker plots. Figures on a shared 2-core machine are noisy: compare within one run.

    python benchmarks/bench_dask.py [--rows 10M,30M,100M,300M] [--workers 2] [--backend slurm|local]
                                    [--worker-memory "2 GiB"] [--settings FILE]

With the default 2 GiB workers, 300M rows (4.8 GB) is the table twice a worker's memory; 100M
rows (1.6 GB) is read from the cache at every frame on 2 GiB workers and held in memory on 6 GiB
ones (``--rows 100M --worker-memory "6 GiB"``). Measured on 2026-11-26 (the table is cut into a
multiple of the workers' count; workers aggregate with numpy in 2M-row steps until Datashader
is compiled there, which starts only once the first frame is done; counts in the server are
split between its 2 cores):

    rows  where                       start s  load s  first s  zoom p50 ms  zoom p95 ms  server MB
     10M  in the server                   0.0     0.0     0.13           33           59        648
     10M  2 SLURM jobs (2 GiB)            2.4     0.2     0.50           74          108        219
     30M  in the server                   0.0     0.0     0.33           71          144        953
     30M  2 SLURM jobs (2 GiB)            2.8     0.5     0.68          115          195        219
    100M  in the server                   0.0     0.0     1.11          217          471       2021
    100M  2 SLURM jobs (2 GiB)            2.4     2.0     1.45          304          572        219
    300M  in the server                   0.0     0.0     3.47          661         1516       5073
    300M  2 SLURM jobs (2 GiB, mapped)    2.9     0.0     4.62         1531         2256        220

100M: first frame 1.31x the server's, zoom p95 1.21x (target 1.5x); 300M (2.2x a worker's
memory) plots every pixel as the server does with the server at 220 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
ROW_BYTES = 16                      # two float64 columns
DISK_MARGIN = 2 << 30               # left free on /var/tmp after the biggest cache
RUN_TIMEOUT = 480                   # one configuration of one size

FRAME = """
import hashlib, json, resource, statistics, sys, time
import numpy as np
entry, identity, workers, settings_file, rows = (sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]),
                                                 sys.argv[4], int(sys.argv[5]))
from panel_apps import aggregate as engine, cluster as app_cluster, render
app_cluster.FRAME_TIMEOUT = 180.0   # a frame that cannot finish is reported, not waited for 5 minutes
SETTINGS = dict(aggregator="count", spread=0, hover=None, options=dict(logx=False, logy=False),
                x="a", y="b", c=None, method="scatter")
ZOOMS = [((-6 * 0.8 ** k, 6 * 0.8 ** k), (-6 * 0.8 ** k + 0.1, 6 * 0.8 ** k + 0.1)) for k in range(12)]
found = {"start": 0.0, "load": 0.0}

def digest(agg):
    return hashlib.sha256(np.nan_to_num(agg.image, nan=-1).tobytes()).hexdigest()[:16]

manager = None
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
    settings = load_config(path=settings_file, adapt_maximum=max(workers, 1))
    t = time.perf_counter()
    manager = manager_for(settings).start()
    manager.scale(workers)
    manager.wait_for_workers(workers, timeout=600)
    found["start"] = time.perf_counter() - t
    plan = TablePlan(entry=entry, identity=identity, rows=rows, columns={"a": "a", "b": "b"}, x="a", y="b")
    view = ClusterView(manager, plan, [], None, print)
    aggregate = lambda xr, yr: view.cluster_frame(SETTINGS, xr, yr, 800, 600)
    warm = lambda: manager.client.run(engine.warm_up, ("points-sum",))
try:
    if manager is not None:
        t = time.perf_counter()
        view.parts, found["in_memory"] = hold_table(manager, plan, workers)
        found["load"] = time.perf_counter() - t
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
                 p95=times[min(len(times) - 1, round(0.95 * (len(times) - 1)))])
except Exception as e:   # the figures so far and why it stopped
    found["failed"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
found["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if manager is not None:
    found["events"] = [e.text for e in manager.events if e.problem][-3:]
    try:   # workers their nanny restarted for memory (their partitions are loaded again)
        found["restarts"] = len(manager.client.get_events("worker-restart-memory"))
    except Exception:
        found["restarts"] = -1
    manager.close("the benchmark is over")
print(json.dumps(found), flush=True)
"""

WRITE = """
import json, sys
import numpy as np
from panel_apps.colcache import CacheWriter, entry_path
folder, rows = sys.argv[1], int(sys.argv[2])
identity = {"benchmark": "bench_dask", "rows": rows}
writer = CacheWriter(entry_path(folder, f"bench{rows}", "0"), ["a", "b"], identity)
rng = np.random.default_rng(7)
for start in range(0, rows, 2_000_000):
    n = min(2_000_000, rows - start)
    writer.append({"a": rng.normal(size=n), "b": rng.normal(size=n)})
print(json.dumps({"entry": str(writer.commit()), "identity": identity}))
"""


def rows_arg(text: str) -> list[int]:
    units = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
    return [int(float(p[:-1]) * units[p[-1].lower()]) if p[-1].lower() in units else int(p)
            for p in text.split(",") if p]


def human(rows: int) -> str:
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows:,}"


class Runner:
    """Runs the benchmark's programs as the user whose server it plays."""

    def __init__(self, work: Path, backend: str, settings: str, worker_memory: str, workers: int):
        self.work, self.backend = work, backend
        self.slurm = self.account = self.registry = None
        self.python, self.env = sys.executable, dict(os.environ, PYTHONPATH=str(PROJECT))
        self.home = work / "home"
        self.home.mkdir(mode=0o700)
        self.settings = settings
        if backend == "slurm":
            self._slurm(worker_memory, workers)
        elif not settings:
            self.settings = self._write_settings(dict(
                backend="local", worker_cores=1, worker_memory=worker_memory, user_max_workers=workers,
                user_max_memory="64 GiB", user_max_cores=max(8, workers), tls=False))
        self.env["NEBULAHUB_DASK_STATE"] = str(self.home / "dask-state")

    def _write_settings(self, values: dict) -> str:
        path = self.work / "dask-settings.py"
        path.write_text("".join(f"c.DaskClusters.{k} = {v!r}\n" for k, v in values.items()))
        os.chmod(path, 0o644)
        return str(path)

    def _slurm(self, worker_memory: str, workers: int) -> None:
        """A single-node SLURM with room for the workers, and an unprivileged account."""
        from dask.utils import parse_bytes

        from machines.localusers import ensure_account, unix_name
        from machines.serverenv import ensure_server_env
        from tests.slurm import SlurmCluster

        if os.geteuid() != 0:
            raise SystemExit("--backend slurm starts SLURM and an account: run it as root "
                             "(or give --settings FILE as a user)")
        node_mb = workers * parse_bytes(worker_memory) // (1 << 20) + 1024
        env_path = ensure_server_env(log=lambda m: print(m, flush=True))
        self.python = f"{env_path}/bin/python"
        self.registry = str(self.work / "accounts")
        self.account = ensure_account(unix_name(f"nhb{os.getpid() % 10000}-", "dask"), "/nonexistent",
                                      self.registry)
        os.chmod(self.work, 0o711)
        os.chown(self.home, self.account.uid, self.account.gid)
        self.slurm = SlurmCluster(cpus=2, memory_mb=max(4000, node_mb)).start()
        self.env = {"HOME": str(self.home), "USER": self.account.name, "LOGNAME": self.account.name,
                    "PATH": f"{env_path}/bin:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                    "PYTHONPATH": str(PROJECT), "SLURM_CONF": str(self.slurm.conf)}
        self.settings = self._write_settings(dict(
            backend="slurm", worker_cores=1, worker_memory=worker_memory, scheduler_interface="lo",
            batch_env=["SLURM_CONF"], poll_interval=2.0, worker_walltime="02:00:00",
            user_max_workers=workers, user_max_cores=max(8, workers), user_max_memory="64 GiB",
            log_directory=str(self.home / "dask-logs")))

    def run(self, code: str, *args: str, timeout: float = RUN_TIMEOUT) -> dict:
        argv = [self.python, "-c", code, *args]
        if self.account is not None:   # runuser resets the environment: give it again after it
            argv = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", self.account.name, "--",
                    "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in self.env.items()), *argv]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=str(self.home), env=self.env, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:   # the time is up (or the benchmark was stopped): its whole session
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        out = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
        lines = [ln for ln in out.stdout.strip().splitlines() if ln.startswith("{")]
        if out.returncode or not lines:
            raise RuntimeError(out.stderr.strip().splitlines()[-1][:300] if out.stderr.strip()
                               else f"exit code {out.returncode}")
        return json.loads(lines[-1])

    def folder(self) -> Path:
        path = self.home / "cache"
        path.mkdir(mode=0o700, exist_ok=True)
        if self.account is not None:
            os.chown(path, self.account.uid, self.account.gid)
        return path

    def close(self) -> None:
        if self.slurm is not None:
            if self.account is not None:
                self.slurm.run("scancel", "--full", "-u", self.account.name, check=False)
            self.slurm.stop()
        if self.registry is not None:
            from machines.localusers import remove_created

            remove_created(self.registry)   # kills what the account left running, then deletes it


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10M,30M,100M,300M", help="table sizes, e.g. 10M,30M,100M")
    parser.add_argument("--workers", default="2", help="cluster sizes to compare with the server, e.g. 1,2")
    parser.add_argument("--backend", choices=("slurm", "local"), default=None,
                        help="where workers run (default: slurm as root with slurm-wlm, else local)")
    parser.add_argument("--worker-memory", default="2 GiB", help="memory limit of one worker")
    parser.add_argument("--settings", default="", help="an admin's Dask settings file (as the current user)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # stopped: still clean up (finally)
    sizes = [int(w) for w in args.workers.split(",") if w]
    backend = args.backend or ("slurm" if os.geteuid() == 0 and shutil.which("slurmctld")
                               and not args.settings else "local")
    if args.settings:
        backend = "settings"
    from dask.utils import format_bytes, parse_bytes

    worker_bytes = parse_bytes(args.worker_memory)
    work = Path(tempfile.mkdtemp(prefix="nebulahub-dask-bench-", dir="/var/tmp"))
    results: dict[tuple[int, int], dict] = {}
    runner = None
    try:
        runner = Runner(work, backend, args.settings, args.worker_memory, max(sizes))
        one, many = {"slurm": ("SLURM job", "SLURM jobs"), "local": ("local process", "local processes")
                     }.get(backend, ("worker", "workers"))
        print(f"Dask workers: {backend} ({os.cpu_count()} cores here, workers of 1 core and "
              f"{args.worker_memory}); cache and homes in {work}", flush=True)
        print(f"{'rows':>6} {'where':<30} {'start s':>8} {'load s':>7} {'first s':>8} {'zoom p50 ms':>12} "
              f"{'zoom p95 ms':>12} {'server MB':>10}  same frames  restarts", flush=True)
        for rows in rows_arg(args.rows):
            free = shutil.disk_usage(work).free
            if rows * ROW_BYTES + DISK_MARGIN > free:
                print(f"{human(rows):>6} skipped: its cache needs {format_bytes(rows * ROW_BYTES)} and /var/tmp "
                      f"has {format_bytes(free)} free (keeping {format_bytes(DISK_MARGIN)})", flush=True)
                continue
            folder = runner.folder()
            table = runner.run(WRITE, str(folder), str(rows))
            for workers in [0, *sizes]:
                try:
                    found = runner.run(FRAME, table["entry"], json.dumps(table["identity"]), str(workers),
                                       runner.settings, str(rows))
                except RuntimeError as e:
                    found = {"failed": str(e)}
                except subprocess.TimeoutExpired:
                    found = {"failed": f"not done within {RUN_TIMEOUT} s (stopped)"}
                results[rows, workers] = found
                base = results.get((rows, 0), {})
                if workers == 0:
                    where = "in the server (baseline)"
                else:
                    where = f"{workers} {many if workers > 1 else one}" + \
                        ("" if found.get("in_memory", True) else " (mapped)")
                if "p95" not in found:
                    print(f"{human(rows):>6} {where:<30} FAILED ({found.get('restarts', '?')} memory restarts): "
                      f"{found['failed']}"
                          + (f" | {' / '.join(found.get('events', []))}" if found.get("events") else "")
                          + (f" (server peak {found['peak_mb']:.0f} MB)" if "peak_mb" in found else ""),
                          flush=True)
                    continue
                same = "-" if workers == 0 else \
                    ("yes" if found["digests"] == base.get("digests") else "NO")
                print(f"{human(rows):>6} {where:<30} {found['start']:>8.1f} {found['load']:>7.1f} "
                      f"{found['first']:>8.2f} {found['p50'] * 1000:>12.0f} {found['p95'] * 1000:>12.0f} "
                      f"{found['peak_mb']:>10.0f}  {same:<11}  {found.get('restarts', '-')}", flush=True)
                if found["rows"] <= 0.99 * rows:
                    print(f"       only {found['rows']:,} of {rows:,} rows counted", flush=True)
            shutil.rmtree(folder)
        report(results, max(sizes), worker_bytes, args.worker_memory)
    finally:
        if runner is not None:
            runner.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: dict, workers: int, worker_bytes: int, worker_memory: str) -> None:
    """How time grows with rows, and the issue's targets against the figures."""
    print("\nHow time grows (first frame and zoom p95, per 10M rows):", flush=True)
    for w in (0, workers):
        line = []
        for (rows, ww), f in sorted(results.items()):
            if ww == w and "p95" in f:
                line.append(f"{human(rows)}: {f['first'] / rows * 1e7:.2f} s, {f['p95'] / rows * 1e10:.0f} ms")
        label = "in the server" if w == 0 else f"{w} workers"
        print(f"  {label:<14} " + (" | ".join(line) or "no figures"), flush=True)
    print("Targets:", flush=True)
    base, two = results.get((100_000_000, 0)), results.get((100_000_000, workers))
    if base and two and "p95" in base and "p95" in two:
        print(f"  100M rows, {workers} workers vs the server: first frame {two['first'] / base['first']:.2f}x, "
              f"zoom p95 {two['p95'] / base['p95']:.2f}x (target <= 1.5x): "
              f"{'met' if two['first'] <= 1.5 * base['first'] and two['p95'] <= 1.5 * base['p95'] else 'MISSED'}")
    else:
        print("  100M rows: no figures to compare")
    big = results.get((300_000_000, workers))
    if big and "peak_mb" in big:
        print(f"  300M rows, {workers} workers: server peak {big['peak_mb']:.0f} MB (target < 1024 MB): "
              f"{'met' if big['peak_mb'] < 1024 and 'p95' in big else 'MISSED'}"
              + ("" if "p95" in big else " (the plot did not finish)"))
    else:
        print("  300M rows: not run")
    twice = [(rows, f) for (rows, w), f in sorted(results.items())
             if w and rows * ROW_BYTES >= 2 * worker_bytes]
    for rows, f in twice[:1]:
        print(f"  a table at least twice one worker's memory ({human(rows)} rows = "
              f"{rows * ROW_BYTES / worker_bytes:.1f}x {worker_memory}): "
              + ("plotted, frames equal the server's" if "p95" in f and f["digests"] == results.get(
                  (rows, 0), {}).get("digests") else f"did NOT plot ({f.get('failed', 'frames differ')})"))
    if not twice:
        print("  no table was twice one worker's memory")


if __name__ == "__main__":
    sys.exit(main())

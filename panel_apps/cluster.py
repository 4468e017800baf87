"""Big rasterized plots drawn on the user's Dask cluster (:mod:`dask_clusters`), or in the server.

Above the admin's size (``NEBULAHUB_CLUSTER_ROWS``), or when the student picks "Dask cluster",
a scatter plot or 2-D histogram of a converted file is aggregated by the admin-configured cluster
(local processes, SLURM or HTCondor jobs): the workers read the columnar cache themselves into a
few large partitions held in their memory (or mapped from the cache when the table is larger than
their memory, see :mod:`panel_apps.cluster_tasks`), each frame and each zoom adds up their
partial images, and the server only ever holds one image. While workers arrive the page says
"2 of 4 workers ready"; the mode line links the Dask dashboard (through the user's server).

If the cluster cannot start (a setting, the user's limits, jobs that never run, workers that
cannot reach the scheduler) or fails later, the page says why in a sentence and the plot is drawn
in the server instead, out of core as always (the mapped cache, aggregated chunk by chunk).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from typing import Callable

import numpy as np

from . import render
from .cluster_tasks import (Rows, TablePlan, add_extents, add_parts, aggregate_part, extent_part,
                            partitions, start_warm_up)
from .settings import RASTERIZED, plot_settings

log = logging.getLogger(__name__)
COMPUTE_CHOICES = {"Automatic": "auto", "My server": "server", "Dask cluster": "cluster"}
PART_BYTES = 512 << 20        # few, large partitions: at most this ...
PART_SHARE = 0.25             # ... and at most this share of a worker's memory limit
HELD_SHARE = 0.8              # a worker holding the table stays under this share of its limit ...
WORKER_BASE = 400 << 20       # ... with its own needs (Python, Dask, Datashader's kernels) counted
FRAME_TIMEOUT = 300.0
_PARTS: dict[str, list] = {}  # partitions held on the cluster, by table (this process)
_PARTS_LOCK = threading.Lock()


class ClusterFailed(Exception):
    """The cluster could not draw; the message says why, in a sentence."""


class PlotProblem(ValueError):
    """The plot itself cannot be drawn (a column without values, filters excluding every row)."""


def wanted(choice: str, source, spec, rows_threshold: int, rasterize_threshold: int) -> tuple[bool, str]:
    """(draw on the cluster?, why not, when the student asked for it and it cannot be)."""
    if choice == "server":
        return False, ""
    cached = getattr(source, "cached", None)
    rows = cached.rows if cached is not None else (source.total_rows or 0)
    mode = render.choose_mode(spec, rows, rasterize_threshold)
    if spec.kind not in ("scatter", "hist2d") or mode != RASTERIZED:
        return False, ("Only rasterized scatter plots and 2-D histograms are drawn on the Dask cluster; "
                       "this plot is drawn in your server." if choice == "cluster" else "")
    if cached is None or cached.partial:
        return False, ("Only converted text files are drawn on the Dask cluster (its workers read the "
                       "converted columns); this plot is drawn in your server." if choice == "cluster" else "")
    if choice == "cluster":
        return rows > 0, ""
    return bool(rows_threshold) and rows >= rows_threshold, ""


def table_plan(source, spec, settings: dict) -> TablePlan:
    """What the workers make the plotted table from (the same rules as ``DataSource.table``)."""
    file_columns = source.file_columns()
    spec.check(file_columns)
    finals = {c: spec.rename.get(c) or c for c in file_columns.names}
    original_of = {new: orig for orig, new in finals.items()}
    from_file, derived = source._needed(spec, list(finals.values()), spec.used_columns())
    cached = source.cached
    return TablePlan(entry=str(cached.path), identity=cached.identity, rows=cached.rows,
                     columns={n: original_of[n] for n in from_file},
                     derived={k: v for k, v in spec.derived.items() if k in derived},
                     filters=tuple(dict(f) for f in spec.filters),
                     x=settings["x"], y=settings["y"], c=settings["c"] if settings["aggregator"] == "mean" else None)


class ClusterView:
    """The frames of one plot, aggregated on the cluster: :meth:`aggregate` is the
    :class:`~panel_apps.render.RasterFigure`'s aggregator. ``fallback(frame_args)`` draws a frame in the
    server when the cluster fails (the page is told through ``on_problem``)."""

    def __init__(self, manager, plan: TablePlan, parts: list, fallback: Callable, on_problem: Callable[[str], None]):
        self.manager, self.plan, self.parts = manager, plan, parts
        self.fallback, self.on_problem = fallback, on_problem
        self.failed: str | None = None
        self._warming = False

    def aggregate(self, frame, settings, x_range, y_range, width, height) -> render.Aggregate:
        if self.failed is None:
            try:
                return self.cluster_frame(settings, x_range, y_range, width, height)
            except Exception as exc:  # noqa: BLE001 - whatever broke, the student gets a plot and a sentence
                self.failed = _sentence(exc)
                log.warning("Dask frame failed, drawing in the server: %s", exc, exc_info=True)
                self.on_problem(f"The Dask cluster stopped drawing ({self.failed}); the plot is now drawn in "
                                "your server.")
        return self.fallback(settings, x_range, y_range, width, height)

    def cluster_frame(self, settings, x_range, y_range, width, height) -> render.Aggregate:
        grid = render.grid_of(settings, x_range, y_range, width, height)
        client = self.manager.client
        partials = client.map(aggregate_part, self.parts, plan=self.plan, grid=grid, pure=False)
        counts, sums = client.submit(add_parts, partials, pure=False).result(timeout=FRAME_TIMEOUT)
        if not self._warming:  # the first frame is done: the workers compile Datashader now
            self._warming = True
            client.run(start_warm_up, wait=False)
        means = None
        if sums is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                means = sums / counts
        return render.finish(counts, means, int(counts.sum()), settings, x_range, y_range)


def _sentence(exc: BaseException) -> str:
    from dask_clusters import ClusterError

    if isinstance(exc, (ClusterError, ClusterFailed)):
        return str(exc)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "a frame took longer than {:.0f} s".format(FRAME_TIMEOUT)
    return f"{type(exc).__name__}: {exc}"


def start_cluster(progress: Callable) -> tuple:
    """This server's cluster with its workers wanted up (blocking; run it in a thread).

    Returns (manager, workers wanted). :class:`ClusterFailed` with the reason when no worker came."""
    from dask_clusters import ClusterError, get_cluster

    try:
        handle = get_cluster()
        manager = handle.manager
        room = manager.limits.most_workers(manager.id)
        want = min(manager.settings.adapt_maximum, room)
        if want < 1:
            raise ClusterFailed("your other Dask clusters hold every worker your limit allows "
                                f"({manager.limits.total.describe()})")
        manager.adapt(minimum=want, maximum=want)
        try:
            manager.wait_for_workers(want, progress=progress)
        except ClusterError:
            if manager.ready_workers() == 0:
                raise
        return manager, want
    except ClusterError as exc:
        raise ClusterFailed(str(exc)) from None


def worker_memory(manager) -> tuple[list[str], int]:
    """(the workers' addresses, the smallest memory limit among them in bytes)."""
    workers = manager.client.scheduler_info().get("workers", {})
    limits = [w.get("memory_limit") or 0 for w in workers.values()]
    limit = min(limits) if limits and all(limits) else manager.settings.worker_memory_bytes
    return sorted(workers), int(limit)


def table_layout(rows: int, columns: int, workers: int, limit: int) -> tuple[list[tuple[int, int]], bool]:
    """(row ranges of the partitions, held in the workers' memory?) of a table of ``rows`` x
    ``columns`` float64 on ``workers`` workers whose memory limit is ``limit`` bytes.

    Partitions are at most :data:`PART_BYTES` and a quarter of a worker's limit, as many as a
    multiple of the workers (equal shares of a frame). The table is held
    in memory only if every worker stays under :data:`HELD_SHARE` of its limit with its share of the
    partitions, one more (partitions do not always split evenly, and a worker that takes over a lost
    one loads it beside its own) and :data:`WORKER_BASE`; else the workers read the cache at each
    frame, a slice at a time, and nothing of the table stays in their memory."""
    nbytes = rows * 8 * columns
    part_bytes = max(1, min(PART_BYTES, int(limit * PART_SHARE)))
    wanted = max(workers, math.ceil(nbytes / part_bytes))
    # a multiple of the workers: each does the same share of a frame (3 parts on 2 workers made
    # one worker do two while the other waited)
    ranges = partitions(rows, math.ceil(wanted / max(1, workers)) * max(1, workers))
    biggest = max((b - a for a, b in ranges), default=0) * 8 * columns
    per_worker = math.ceil(len(ranges) / max(1, workers)) + 1
    return ranges, per_worker * biggest + WORKER_BASE <= HELD_SHARE * limit


def hold_table(manager, plan: TablePlan, workers: int) -> tuple[list, bool]:
    """The table's partitions on the workers (loaded once per table and process); (futures, in memory?)."""
    names = tuple(dict.fromkeys(plan.columns.values()))
    addresses, limit = worker_memory(manager)
    ranges, in_memory = table_layout(plan.rows, len(names), workers, limit)
    n = len(ranges)
    key = json.dumps([plan.entry, plan.identity, names, n, in_memory, manager.id], sort_keys=True, default=str)
    with _PARTS_LOCK:
        parts = _PARTS.get(key)
        if parts is None:
            for old in list(_PARTS):  # one table at a time per server: the previous one is released
                del _PARTS[old]
            client = manager.client
            parts = []
            for i, (a, b) in enumerate(ranges):  # spread evenly; another worker if that one is gone
                where = {"workers": [addresses[i % len(addresses)]], "allow_other_workers": True} if addresses else {}
                parts.append(client.submit(Rows.load, plan.entry, plan.identity, names, a, b, in_memory,
                                           pure=False, **where))
            _PARTS[key] = parts
    deadline = time.monotonic() + manager.settings.start_timeout
    for part in parts:  # the client is not the process default: wait on each future
        problem = part.exception(timeout=max(1.0, deadline - time.monotonic()))
        if problem is not None:
            with _PARTS_LOCK:
                _PARTS.pop(key, None)
            raise ClusterFailed(str(problem))
    return parts, in_memory


def extent(manager, plan: TablePlan, parts: list, source, settings: dict) -> tuple[tuple, tuple, int, int]:
    """(x range, y range, rows plotted, rows a log axis cannot show) of the first view."""
    opts = settings["options"]
    logx, logy = bool(opts["logx"]), bool(opts["logy"])
    stats = source.cached.stats
    plain_stats = plan.plain and all(plan.columns.get(n) in stats for n in (plan.x, plan.y))
    if plain_stats and all(not log or (stats[plan.columns[n]].lo > 0 and not stats[plan.columns[n]].not_finite)
                           for n, log in ((plan.x, logx), (plan.y, logy))):
        ranges = []
        for name, log in ((plan.x, logx), (plan.y, logy)):
            s = stats[plan.columns[name]]
            lo, hi = (s.lo_positive if log else s.lo), s.hi
            if math.isnan(lo) or math.isnan(hi):
                raise PlotProblem(f"Column '{name}' has no finite values" + (" above zero for the log axis" if log else "")
                                 + ".")
            ranges.append(render.padded(lo, hi, log))
        return ranges[0], ranges[1], plan.rows, 0
    client = manager.client
    found = client.submit(add_extents, client.map(extent_part, parts, plan=plan, logx=logx, logy=logy, pure=False),
                          pure=False).result(timeout=FRAME_TIMEOUT)
    if found["rows"] == 0:
        raise PlotProblem("No rows left to plot: the filters exclude every row.")
    ranges = []
    for axis, name, log in (("x", plan.x, logx), ("y", plan.y, logy)):
        lo, hi, _ = found[axis]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise PlotProblem(f"Column '{name}' has no finite values" + (" above zero for the log axis" if log else "")
                             + ".")
        ranges.append(render.padded(lo, hi, log))
    hidden = max(found["x"][2], found["y"][2])
    return ranges[0], ranges[1], found["rows"], hidden


async def draw_on_cluster(app, spec, ticket: int) -> bool:
    """Draw ``spec`` on the cluster if it should be; True when drawn (or superseded), False to draw in the
    server (the reason, if any, is then in ``app.notice``)."""
    use, why_not = wanted(app.compute, app.source, spec, app.config.cluster_rows, app.config.rasterize_threshold)
    app.cluster_note = why_not
    if not use:
        return False
    source = app.source
    settings = plot_settings(spec, RASTERIZED)
    plan = table_plan(source, spec, settings)
    latest: dict = {}
    app.mode_text = "**Starting the Dask cluster…**"
    work = asyncio.ensure_future(asyncio.to_thread(_prepare, plan, source, settings, latest.__setitem__))
    try:
        while not work.done():
            await asyncio.wait([work], timeout=0.25)
            if "progress" in latest and ticket == app._plots_started:
                p = latest["progress"]
                app.mode_text = f"**Starting Dask workers** on {p.where}: {p.sentence}"
        manager, parts, in_memory, (x0, y0, rows, hidden) = work.result()
    except PlotProblem:
        app.mode_text = ""
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the cluster: a sentence and the server draws
        app.cluster_note = (f"The Dask cluster could not draw this plot: {_sentence(exc).rstrip('.')}. It is "
                            "drawn in your server instead.")
        app.mode_text = ""
        return False
    if ticket != app._plots_started:
        return True  # the student changed the plot meanwhile: the newer one draws

    def in_server(settings_, x_range, y_range, width, height):
        if getattr(in_server, "frame", None) is None:
            in_server.frame = source.table(spec)
        return render.aggregate(in_server.frame, settings_, x_range, y_range, width, height)

    def problem(sentence: str) -> None:
        app.notice = sentence

    view = ClusterView(manager, plan, parts, in_server, problem)
    app.show_raster(spec, settings, render.RasterFigure(None, settings, on_update=app._show_view,
                                                        aggregator=view.aggregate, extent=(x0, y0)), view)
    where = f"{manager.ready_workers()} Dask worker{'s' if manager.ready_workers() != 1 else ''} ({manager.label})"
    held = "held in their memory" if in_memory else "read from your cache at each frame (too large for their memory)"
    link = manager.dashboard_link
    app.mode_text = (f"**Rasterized** (Datashader on {where}, {rows:,} rows {held})"
                     + (f" · [Dask dashboard]({link})" if link else ""))
    app.notice = f"{hidden:,} of {rows:,} rows have values ≤ 0 and cannot be shown on a log axis." if hidden else ""
    return True


def _prepare(plan: TablePlan, source, settings: dict, report: Callable) -> tuple:
    """In a worker thread: the cluster, the table's partitions on it, the first view's extent."""
    manager, workers = start_cluster(lambda p: report("progress", p))
    try:
        parts, in_memory = hold_table(manager, plan, max(1, manager.ready_workers()))
        return manager, parts, in_memory, extent(manager, plan, parts, source, settings)
    except TimeoutError:
        raise ClusterFailed(f"the workers did not load the table within {manager.settings.start_timeout:.0f} s") \
            from None

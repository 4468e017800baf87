"""Dask workers as real SLURM jobs (Debian's single-node SLURM of the ``slurm`` fixture), started
by dask-jobqueue's SLURMCluster from a user's server process running as the user's own account:
the plotting app rasterizes on them exactly as in the server, adapting down cancels jobs, a
worker killed mid-frame changes nothing, workers that cannot reach the scheduler give a sentence
and a local plot, and neither a closed nor a killed server leaves a job in squeue."""
from __future__ import annotations

import pytest

from tests.conftest import require_root
from tests.test_dask_support import DaskUser, dask_account, processes_of, wait_until

pytestmark = pytest.mark.integration

SETTINGS = dict(backend="slurm", worker_memory="1 GiB", worker_cores=1, adapt_maximum=2,
                scheduler_interface="lo", poll_interval=1.0, batch_env=["SLURM_CONF"],
                worker_walltime="00:30:00", adapt_interval=0.5)

SAMPLE = """
    from panel_apps.sample_data import main as sample_data
    sample_data(["--out", os.path.expanduser("~/run.txt"), "--rows", "{rows}"])
"""

APP = """
    import asyncio
    import numpy as np
    from panel_apps import render
    from panel_apps.app import PlotApp
    from panel_apps.config import PlotAppConfig
    from panel_apps.settings import plot_settings
    app = PlotApp(PlotAppConfig(home=os.path.expanduser("~"), data_roots=[]))
    shown = []
    app.param.watch(lambda e: shown.append(e.new), "mode_text")
    app.compute = "cluster"
    app.files.path = "run.txt"
    app.files.param.trigger("preview")
    asyncio.run(app.load())

    def compare(label):
        # the frame on screen, and the same frame aggregated in this process from the same table
        agg = app.raster.last
        frame = app.source.table(app.spec)
        here = render.aggregate(frame, plot_settings(app.spec, "rasterized"), agg.x_range, agg.y_range,
                                *app.raster.canvas_size())
        same = bool(np.array_equal(agg.image, here.image, equal_nan=True))
        close = bool(np.allclose(agg.image, here.image, rtol=1e-12, atol=0, equal_nan=True))
        report(step=label, same=same, close=close, rows=agg.rows_in_view, here=here.rows_in_view,
               error=app.error, notice=app.notice, mode=app.mode_text)
"""


@pytest.fixture
def user(slurm, local_accounts, shared_tmp):
    require_root()
    u = DaskUser(dask_account(local_accounts), shared_tmp, local_accounts.python_env)
    u.env = {"SLURM_CONF": str(slurm.conf)}
    yield u
    for job in slurm.queue():   # a failed test must not leave its jobs behind
        slurm.run("scancel", job, check=False)
    u.remove()


def jobs_of(slurm, account) -> list[str]:
    out = slurm.run("squeue", "-h", "-u", account.name, "-o", "%i %T").stdout
    return [line.split()[0] for line in out.splitlines()
            if line.split() and line.split()[1] not in ("COMPLETING", "COMPLETED")]


def test_the_plot_app_rasterizes_on_slurm_workers_exactly_as_in_the_server(slurm, user):
    user.settings(**SETTINGS)
    lines = user.run(SAMPLE.format(rows=300_000) + APP + """
    import subprocess
    jobs = subprocess.run(["squeue", "-h", "-o", "%i %u %T"], capture_output=True, text=True).stdout
    report(step="jobs", jobs=jobs.split("\\n"), progress=[m for m in shown if "ready" in m])
    compare("first frame")
    (x0, x1), (y0, y1) = app.raster.last.x_range, app.raster.last.y_range
    app.raster.render((x0 + (x1 - x0) / 4, x1 - (x1 - x0) / 3), (y0, y0 + (y1 - y0) / 2))  # a zoom
    compare("zoomed")
    app.extras.param.update(column_name="r", formula="sqrt(t**2 + q1**2)")   # as the student types
    app.extras.param.trigger("add_column")
    app.extras.param.update(filter_column="t", filter_min="10")
    app.extras.param.trigger("add_filter")
    app.spec.param.update(y="r", color_by="q2")
    asyncio.run(app._replot())
    compare("formula, filter and mean colour")
    """, timeout=300)
    by_step = {line["step"]: line for line in lines}
    jobs = [j.split() for j in by_step["jobs"]["jobs"] if j.strip()]
    assert len(jobs) == 2 and {who for _, who, _ in jobs} == {user.account.name}, lines
    assert any("of 2 workers ready" in m for m in by_step["jobs"]["progress"])
    for step in ("first frame", "zoomed"):
        seen = by_step[step]
        assert seen["same"] and seen["rows"] == seen["here"] > 0, seen   # counts: every pixel
        assert "2 Dask workers (SLURM)" in seen["mode"] and "Dask dashboard" in seen["mode"]
    assert by_step["zoomed"]["rows"] < by_step["first frame"]["rows"]
    mean = by_step["formula, filter and mean colour"]
    # means: the same pixels, the sums added in another order (last bits)
    assert mean["close"] and mean["rows"] == mean["here"] > 0 and not mean["error"], mean
    assert "SLURM" in mean["mode"]
    wait_until(lambda: not jobs_of(slurm, user.account), 30, "the jobs leave when the server ends")


def test_adapting_down_cancels_the_jobs_and_a_closed_server_leaves_none(slurm, user):
    user.settings(**{**SETTINGS, "adapt_cooldown": 2.0, "adapt_wait_count": 2})
    owner = user.start("""
    import subprocess
    from dask_clusters import get_cluster
    def jobs():
        out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout
        return [l.split()[0] for l in out.splitlines() if l.split()[1] in ("PENDING", "RUNNING")]
    cluster = get_cluster(2)
    cluster.wait_for_workers(2, timeout=120)
    report(step="two", jobs=jobs())
    cluster.adapt(0, 2)               # no work: adaptive scaling retires both after the cool-down
    deadline = time.time() + 90
    while jobs() and time.time() < deadline:
        time.sleep(0.5)
    report(step="adapted", jobs=jobs(), events=[e.text for e in cluster.manager.events])
    cluster.scale(1)
    cluster.wait_for_workers(1, timeout=120)
    report(step="one", jobs=jobs())
    """)
    try:
        two = owner.expect("two")["jobs"]
        assert len(two) == 2
        adapted = owner.expect("adapted", timeout=120)
        assert adapted["jobs"] == [], adapted
        one = owner.expect("one")["jobs"]
        assert len(one) == 1 and not set(one) & set(two)
        owner.wait(60)   # the server ends normally: its cluster closes
    finally:
        owner.kill()
    assert jobs_of(slurm, user.account) == []
    wait_until(lambda: not processes_of(user.account.name), 20, "every process of the user ends")


def test_a_killed_server_leaves_no_job_behind_not_even_a_queued_one(slurm, user):
    user.settings(**{**SETTINGS, "adapt_maximum": 3})
    owner = user.start("""
    from dask_clusters import get_cluster
    cluster = get_cluster(3)          # two run on the two cores, the third waits in the queue
    cluster.wait_for_workers(2, timeout=120)
    report(step="running", queued=cluster.manager.progress().queued)
    time.sleep(600)
    """)
    try:
        owner.expect("running")
        wait_until(lambda: len(jobs_of(slurm, user.account)) == 3, 30, "three jobs in squeue")
        owner.kill()  # SIGKILL: no atexit, no finally, nothing in the server runs
        wait_until(lambda: not jobs_of(slurm, user.account), 20, "squeue empties")
        wait_until(lambda: not processes_of(user.account.name), 30, "every process ends")
    finally:
        owner.kill()


def test_a_worker_killed_mid_frame_does_not_change_the_frame(slurm, user):
    user.settings(**SETTINGS)
    lines = user.run("""
    import signal, threading
    import numpy as np
    from panel_apps import render
    from panel_apps.cluster import ClusterView, hold_table, start_cluster
    from panel_apps.cluster_tasks import TablePlan
    from panel_apps.colcache import CacheWriter, entry_path, open_entry
    # a converted table of 6M rows, written as the app's cache writes it
    folder = os.path.expanduser("~/.cache/nebulahub/plot/me")
    os.makedirs(folder, mode=0o700)
    identity = {"file": "made-for-the-test"}
    writer = CacheWriter(entry_path(folder, "big", "0"), ["a", "b"], identity)
    rng = np.random.default_rng(7)
    for _ in range(6):
        writer.append({"a": rng.normal(size=1_000_000), "b": rng.normal(size=1_000_000)})
    cached = open_entry(writer.commit(), identity)
    plan = TablePlan(entry=str(cached.path), identity=identity, rows=cached.rows,
                     columns={"a": "a", "b": "b"}, derived={"s": "sin(a) * cos(b) + sqrt(abs(a * b))"},
                     x="a", y="s")
    manager, workers = start_cluster(lambda p: None)
    parts, _ = hold_table(manager, plan, workers)
    settings = dict(aggregator="count", spread=0, hover=None, options=dict(logx=False, logy=False))
    view = ClusterView(manager, plan, parts, None, lambda s: None)
    client = manager.client
    result, killed = {}, {}

    def frame():
        result["agg"] = view.cluster_frame(settings, (-4, 4), (-1, 3), 800, 600)

    worker = threading.Thread(target=frame)
    worker.start()
    while not killed and worker.is_alive():   # kill a worker while it aggregates
        for address, keys in client.processing().items():
            if any("aggregate_part" in str(k) for k in keys):
                pid = client.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)
                killed.update(address=address, pid=pid)
                break
        time.sleep(0.005)
    worker.join()
    import pandas as pd
    from panel_apps import expressions
    table = pd.DataFrame({"a": cached.column("a"), "b": cached.column("b")})
    here = render.aggregate(pd.DataFrame({"a": table.a, "s": expressions.evaluate(plan.derived["s"], table)}),
                            dict(settings, x="a", y="s", c=None, method="scatter"), (-4, 4), (-1, 3), 800, 600)
    report(step="frame", killed=killed, same=bool(np.array_equal(result["agg"].image, here.image, equal_nan=True)),
           rows=result["agg"].rows_in_view, here=here.rows_in_view,
           events=[e.text for e in manager.events])
    """, timeout=300)
    seen = next(line for line in lines if line["step"] == "frame")
    assert seen["killed"], "a worker was killed while aggregating"
    assert seen["same"] and seen["rows"] == seen["here"] > 1_000_000, seen


def test_workers_that_cannot_reach_the_scheduler_give_a_sentence_and_a_local_plot(slurm, user):
    # the workers are told an address nobody listens on (as behind a wrong interface or NAT)
    user.settings(**{**SETTINGS, "scheduler_contact_address": "127.0.0.1:9", "worker_death_timeout": 5.0,
                     "max_failed_jobs": 1, "start_timeout": 120.0})
    lines = user.run(SAMPLE.format(rows=200_000) + APP + """
    compare("drawn")
    """, timeout=300)
    seen = next(line for line in lines if line["step"] == "drawn")
    assert "could not draw this plot" in seen["notice"] and "in your server instead" in seen["notice"]
    assert "before their worker could work" in seen["notice"], seen["notice"]
    assert seen["mode"].startswith("**Rasterized** (Datashader,") and seen["same"], seen
    wait_until(lambda: not jobs_of(slurm, user.account), 30, "no job is left")

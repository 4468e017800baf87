"""Dask workers as HTCondor jobs: dask-jobqueue's real HTCondorCluster code against the fake
condor_* commands (tests/condor/README: submit descriptions parsed with htcondor2.Submit, the
worker commands run for real), from a user's server process running as the user's account.
Adaptive scaling submits jobs for work and removes them only after its cool-down; held jobs and
jobs at their wall time are reported with HTCondor's reason and replaced; a killed server leaves
no job in the queue."""
from __future__ import annotations

import json
import os
import shutil
import signal
import uuid
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.test_dask_support import CONDOR_BIN, DaskUser, dask_account, processes_of, wait_until

pytestmark = pytest.mark.integration

SETTINGS = dict(backend="htcondor", worker_memory="1 GiB", worker_cores=1, adapt_maximum=2,
                scheduler_interface="lo", poll_interval=1.0, batch_env=["FAKE_CONDOR_STATE"],
                worker_walltime="00:30:00", adapt_interval=0.5)


class Pool:
    """The fake pool's state folder: its knobs and the commands it was asked."""

    def __init__(self, state: Path):
        self.state = state

    def next_job(self, **knob) -> None:
        path = self.state / "next_job.json"
        path.write_text(json.dumps(knob))
        os.chmod(path, 0o666)

    def commands(self, name: str) -> list[list[str]]:
        log = self.state / "commands.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [c for c in map(json.loads, lines) if c[0] == name]

    def queue(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in self.state.glob("queue/*.json")]

    def live(self) -> list[dict]:
        return [ad for ad in self.queue() if ad["JobStatus"] in (1, 2, 5, 7)]


@pytest.fixture
def pool(shared_tmp, local_accounts):
    require_root()
    account = dask_account(local_accounts)
    state = Path(shared_tmp) / f"condor-{uuid.uuid4().hex[:8]}"
    state.mkdir(mode=0o700)
    os.chown(state, account.uid, account.gid)
    p = Pool(state)
    yield p
    # a failed test must not leave its jobs running; a removed idle job's shepherd still sleeps
    for ad in [*p.queue(), *(json.loads(h.read_text()) for h in state.glob("history/*.json"))]:
        for key in ("_job", "_shepherd"):
            if key in ad and _started_by_the_fake(ad[key]):
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.killpg(ad[key], sig)
                    except (ProcessLookupError, PermissionError):
                        pass
    shutil.rmtree(state, ignore_errors=True)


def _started_by_the_fake(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"FAKE_CONDOR_STATE=" in f.read()
    except OSError:
        return False


def users_processes(account) -> list[str]:
    """The user's processes, but for the fake's shepherds (they play the batch system)."""
    return [p for p in processes_of(account.name) if "fake_condor.py _shepherd" not in p]


@pytest.fixture
def user(pool, local_accounts, shared_tmp):
    u = DaskUser(dask_account(local_accounts), shared_tmp, local_accounts.python_env)
    # the fake's python3 must have htcondor2: the servers' environment comes first on PATH
    u.env = {"FAKE_CONDOR_STATE": str(pool.state),
             "PATH": f"{CONDOR_BIN}:{local_accounts.python_env}/bin:/usr/local/bin:/usr/bin:/bin"}
    yield u
    u.remove()


TIMELINE = """
    from dask_clusters import get_cluster
    cluster = get_cluster()
    manager = cluster.manager
    timeline = []

    def look():
        timeline.append((time.monotonic(), len(manager.ledger.jobs), manager.ready_workers()))
"""


def test_adaptive_scaling_submits_for_work_and_removes_only_after_the_cool_down(pool, user):
    user.settings(**{**SETTINGS, "adapt_cooldown": 6.0, "adapt_wait_count": 2,
                     "adapt_minimum": 0})
    lines = user.run(TIMELINE + """
    look()
    client = cluster.client
    futures = client.map(lambda i: time.sleep(2) or i, range(16), pure=False)   # a burst of work
    while not all(f.done() for f in futures):
        look(); time.sleep(0.2)
    report(step="work", results=sorted(client.gather(futures)), jobs=len(manager.ledger.jobs))
    del futures   # results held in a notebook would keep a worker (dask keeps room for data)
    deadline = time.monotonic() + 60
    while manager.ledger.jobs and time.monotonic() < deadline:   # idle: scaled down to none
        look(); time.sleep(0.2)
    look()
    report(step="idle", timeline=timeline, cooldown=manager.settings.adapt_cooldown,
           events=[e.text for e in manager.events])
    """, timeout=240)
    work = next(line for line in lines if line["step"] == "work")
    assert work["results"] == list(range(16)) and work["jobs"] >= 1
    idle = next(line for line in lines if line["step"] == "idle")
    timeline = idle["timeline"]
    assert timeline[-1][1] == 0, "every job was removed once the work was done"
    assert max(jobs for _, jobs, _ in timeline) == 2, "the burst got the adaptive maximum"
    last_up = max(t for (t, jobs, _), (_, before, _) in zip(timeline[1:], timeline) if jobs > before)
    first_down = min(t for (t, jobs, _), (_, before, _) in zip(timeline[1:], timeline)
                     if jobs < before)
    assert first_down - last_up >= idle["cooldown"] - 0.5, "nothing retired during the cool-down"
    submitted, removed = pool.commands("submit"), pool.commands("rm")
    assert len(submitted) == 2 and len(removed) == 2, (submitted, removed, idle["events"])
    assert pool.live() == []


def test_a_held_worker_job_is_reported_with_htcondors_reason_and_replaced(pool, user):
    user.settings(**SETTINGS)
    pool.next_job(hold="no slots with GPUs are left in this pool")   # the first job is held
    lines = user.run("""
    from dask_clusters import get_cluster
    cluster = get_cluster(1)
    cluster.wait_for_workers(1, timeout=120)
    report(step="ready", events=[e.text for e in cluster.manager.events], shown=repr(cluster))
    """, timeout=240)
    ready = next(line for line in lines if line["step"] == "ready")
    held = [e for e in ready["events"] if "is held by HTCondor" in e]
    assert held and "no slots with GPUs are left in this pool" in held[0]
    assert "removed and another one requested" in held[0]
    assert "is held by HTCondor" in ready["shown"]        # the notebook's view says so too
    assert [c[1] for c in pool.commands("rm")][:1] == ["1.0"] and len(pool.commands("submit")) == 2
    assert pool.live() == []


@pytest.mark.parametrize("margin, said", [
    (0.0, "exceeded allowed execute duration"),     # held by HTCondor at its wall time
    (5.0, "retired before its wall time"),          # --lifetime: it leaves before, on purpose
])
def test_a_worker_at_its_wall_time_is_reported_and_replaced(pool, user, margin, said):
    user.settings(**{**SETTINGS, "worker_walltime": "00:00:10", "worker_lifetime_margin": margin})
    lines = user.run("""
    from dask_clusters import get_cluster
    cluster = get_cluster(1)
    cluster.wait_for_workers(1, timeout=120)
    deadline = time.monotonic() + 60
    while len([e for e in cluster.manager.events if "wall time" in e.text or "execute duration"
               in e.text]) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    cluster.wait_for_workers(1, timeout=120)
    report(step="replaced", events=[e.text for e in cluster.manager.events],
           ready=cluster.manager.ready_workers(), answer=cluster.client.submit(sum, [1, 2]).result())
    """, timeout=240)
    replaced = next(line for line in lines if line["step"] == "replaced")
    assert any(said in e for e in replaced["events"]), replaced["events"]
    assert replaced["ready"] == 1 and replaced["answer"] == 3
    assert len(pool.commands("submit")) >= 2
    assert pool.live() == []


def test_a_killed_server_leaves_no_job_in_the_queue(pool, user):
    user.settings(**SETTINGS)
    pool.next_job(idle_seconds=600)   # the first job waits in the queue
    owner = user.start("""
    from dask_clusters import get_cluster
    cluster = get_cluster(2)
    cluster.wait_for_workers(1, timeout=120)
    report(step="one running", jobs=cluster.manager.ledger.jobs)
    time.sleep(600)
    """)
    try:
        owner.expect("one running")
        assert {ad["JobStatus"] for ad in pool.live()} == {1, 2}   # one idle, one running
        owner.kill()
        wait_until(lambda: not pool.live(), 30, "the queue empties")
        wait_until(lambda: not users_processes(user.account), 30,
                   lambda: f"every process ends (left: {users_processes(user.account)})")
        assert sorted(c[1] for c in pool.commands("rm")) == ["1.0", "2.0"]
    finally:
        owner.kill()

"""The Jobs page's first paint with 500 jobs of 10 users in the jobs database, in Chromium.

Seeds the jobs service's database directly (``jobforms.service.store``: 10 users, 50 ended jobs
each with their state history), starts a real hub with the jobs service and the local provider
(as ``tests/test_jobs_page.py`` does; root needed for the users' own accounts), starts the
servers of a user with 50 jobs and of a user with none, logs in with the Debian Chromium and
loads each page several times. Prints, per page, min and median of:

* first contentful paint (the browser's Paint Timing entry), and
* for the Jobs page, the time from navigation until its apps are listed, its first job card and
  all cards it draws at first (10) are on the page;

next to the hub's home page first paint in the same run (the baseline), and the jobs service's
list-my-jobs API (p50/p99) for the same user.

Usage: python benchmarks/bench_jobs_page.py [--loads 5]
"""
from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from tests.hubproc import PROJECT, HubProcess, local_provider_config  # noqa: E402

USERS = ["student"] + [f"user{i}" for i in range(1, 10)]
JOBS_PER_USER = 50
NEWCOMER = "newcomer"  # a user without jobs: the Jobs page's own baseline
SERVICE = "/services/nebulahub-jobs"
PAGE_SIZE = 10  # cards the Jobs page draws at first (jobforms.page.jobs.PAGE_SIZE)


def seed(db_url: str) -> int:
    """500 ended jobs of 10 users, each with its transitions, straight into the store."""
    from jobforms.service.store import JobRow, TransitionRow, open_store

    engine, Session = open_store(db_url)
    start = datetime.now(timezone.utc) - timedelta(days=30)
    endings = ["done"] * 8 + ["failed", "cancelled"]
    count = 0
    with Session() as s:
        for u, user in enumerate(USERS):
            for i in range(JOBS_PER_USER):
                job_id = uuid.uuid4().hex[:12]
                at = start + timedelta(minutes=37 * (u * JOBS_PER_USER + i))
                state = endings[i % len(endings)]
                reason = {"done": "Done.", "failed": "The program exited with code 1.",
                          "cancelled": "Cancelled by you."}[state]
                request = {"app_id": "ljj", "parameters": {
                    "length": 20.0 + i, "boundary": "annular", "fluxons": 1 + i % 4,
                    "velocity": 0.0, "alpha": 0.1, "gamma": 0.2, "points": 400,
                    "time_step": 0.02, "steps": 20000, "record_every": 50},
                    "resources": {"backend": "local", "nodes": 1, "cores": 1, "memory_mb": 512,
                                  "walltime_s": 600},
                    "destination": {"url": None}}
                row = JobRow(id=job_id, user=user, app_id="ljj",
                             app_name="Long Josephson junctions simulation", request=request,
                             backend="local", backend_id=str(10_000 + count), state=state,
                             reason=reason, account=user, workdir=f"/nonexistent/{job_id}",
                             destination="", exit_code=0 if state == "done" else 1,
                             results=["ljj.dat"] if state == "done" else [], machines=[],
                             created_at=at, updated_at=at + timedelta(minutes=3))
                chain = [None, "pending", "executing"] + (["terminating", "done"] if state == "done"
                                                          else [state])
                for k, (source, target) in enumerate(zip(chain, chain[1:], strict=False)):
                    row.transitions.append(TransitionRow(source=source, target=target,
                                                         at=at + timedelta(seconds=30 * k),
                                                         reason="Seeded."))
                s.add(row)
                count += 1
        s.commit()
    engine.dispose()
    return count


def start_hub(workdir: Path, homes: Path, db_url: str, prefix: str, registry: str, env_path: str):
    h = HubProcess(workdir / "hub", local_provider_config(str(homes), env_path, prefix, registry)
                   + textwrap.dedent(f"""
        from jobforms.service import managed_service
        jobs, jobs_roles = managed_service(__file__)
        c.JupyterHub.services.append(jobs)
        c.JupyterHub.load_roles.extend(jobs_roles)
        c.OpenNebulaSpawner.service_urls = {{jobs["name"]: f"{{jobs['url']}}/services/{{jobs['name']}}/"}}
        c.JupyterHub.template_paths = ["{PROJECT}/templates"]
        c.JobsService.db_url = "{db_url}"
        c.JobsService.account_template = "{prefix}{{username}}"
        c.JobsService.home_template = "{homes}/{{username}}"
    """))
    h.start()
    deadline = time.monotonic() + 60
    while requests.get(f"{h.url}{SERVICE}/", allow_redirects=False, timeout=5).status_code != 302:
        assert time.monotonic() < deadline, h.log()[-3000:]
        time.sleep(0.5)
    return h


def summary(values: list[float]) -> str:
    return f"min {min(values) * 1e3:6.0f} ms   median {statistics.median(values) * 1e3:6.0f} ms"


def load_times(page, url: str, loads: int, drawn: dict[str, str]) -> dict[str, list[float]]:
    """Seconds from navigation to the first contentful paint, and to each of ``drawn``
    (label -> selector) being on the page."""
    out: dict[str, list[float]] = {"first contentful paint": [], **{k: [] for k in drawn}}
    for _ in range(loads):
        page.goto("about:blank")
        page.goto(url, wait_until="commit")
        for label, selector in drawn.items():
            page.wait_for_selector(selector, timeout=120_000)
            out[label].append(page.evaluate("performance.now()") / 1e3)
        page.wait_for_load_state("load")
        fcp = page.wait_for_function("""() => {
            const p = performance.getEntriesByName('first-contentful-paint')[0];
            return p ? p.startTime : null }""", timeout=120_000).json_value()
        out["first contentful paint"].append(fcp / 1e3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=5, help="page loads per page (default 5)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_jobs_page: needs root (each user's server runs as their own account)")
    from playwright.sync_api import sync_playwright

    from machines.localusers import remove_created
    from machines.serverenv import ensure_server_env
    from tests.browser import CHROMIUM, CHROMIUM_ARGS, hub_login

    env_path = ensure_server_env()
    work = Path(tempfile.mkdtemp(prefix="nebulahub-bench-jobs-", dir="/var/tmp"))
    os.chmod(work, 0o711)
    homes = work / "homes"
    homes.mkdir()
    db_url = f"sqlite:///{work}/jobs.sqlite"
    registry = str(work / "created-accounts")
    t0 = time.monotonic()
    seeded = seed(db_url)
    print(f"seeded {seeded} jobs of {len(USERS)} users in {time.monotonic() - t0:.1f} s")
    hub = start_hub(work, homes, db_url, f"nhb{secrets.token_hex(2)}-", registry, env_path)
    try:
        for user in ("student", NEWCOMER):
            hub.create_user(user)
            assert hub.spawn(user).status_code in (201, 202)
            assert hub.progress(user)[-1].get("ready"), hub.log()[-3000:]
        token = hub.user_token("student")
        api = []
        for _ in range(100):
            t = time.perf_counter()
            r = requests.get(f"{hub.url}{SERVICE}/api/jobs", timeout=30,
                             headers={"Authorization": f"token {token}"})
            api.append(time.perf_counter() - t)
            assert r.status_code == 200 and len(r.json()) == JOBS_PER_USER, r.text[:300]
        api.sort()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            results = {}
            for user in ("student", NEWCOMER):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                hub_login(page, hub.url, user, "test-password")
                page.wait_for_url(re.compile(r".*/(hub/home|user/.*)$"), timeout=60_000)
                page.goto(f"{hub.url}/user/{user}/nebulahub-jobs/")  # starts the page's server
                page.wait_for_selector(".nh-catalogue .nh-app", timeout=120_000)
                jobs_page = f"{hub.url}/user/{user}/nebulahub-jobs/"
                apps = {"apps listed": ".nh-catalogue .nh-app"}
                if user == "student":
                    results["hub home (baseline)"] = load_times(page, f"{hub.url}/hub/home",
                                                                args.loads, {})
                    results[f"Jobs page, {JOBS_PER_USER} jobs"] = load_times(
                        page, jobs_page, args.loads,
                        {**apps, "first job card": ".nh-job",
                         f"{PAGE_SIZE} job cards": f".nh-job >> nth={PAGE_SIZE - 1}"})
                else:
                    results["Jobs page, no jobs"] = load_times(
                        page, jobs_page, args.loads, {**apps, "'No jobs yet'": "text=No jobs yet"})
                context.close()
            browser.close()
    finally:
        hub.stop()
        remove_created(registry)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{seeded} jobs of {len(USERS)} users in the jobs database; {args.loads} loads per page "
          f"(Chromium {CHROMIUM}, {os.cpu_count()} cores)")
    for name, figures in results.items():
        for what, values in figures.items():
            print(f"  {name:<22} {what:<24} {summary(values)}")
    print(f"  list-my-jobs API ({JOBS_PER_USER} jobs)    p50 {statistics.median(api) * 1e3:.1f} ms"
          f"   p99 {api[round(0.99 * (len(api) - 1))] * 1e3:.1f} ms (100 calls through the proxy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

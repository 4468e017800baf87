"""Jobs benchmark: submission -> executing overhead (local, SLURM) and state-change push latency.

Starts what the tests start (root needed): a real hub with the jobs service, users' own Unix
accounts, one real single-node SLURM. Prints, with baselines measured in the same run:

* submit -> "executing" seen by a client of the events stream, p50/p95, for the ``local`` and
  the ``slurm`` backend; baselines: the same program started directly as the user's account
  (``runuser``) until its first line, and ``sbatch`` + ``squeue`` polled every 0.1 s until R;
  the service looks at the batch systems every ``poll_interval`` (printed), which bounds the
  overhead from below;
* state-change push latency: from the moment the service records a transition (its ``updated``
  time) until the event arrives, in Debian's Chromium through the hub's proxy (EventSource on
  the service's page, the user logged in, with its xsrf token), on the Jobs page (the page's
  own server follows the service and updates the badge over Panel's websocket: what a student
  sees) and in a Python client (target <= 50 ms on loopback).

Usage: python benchmarks/bench_jobs.py [--jobs 8]
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from tests.hubproc import HubProcess  # noqa: E402
from tests.jobs_support import SERVICE, Api, jobs_config  # noqa: E402
from benchmarks.figures import pct  # noqa: E402
from tests.slurm import SlurmCluster  # noqa: E402

POLL = 0.5  # the service's poll_interval here (tests' value; the shipped default is 2 s)


def updated_ms(job: dict) -> float:
    at = datetime.fromisoformat(job["updated"])
    if at.tzinfo is None:
        from datetime import timezone
        at = at.replace(tzinfo=timezone.utc)
    return at.timestamp() * 1000


class Events(threading.Thread):
    """A Python client of the service's event stream: (arrival ms, job) per event."""

    def __init__(self, api: Api):
        super().__init__(daemon=True)
        self.api, self.q = api, queue.Queue()
        self.resp = requests.get(f"{api.base}/events", headers=api.headers, stream=True,
                                 timeout=600)

    def run(self):
        try:
            for line in self.resp.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    self.q.put((time.time() * 1000, time.monotonic(), json.loads(line[5:])))
        except Exception:
            pass

    def wait_state(self, job_id: str, state: str, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while True:
            arrived, mono, job = self.q.get(timeout=max(0.1, deadline - time.monotonic()))
            if job["id"] == job_id and job["state"] == state:
                return arrived, mono, job


def submit_overhead(api: Api, events: Events, backend: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        r = api.submit("hello-test", {"backend": backend, "repeat": 2, "pause": 1})
        assert r.status_code == 201, r.text
        _, seen, _ = events.wait_state(r.json()["id"], "executing")
        out.append(seen - t0)
        api.wait(r.json()["id"], timeout=180)
    return out


def direct_local(account: str, python_env: str, app_dir: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        p = subprocess.Popen(["runuser", "-u", account, "--", f"{python_env}/bin/python3",
                              f"{app_dir}/hello.py", "--repeat=2", "--pause=1"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/")
        p.stdout.readline()
        out.append(time.monotonic() - t0)
        p.kill()
        p.wait()
    return out


def direct_slurm(slurm: SlurmCluster, account: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        # the resources the service asks for hello-test (its defaults), so SLURM schedules alike
        r = subprocess.run(["runuser", "-u", account, "--", "sbatch", "--parsable",
                            "--chdir=/tmp", "--output=/dev/null", "--nodes=1",
                            "--ntasks-per-node=1", "--cpus-per-task=1", "--mem=256M",
                            "--time=5", "--wrap=sleep 3"],
                           env=slurm.env, capture_output=True, text=True, check=True)
        job = r.stdout.strip().split(";")[0]
        while True:
            st = subprocess.run(["squeue", "-h", "-j", job, "-o", "%t"], env=slurm.env,
                                capture_output=True, text=True).stdout.strip()
            if st in ("R", "CG", "") or time.monotonic() - t0 > 60:
                break
            time.sleep(0.1)
        out.append(time.monotonic() - t0)
        subprocess.run(["scancel", job], env=slurm.env)
    while slurm.queue():
        time.sleep(0.2)
    return out


# In the page: every animation frame, look for done badges through Panel's shadow roots and
# note when each job's first appears (Playwright's own selector waits poll with growing pauses,
# which would blur the figure).
WATCH_BADGES = """() => {
  window.badgeSeen = window.badgeSeen || {};
  if (window.badgeWatch) return;
  window.badgeWatch = true;
  const all = (root, sel, out) => {
    root.querySelectorAll(sel).forEach(e => out.push(e));
    root.querySelectorAll('*').forEach(e => { if (e.shadowRoot) all(e.shadowRoot, sel, out); });
    return out;
  };
  const card = el => {
    for (let n = el; n; n = n.parentNode || n.host) {
      for (const c of (n.classList || [])) if (/^nh-job-[0-9a-f]+$/.test(c)) return c.slice(7);
    }
    return null;
  };
  const look = () => {
    const now = Date.now();
    for (const b of all(document, '.nh-badge-done', [])) {
      const id = card(b);
      if (id && !(id in window.badgeSeen)) window.badgeSeen[id] = now;
    }
    requestAnimationFrame(look);
  };
  look();
}"""


def browser_push(hub: HubProcess, api: Api, user: str, n: int) -> tuple[list[float], list[float]]:
    """(EventSource in the browser, the Jobs page's badge) latencies in ms: from the moment the
    service records "done" until the browser has the event / the page shows the done badge."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM,
                                                   headless=True, args=CHROMIUM_ARGS)
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Ftoken")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", "test-password")
            page.click("#login_submit")
            page.wait_for_url("**/hub/token", timeout=30_000)
            page.goto(f"{hub.url}{SERVICE}/api/openapi.json")  # through the service's OAuth
            assert "openapi" in page.content(), page.content()[:500]
            # a script's request (not a page view) authenticated by cookie carries the xsrf token,
            # as JupyterHub requires
            page.evaluate("""() => { window.seen = []; window.opened = false;
                const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || '';
                const es = new EventSource('%s/api/events?_xsrf=' + xsrf);
                es.onopen = () => { window.opened = true; };
                es.addEventListener('job', e => window.seen.push([Date.now(), e.data]));
                window.es = es; }""" % SERVICE)
            page.wait_for_function("() => window.opened", timeout=30_000)
            ids = []
            for _ in range(n):
                job_id = api.submit("hello-test", {"backend": "local"}).json()["id"]
                ids.append(job_id)
                api.wait(job_id, timeout=120)
            time.sleep(1)
            seen = page.evaluate("() => window.seen")
            page.evaluate("() => window.es.close()")

            # the Jobs page in the user's server: the badge of a job turning "done"
            jobs = ctx.new_page()
            jobs.goto(f"{hub.url}/user/{user}/nebulahub-jobs/")
            jobs.wait_for_selector(".nh-catalogue .nh-app", timeout=120_000)
            badge = []
            for _ in range(n):
                jobs.evaluate(WATCH_BADGES)  # timestamps each done badge in the page itself
                job_id = api.submit("hello-test", {"backend": "local"}).json()["id"]
                jobs.wait_for_function("id => window.badgeSeen[id]", arg=job_id, timeout=120_000)
                shown = jobs.evaluate("id => window.badgeSeen[id]", job_id)
                job = api("GET", f"/jobs/{job_id}").json()
                done = [h["at"] for h in job["history"] if h["to"] == "done"][0]
                badge.append(shown - updated_ms({"updated": done}))
        finally:
            ctx.close()
    out = []
    for arrived, data in seen:
        job = json.loads(data)
        if job["id"] in ids and job["state"] == "done":
            out.append(arrived - updated_ms(job))
    return out, badge


def python_push(api: Api, events: Events, n: int) -> list[float]:
    while not events.q.empty():
        events.q.get()
    out, ids = [], set()
    for _ in range(n):
        job_id = api.submit("hello-test", {"backend": "local"}).json()["id"]
        ids.add(job_id)
        api.wait(job_id, timeout=120)
    time.sleep(0.5)
    while not events.q.empty():
        arrived, _, job = events.q.get()
        if job["id"] in ids:
            out.append(arrived - updated_ms(job))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=8)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_jobs: run as root (users' own accounts, SLURM)", file=sys.stderr)
        return 2
    from machines.localusers import ensure_account, prepare_home, remove_created, unix_name
    from machines.serverenv import ensure_server_env

    root = tempfile.mkdtemp(prefix="nebulahub-bench-jobs-", dir="/var/tmp")
    os.chmod(root, 0o711)
    registry = os.path.join(root, "accounts")
    env = ensure_server_env()
    prefix = f"nhb{secrets.token_hex(2)}-"
    local = type("Accounts", (), {"prefix": prefix, "python_env": env})()
    homes = os.path.join(root, "homes")
    os.makedirs(homes)
    slurm = SlurmCluster().start()
    hub = None
    try:
        hub = HubProcess(Path(root) / "hub", jobs_config(homes, local, f"sqlite:///{root}/j.db", f"""
            c.JobsService.max_live_jobs = 50
            c.LocalProvider.home_root = "{homes}/{{username}}"
            c.OpenNebulaSpawner.service_urls = {{service["name"]: f"{{service['url']}}/services/{{service['name']}}/"}}
            c.OpenNebulaSpawner.python_env = "{env}"
            c.LocalProvider.system_user_prefix = "{prefix}"
            c.LocalProvider.create_system_users = True
            c.LocalProvider.accounts_registry = "{registry}"
            c.JobsService.backends = {{
                "local": {{}},
                "slurm": {{"command_env": {{"SLURM_CONF": "{slurm.conf}"}}}}}}
        """))
        hub.start()
        while requests.get(f"{hub.url}{SERVICE}/api/apps", timeout=5).status_code == 503:
            time.sleep(0.5)
        hub.create_user("bench")
        home = os.path.join(homes, "bench")
        account = ensure_account(unix_name(prefix, "bench"), home, registry)
        prepare_home(account, home)
        api = Api(hub, hub.user_token("bench"))
        assert hub.spawn("bench").status_code in (201, 202)
        assert hub.progress("bench")[-1].get("ready"), hub.log()[-3000:]
        events = Events(api)
        events.start()
        api.wait(api.submit("hello-test", {"backend": "local"}).json()["id"])  # warm up
        app_dir = str(Path(__file__).resolve().parent.parent / "jobforms" / "apps" / "hello-test")

        rows = []
        local_api = submit_overhead(api, events, "local", args.jobs)
        local_direct = direct_local(account.name, env, app_dir, args.jobs)
        rows.append(("submit -> executing, local", local_api, "runuser + python start",
                     local_direct))
        slurm_api = submit_overhead(api, events, "slurm", args.jobs)
        slurm_direct = direct_slurm(slurm, account.name, args.jobs)
        rows.append(("submit -> executing, slurm", slurm_api, "sbatch + squeue until R",
                     slurm_direct))
        print(f"\nJobs service, poll_interval {POLL} s, {args.jobs} jobs each "
              f"(p50 / p95, seconds)")
        for name, ours, base_name, base in rows:
            print(f"  {name:32s} {pct(ours, .5):6.2f} / {pct(ours, .95):6.2f}    baseline "
                  f"{base_name}: {pct(base, .5):6.2f} / {pct(base, .95):6.2f}")
        py = python_push(api, events, args.jobs)
        br, badge = browser_push(hub, api, "bench", args.jobs)
        print("\nState-change push latency, transition recorded -> event arrived "
              "(ms, p50 / p95 / max; target <= 50)")
        print(f"  Chromium EventSource via the hub's proxy ({len(br)} events) "
              f"{pct(br, .5):7.1f} / {pct(br, .95):7.1f} / {max(br or [float('nan')]):7.1f}")
        print(f"  Jobs page badge in Chromium           ({len(badge)} jobs)   "
              f"{pct(badge, .5):7.1f} / {pct(badge, .95):7.1f} / {max(badge or [float('nan')]):7.1f}")
        print(f"  Python client via the hub's proxy      ({len(py)} events) "
              f"{pct(py, .5):7.1f} / {pct(py, .95):7.1f} / {max(py or [float('nan')]):7.1f}")
        events.resp.close()
    finally:
        if hub is not None:
            hub.stop()
        slurm.stop()
        remove_created(registry)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

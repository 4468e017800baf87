"""Spawn benchmark: what the hub adds once a VM is RUNNING, and a storm of concurrent spawns.

Runs a real hub against the OpenNebula double whose VMs are namespace hosts with real sshd (root
needed). Prints:

* spawn overhead after RUNNING (SSH + bootstrap + tunnels + HTTP ready), p50/p95, with the VM
  image's prepared environment and with a fresh environment the bootstrap builds (offline wheels);
* 10 concurrent spawns: total time, failures, hub REST API latency p50/p99 during the storm.

Targets: <= 5 s p50 prepared; no spawn fails in the storm (50 at once: the summer school's
size); hub API p99 < 500 ms during the storm, printed next to the idle p99 of the same run.
The namespace VMs run with a small CPU share (printed) so they stand in for machines with CPUs
of their own.
Usage: python benchmarks/bench_spawn.py [--repeat 8] [--fresh 2] [--storm 50]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from tests.hubproc import HubProcess  # noqa: E402
from tests.nethosts import running_network  # noqa: E402
from tests.one_double import OneDouble  # noqa: E402
from benchmarks.figures import pct  # noqa: E402
from tests.vmimage import prepared_env, requirements, wheelhouse  # noqa: E402


def timed_spawn(hub: HubProcess, user: str, server: str = "") -> dict:
    """Spawn and read the progress stream, stamping each event as it arrives."""
    t0 = time.monotonic()
    r = hub.spawn(user, server, {"profile": "small"})
    assert r.status_code in (201, 202), r.text
    path = (f"/users/{user}/servers/{server}/progress" if server
            else f"/users/{user}/server/progress")
    running_at = ready_at = None
    failed = None
    seen = []
    with hub.api("GET", path, stream=True, timeout=600) as resp:
        for line in resp.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            now = time.monotonic()
            seen.append(event.get("message", ""))
            if running_at is None and "VM is running" in event.get("message", ""):
                running_at = now
            if event.get("ready"):
                ready_at = now
                break
            if event.get("failed"):
                failed = event.get("message")
                break
    if ready_at and not running_at:
        failed = f"no 'VM is running' event in {seen}"
    return {"total": (ready_at or time.monotonic()) - t0, "failed": failed,
            "overhead": (ready_at - running_at) if ready_at and running_at else None}


def series(hub, prefix, n, before_each=None):
    out = []
    for i in range(n):
        if before_each:
            before_each()
        user = f"{prefix}{i}"
        hub.create_user(user)
        res = timed_spawn(hub, user)
        if res["failed"]:
            raise SystemExit(f"spawn {user} failed: {res['failed']}")
        out.append(res["overhead"])
        hub.stop_server(user)
    return out


def probe_latency(hub, stop: threading.Event, out: list, path="/users/storm0"):
    """A user checking a server model, every 50 ms, until ``stop``."""
    while not stop.is_set():
        t = time.monotonic()
        requests.get(f"{hub.url}/hub/api{path}", timeout=30,
                     headers={"Authorization": f"token {hub.token}"})
        out.append(time.monotonic() - t)
        time.sleep(0.05)


def storm(hub, n):
    users = [f"storm{i}" for i in range(n)]
    for u in users:
        hub.create_user(u)
    idle, stop_idle = [], threading.Event()
    t = threading.Thread(target=probe_latency, args=(hub, stop_idle, idle), daemon=True)
    t.start()
    time.sleep(3)
    stop_idle.set()
    t.join()

    latencies, stop = [], threading.Event()
    results = {}

    def one(u):
        results[u] = timed_spawn(hub, u)

    prober = threading.Thread(target=probe_latency, args=(hub, stop, latencies), daemon=True)
    prober.start()
    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(u,)) for u in users]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    total = time.monotonic() - t0
    stop.set()
    prober.join()
    failed = [u for u, r in results.items() if r["failed"]]
    for u in users:
        if u not in failed:
            hub.stop_server(u)
    return total, failed, idle, latencies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=8)
    ap.add_argument("--fresh", type=int, default=2)
    ap.add_argument("--storm", type=int, default=50)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_spawn needs root (network namespaces, sshd)")
        return 2
    vm_env, wheels = prepared_env(), wheelhouse()
    work = Path(tempfile.mkdtemp(prefix="nebulahub-bench-"))
    with running_network(prefix="nb", subnet="10.213.200.0/24") as net:
        cpu_share = net.cpu.describe()
        cloud = OneDouble(users={"bench": "pw"}, network=net, step_seconds=0.3)
        cloud.start()

        def hub_for(name, extra):
            h = HubProcess(work / name, f"""
                c.OpenNebulaSpawner.provider = "opennebula"
                c.OpenNebulaSpawner.profiles = [{{"slug": "small", "name": "Small"}}]
                c.OpenNebulaProvider.endpoint = "{cloud.endpoint}"
                c.OpenNebulaProvider.template_id = 0
                c.OpenNebulaProvider.ssh_user = "{net.ssh_user}"
                c.OpenNebulaProvider.poll_interval = 0.5
                c.JupyterHub.log_level = "INFO"
                {extra}
            """, env={"NEBULAHUB_ONE_AUTH": "bench:pw"})
            return h.start()

        try:
            hub = hub_for("prepared", f'c.OpenNebulaSpawner.python_env = "{vm_env}"')
            prepared = series(hub, "p", args.repeat)
            total, failed, idle, lat = storm(hub, args.storm)
            hub.stop()

            home_env = Path(f"/home/{net.ssh_user}/.nebulahub/env")
            fresh_hub = hub_for("fresh", f"""
                c.OpenNebulaSpawner.pip_args = ["--no-index", "--find-links", "{wheels}"]
                c.OpenNebulaSpawner.singleuser_packages = {json.dumps(requirements())}
            """)
            fresh = series(fresh_hub, "f", args.fresh,
                           before_each=lambda: shutil.rmtree(home_env, ignore_errors=True))
            fresh_hub.stop()
        finally:
            cloud.stop()

    print("\n== NebulaHub spawn benchmark (OpenNebula double, namespace VMs, real hub) ==")
    print(f"namespace VMs' CPU: {cpu_share} (they stand in for machines with CPUs of their own)")
    print(f"overhead after RUNNING, prepared env ({args.repeat} spawns): "
          f"p50 {pct(prepared, .5):.2f} s, p95 {pct(prepared, .95):.2f} s "
          f"(target p50 <= 5 s: {'met' if pct(prepared, .5) <= 5 else 'MISSED'})")
    print(f"overhead after RUNNING, fresh env ({args.fresh} spawns): "
          f"p50 {pct(fresh, .5):.2f} s, p95 {pct(fresh, .95):.2f} s; "
          f"ratio fresh/prepared {pct(fresh, .5) / pct(prepared, .5):.1f}x")
    print(f"storm of {args.storm} concurrent spawns: total {total:.1f} s, failed {len(failed)} "
          f"{failed or ''}(target 0)")
    print(f"hub API latency, idle baseline ({len(idle)} requests): p50 "
          f"{pct(idle, .5) * 1000:.0f} ms, p99 {pct(idle, .99) * 1000:.0f} ms")
    print(f"hub API latency during the storm ({len(lat)} requests): p50 "
          f"{pct(lat, .5) * 1000:.0f} ms, p99 {pct(lat, .99) * 1000:.0f} ms, "
          f"p99 {pct(lat, .99) / pct(idle, .99):.1f}x the idle p99 "
          f"(target p99 < 500 ms: {'met' if pct(lat, .99) < 0.5 else 'MISSED'})")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Removing what an earlier, crashed run with the same prefix left behind."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Collection

from tests.nethosts.netns import alive, cmdline, kill_and_wait, netns_list, netns_pids, run_ip


def cleanup_leftovers(prefix: str, state_dir: Path, bridge: str, *,
                      live_hosts: Collection[str] = (), live_netns: Collection[str] = (),
                      live_veths: Collection[str | None] = (), bridge_live: bool = False
                      ) -> list[str]:
    """Remove what an earlier run with ``prefix`` left behind; return what was found.

    Kills only PIDs recorded in state_dir (after checking they still are our sshd) and
    processes inside namespaces named ``<prefix>-*`` (only we put processes there). The
    ``live_*`` hosts, namespaces and veths (and the bridge if ``bridge_live``) are kept.
    """
    found: list[str] = []
    hosts_dir = state_dir / "hosts"
    if hosts_dir.is_dir():
        for hj in hosts_dir.glob("*/host.json"):
            try:
                data = json.loads(hj.read_text())
            except (OSError, ValueError):
                continue
            for pid in data.get("pids", []):
                if alive(pid) and data.get("config") and data["config"] in cmdline(pid):
                    kill_and_wait([pid])
                    found.append(f"pid {pid}")
    ours = re.compile(rf"^{re.escape(prefix)}-[a-z0-9][a-z0-9-]*$")
    for ns in netns_list():
        if ours.match(ns) and ns not in live_netns:
            for _ in range(10):
                pids = [p for p in netns_pids(ns) if alive(p)]
                if not pids:
                    break
                kill_and_wait(pids)
                found.append(f"{len(pids)} process(es) in {ns}")
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            found.append(f"netns {ns}")
    veth = re.compile(rf"^{re.escape(prefix)}v\d+$")
    links = run_ip("-o", "link", "show", check=False).stdout
    for m in re.finditer(r"^\d+:\s+([^:@\s]+)", links, re.M):
        name = m.group(1)
        if (veth.match(name) and name not in live_veths) or (name == bridge and not bridge_live):
            run_ip("link", "del", name, check=False)
            found.append(f"link {name}")
    if hosts_dir.is_dir():
        for d in hosts_dir.iterdir():
            if d.name not in live_hosts:
                shutil.rmtree(d, ignore_errors=True)
    return found

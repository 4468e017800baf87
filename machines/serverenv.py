"""The Python environment users' servers run from on the hub's own machine (``local`` provider).

When the hub runs as root, each user's server runs as that user's account, which usually cannot
read the hub's own virtualenv (a checkout under a private home, an interpreter under /root). This
builds a separate environment every account can read, from the system's ``python3``, with
NebulaHub installed in it (the plotting app runs inside each server). It is rebuilt only when
what it holds changes: dependencies are installed once, the NebulaHub code is refreshed when the
source changes.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
DEFAULT_PATH = "/var/lib/nebulahub/server-env"
STAMP = ".nebulahub-server-env.json"
PACKAGES = ("machines", "spawner", "opennebula", "panel_apps", "jobforms", "nebulahub",
            "dask_clusters")


def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(PROJECT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def wanted(python: str = SYSTEM_PYTHON) -> dict:
    """What the environment must hold: dependency and code fingerprints."""
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = _digest([PROJECT / "setup.cfg", PROJECT / "pyproject.toml", *(PROJECT / "jupyter-config").glob("*")])
    code = _digest([p for pkg in PACKAGES for p in (PROJECT / pkg).rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts])
    return {"python": version, "deps": deps, "code": code}


def _pip(env: Path, *args: str, log) -> None:
    res = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--quiet",
                          "--disable-pip-version-check", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        tail = "\n".join(line for line in res.stdout.splitlines()
                         if not line.startswith("WARNING: Location"))[-3000:]
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{tail}")


def ensure_server_env(path: str = DEFAULT_PATH, *, python: str = SYSTEM_PYTHON,
                      log=print) -> str:
    """Build or refresh the environment at ``path``; returns ``path``. Safe to call from several
    processes at once (one builds, the others wait)."""
    env = Path(path)
    env.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(env.parent, os.stat(env.parent).st_mode | 0o055)
    want = wanted(python)
    old_umask = os.umask(0o022)  # every account reads it
    try:
        with open(f"{env}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                have = json.loads((env / STAMP).read_text())
            except (OSError, ValueError):
                have = {}
            if have == want:
                return str(env)
            if have.get("python") != want["python"] or not (env / "bin" / "python").exists():
                log(f"Building the users' server environment in {env} (once, about a minute)")
                subprocess.run([python, "-m", "venv", "--clear", str(env)], check=True)
                have = {}
            if have.get("deps") != want["deps"]:
                _pip(env, str(PROJECT), log=log)
            else:
                _pip(env, "--no-deps", "--force-reinstall", str(PROJECT), log=log)
            # the plotting app's first frame must never wait on compiling: prepared here
            subprocess.run([str(env / "bin" / "python"), "-m", "panel_apps.prepare"], check=True,
                           stdout=subprocess.DEVNULL)
            (env / STAMP).write_text(json.dumps(want))
    finally:
        os.umask(old_umask)
    return str(env)


if __name__ == "__main__":  # python -m machines.serverenv [PATH]
    print(ensure_server_env(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH))

"""What a VM image brings, for the test hosts: Debian's python3, optionally a prepared env.

* ``prepared_env()``: a venv (Debian python3) with jupyterhub + jupyterlab at the hub's versions,
  like an image built from ``images/`` -- the fast path ("python_env").
* ``wheelhouse()``: wheels for a fresh environment built by the bootstrap on the host, offline
  (test hosts have no network), passed with ``pip_args=["--no-index", "--find-links", ...]``.

Both are built once per machine under /var/lib/nebulahub-test (readable by the test login user,
unlike the hub's own venv, which may live under /root) and reused while the versions match.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
from importlib.metadata import version
from pathlib import Path

ROOT = Path(os.environ.get("NEBULAHUB_TEST_IMAGE_DIR", "/var/lib/nebulahub-test"))
DEBIAN_PYTHON = "/usr/bin/python3"


def requirements() -> list[str]:
    return [f"jupyterhub=={version('jupyterhub')}", f"jupyterlab=={version('jupyterlab')}"]


def _once(name: str, build) -> Path:
    ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(ROOT, 0o755)
    target = ROOT / name
    stamp = target / ".nebulahub-reqs"
    want = "\n".join(requirements())
    with open(ROOT / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == want:
            return target
        subprocess.run(["rm", "-rf", str(target)], check=True)
        build(target)
        stamp.write_text(want)
    return target


def prepared_env() -> str:
    def build(target: Path):
        subprocess.run([DEBIAN_PYTHON, "-m", "venv", str(target)], check=True)
        subprocess.run([str(target / "bin" / "pip"), "install", "-q", *requirements()],
                       check=True)

    return str(_once("vm-env", build))


def wheelhouse() -> str:
    def build(target: Path):
        target.mkdir(parents=True)
        pip = Path(prepared_env()) / "bin" / "pip"
        subprocess.run([str(pip), "download", "-q", "-d", str(target), *requirements()],
                       check=True)

    return str(_once("wheels", build))

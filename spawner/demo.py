"""``nebulahub demo``: start the hub with the embedded default (local provider, demo users)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def _seed_home(home: Path) -> None:
    """Put a small data file into a demo user's home (once) for the plotting app."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = home / "junctions.txt"
    if target.exists():
        return
    try:
        from panel_apps.sample_data import main as sample_main
    except ImportError:  # the plotting app is optional for the hub itself
        return
    sample_main(["--out", str(target)])


def run_demo(config: str | None = None) -> int:
    config_path = Path(config or PROJECT / "jupyterhub_config.py").resolve()
    state = Path(os.environ.get("NEBULAHUB_STATE_DIR", config_path.parent / "var")).resolve()
    port = os.environ.get("NEBULAHUB_PORT", "8000")
    password = os.environ.get("NEBULAHUB_DEMO_PASSWORD", "nebula-demo")
    for user in ("student", "researcher", "admin"):
        _seed_home(state / "homes" / user)
    jupyterhub = shutil.which("jupyterhub", path=os.path.dirname(sys.executable)) or "jupyterhub"
    print(
        "\n  NebulaHub demo (local provider: servers run on this machine, no cloud)\n"
        f"  Open   http://127.0.0.1:{port}/\n"
        f"  Log in as student, researcher or admin, password: {password}\n"
        "  Stop   Ctrl-C\n",
        flush=True,
    )
    os.chdir(config_path.parent)
    os.execv(jupyterhub, [jupyterhub, "-f", str(config_path)])
    return 0  # not reached

"""``nebulahub demo``: start the hub with the embedded default (local provider, demo users).

As root, each demo user's server runs as a Unix account of its own (``nhdemo-<user>``) from an
environment every account can read (built once under /var/lib/nebulahub). The hub runs as a
child process: whatever way it ends, its proxy is stopped too, so a failed start never leaves a
proxy behind to break the next run.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
DEMO_USERS = ("student", "researcher", "admin")


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


def _prepare_users(cfg) -> None:
    """Accounts (as root), homes with demo data, and the servers' environment."""
    from machines.errors import AccountError
    from machines.localusers import prepare_home
    from machines.serverenv import ensure_server_env

    from .config import machine_provider

    provider = machine_provider("local", cfg)
    if provider.switches_accounts:
        ensure_server_env(cfg.OpenNebulaSpawner.python_env)
    for user in DEMO_USERS:
        home = Path(provider.home_for(user))
        _seed_home(home)
        try:
            prepare_home(provider.account_for(user), str(home))
        except AccountError as e:
            sys.exit(f"nebulahub demo: {e}")


def _stop_proxy(pid_file: str) -> None:
    """Stop the proxy the hub started, if it is still running (a failed start leaves it)."""
    try:
        pid = int(Path(pid_file).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"configurable-http-proxy" in cmdline:
        os.kill(pid, signal.SIGTERM)
        print(f"nebulahub demo: stopped the proxy the hub left running (pid {pid})", flush=True)


def run_demo(config: str | None = None) -> int:
    from .config import load_config

    config_path = Path(config or PROJECT / "jupyterhub_config.py").resolve()
    os.chdir(config_path.parent)
    cfg = load_config(str(config_path))  # exits with the config's own message if it refuses
    if cfg.OpenNebulaSpawner.provider == "local":
        _prepare_users(cfg)
    url = cfg.JupyterHub.bind_url
    password = cfg.SharedPasswordAuthenticator.get("user_password", "(your authenticator's)")
    admin = cfg.SharedPasswordAuthenticator.get("admin_password", "(your authenticator's)")
    accounts = ("each user's server runs as their own Unix account "
                f"({cfg.LocalProvider.system_user_prefix}<user>)" if os.geteuid() == 0 else
                "the hub is not root: all users' servers share its Unix account")
    print(
        "\n  NebulaHub demo (local provider: servers run on this machine, no cloud)\n"
        f"  Open   {url}/\n"
        f"  Log in as student or researcher, password: {password}\n"
        f"         as admin, password: {admin}\n"
        f"  Users  {accounts}\n"
        "  Stop   Ctrl-C\n",
        flush=True,
    )
    jupyterhub = shutil.which("jupyterhub", path=os.path.dirname(sys.executable)) or "jupyterhub"
    # the hub in a session of its own: each signal reaches it once, passed on from here
    hub = subprocess.Popen([jupyterhub, "-f", str(config_path)], start_new_session=True)

    def forward(signum, frame):
        if hub.poll() is None:
            hub.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        code = hub.wait()
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait()
        _stop_proxy(cfg.ConfigurableHTTPProxy.pid_file)
    return code

"""A real ``jupyterhub`` process (with configurable-http-proxy from npm) for end-to-end tests."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests

PROJECT = Path(__file__).resolve().parent.parent
CHP = PROJECT / "node_modules" / ".bin" / "configurable-http-proxy"


def local_accounts_config(python_env: str, prefix: str, registry: str) -> str:
    """Hub config lines for users' servers run from ``python_env``, each user a Unix account of
    its own made for the run (``prefix``, recorded in ``registry`` for removal)."""
    return (f'c.OpenNebulaSpawner.python_env = "{python_env}"\n'
            f'c.LocalProvider.system_user_prefix = "{prefix}"\n'
            "c.LocalProvider.create_system_users = True\n"
            f'c.LocalProvider.accounts_registry = "{registry}"\n')


def local_provider_config(home_root: str, python_env: str, prefix: str, registry: str) -> str:
    """:func:`local_accounts_config` for users' servers on this machine (local provider), homes
    under ``home_root``."""
    return (f'\nc.OpenNebulaSpawner.provider = "local"\nc.LocalProvider.home_root = "{home_root}/{{username}}"\n'
            + local_accounts_config(python_env, prefix, registry))


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all held at once while chosen (one at a time, the kernel
    may hand the same port out twice; a hub then found its proxy on its own port)."""
    held = [socket.socket() for _ in range(count)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


class HubProcess:
    """jupyterhub in its own directory with a test service token holding admin scopes."""

    def __init__(self, workdir: Path, spawner_config: str, *, env: dict | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.hub_port, self.proxy_api_port = free_ports(3)
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, **(env or {}))
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "hub.log"
        self._write_config(spawner_config)

    def _write_config(self, spawner_config: str) -> None:
        assert CHP.exists(), "configurable-http-proxy missing: run `make setup`"
        base = f"""
        c = get_config()
        c.JupyterHub.bind_url = "{self.url}"
        c.JupyterHub.hub_bind_url = "http://127.0.0.1:{self.hub_port}"
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
        c.ConfigurableHTTPProxy.command = ["{CHP}"]
        c.ConfigurableHTTPProxy.pid_file = "{self.dir}/proxy.pid"
        c.JupyterHub.db_url = "sqlite:///{self.dir}/hub.sqlite"
        c.JupyterHub.cookie_secret_file = "{self.dir}/cookie_secret"
        c.JupyterHub.cleanup_servers = False
        c.JupyterHub.cleanup_proxy = True
        c.JupyterHub.allow_named_servers = True
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = "test-password"
        c.Authenticator.allow_all = True
        c.JupyterHub.spawner_class = "opennebula"
        c.JupyterHub.log_level = "DEBUG"
        c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}  # POST answers at once: tests read progress
        c.JupyterHub.services = [{{"name": "tester", "api_token": open("{self.dir}/token").read()}}]
        c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"], "scopes": [
            "admin:users", "admin:servers", "admin:server_state", "list:users", "read:users",
            "tokens", "access:servers"]}}]
        """
        fd = os.open(self.dir / "token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token)
        (self.dir / "jupyterhub_config.py").write_text(
            textwrap.dedent(base) + "\n" + textwrap.dedent(spawner_config))

    def start(self, timeout: float = 90) -> "HubProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.dir / "jupyterhub_config.py")],
            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                problem = f"jupyterhub exited ({self.proc.returncode})"
                break
            try:
                if requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            problem = f"jupyterhub did not answer within {timeout}s"
        # a fixture whose start fails never reaches its teardown: stop the hub and the proxy it
        # started here (a hub that died at start left its proxy running)
        self.stop()
        raise RuntimeError(f"{problem}:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the hub (the proxy it started keeps running, as in a real crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop every server the tests left (cleanup_servers is off), then the hub."""
        if self.proc and self.proc.poll() is None:
            try:
                for user in self.api("GET", "/users").json():
                    for name in user.get("servers") or {}:
                        self.stop_server(user["name"], name)
            except Exception as e:  # the hub may be broken by the test itself: still stop it
                print(f"could not stop leftover servers: {e}")
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._stop_leftover_proxy()

    def _stop_leftover_proxy(self) -> None:
        pid_file = self.dir / "proxy.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ---- REST API ----------------------------------------------------------------------------

    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        headers["Authorization"] = f"token {token or self.token}"
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers,
                                timeout=kw.pop("timeout", 30), **kw)

    def create_user(self, name: str) -> None:
        r = self.api("POST", f"/users/{name}")
        assert r.status_code in (201, 409), r.text

    def user_token(self, name: str) -> str:
        r = self.api("POST", f"/users/{name}/tokens", json={"expires_in": 3600})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def spawn(self, user: str, server: str = "", options: dict | None = None):
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        return self.api("POST", path, json=options or {})

    def progress(self, user: str, server: str = "", timeout: float = 300) -> list[dict]:
        """Read the progress event stream until it ends."""
        path = f"/users/{user}/servers/{server}/progress" if server else f"/users/{user}/server/progress"
        events = []
        with self.api("GET", path, stream=True, timeout=timeout) as r:
            assert r.status_code == 200, r.text
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("ready") or events[-1].get("failed"):
                        break
        return events

    def server_model(self, user: str, server: str = "") -> dict | None:
        r = self.api("GET", f"/users/{user}")
        assert r.status_code == 200, r.text
        return r.json()["servers"].get(server)

    def wait_server(self, user: str, server: str = "", *, ready: bool, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(user, server)
            if ready and model and model.get("ready"):
                return model
            if not ready and not model:
                return None
            time.sleep(0.5)
        raise AssertionError(f"server {user}/{server} not {'ready' if ready else 'gone'} "
                             f"after {timeout}s; last: {model}\n{self.log()[-3000:]}")

    def stop_server(self, user: str, server: str = "") -> None:
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        r = self.api("DELETE", path)
        assert r.status_code in (202, 204), r.text
        self.wait_server(user, server, ready=False)

    def get_via_proxy(self, path: str, token: str, **kw) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers={"Authorization": f"token {token}"},
                            timeout=kw.pop("timeout", 30), **kw)

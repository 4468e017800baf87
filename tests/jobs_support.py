"""Helpers of the jobs-service tests: a hub config with the service, a user with their own
account, the API as one user sees it."""
from __future__ import annotations

import os
import textwrap
import time

import requests

SERVICE = "/services/nebulahub-jobs"


def jobs_config(homes: str, local_accounts, db_url: str, extra: str = "") -> str:
    return textwrap.dedent(f"""
        from jobforms.service import managed_service
        service, roles = managed_service(__file__)
        c.JupyterHub.services.append(service)
        c.JupyterHub.load_roles.extend(roles)
        c.JobsService.db_url = "{db_url}"
        c.JobsService.account_template = "{local_accounts.prefix}{{username}}"
        c.JobsService.home_template = "{homes}/{{username}}"
        c.JobsService.job_env = {{"PATH": "{local_accounts.python_env}/bin:/usr/bin:/bin"}}
        c.JobsService.poll_interval = 0.5
        c.JobsService.max_live_jobs = 3
        c.OpenNebulaSpawner.provider = "local"
    """) + textwrap.dedent(extra)


def servers_with_jobs_config(server_homes, job_homes, local_accounts, db_url: str) -> str:
    """A hub whose users' servers run with the local provider (homes under ``server_homes``) and
    reach the jobs service through their tunnel, as the shipped config sets it up; jobs run in
    ``job_homes`` (the same folder as ``server_homes`` in the demo; apart, as with volumes)."""
    from jobforms.service import NAME

    return textwrap.dedent(f"""
        c.OpenNebulaSpawner.provider = "local"
        c.LocalProvider.home_root = "{server_homes}/{{username}}"
        from jobforms.service import managed_service
        jobs, jobs_roles = managed_service(__file__)
        c.JupyterHub.services.append(jobs)
        c.JupyterHub.load_roles.extend(jobs_roles)
        c.OpenNebulaSpawner.service_urls = {{"{NAME}": f"{{jobs['url']}}/services/{NAME}/"}}
        c.JobsService.db_url = "{db_url}"
        c.JobsService.account_template = "{local_accounts.prefix}{{username}}"
        c.JobsService.home_template = "{job_homes}/{{username}}"
        c.JobsService.job_env = {{"PATH": "{local_accounts.python_env}/bin:/usr/bin:/bin"}}
        c.JobsService.poll_interval = 0.5
    """) + local_accounts.config


def cloud_config(cloud, nethosts, hub_id: str) -> str:
    """Config lines for the cloud backend's VMs: the OpenNebula double's endpoint, its namespace
    hosts' login, quick polls (added after the ``JobsService.backends`` line)."""
    return f"""
        c.JobsService.max_vms = 3
        c.OpenNebulaProvider.endpoint = "{cloud.endpoint}"
        c.OpenNebulaProvider.template_id = 0
        c.OpenNebulaProvider.hub_id = "{hub_id}"
        c.OpenNebulaProvider.ssh_user = "{nethosts.ssh_user}"
        c.OpenNebulaProvider.ready_timeout = 20
        c.OpenNebulaProvider.poll_interval = 0.2
        c.OpenNebulaProvider.home_storage = "none"
        c.MachineAccess.ssh_timeout = 15
        c.MachineAccess.release_retry_interval = 1
    """


def wait_for_service(hub, timeout: float = 60) -> None:
    """Until the hub-managed jobs service answers (503 while it starts)."""
    deadline = time.monotonic() + timeout
    while requests.get(f"{hub.url}{SERVICE}/api/apps", timeout=5).status_code == 503:
        assert time.monotonic() < deadline, hub.log()[-3000:]
        time.sleep(0.5)


def make_user(hub, name, local_accounts, homes):
    """A hub user and their own Unix account with a home (as the local provider makes them)."""
    from machines.localusers import ensure_account, prepare_home, unix_name

    hub.create_user(name)
    home = os.path.join(homes, name)
    account = ensure_account(unix_name(local_accounts.prefix, name), home,
                             local_accounts.registry)
    prepare_home(account, home)
    return hub.user_token(name), account


class Api:
    """The jobs API as one user sees it."""

    def __init__(self, hub, token):
        self.base, self.headers = f"{hub.url}{SERVICE}/api", {"Authorization": f"token {token}"}

    def __call__(self, method, path, **kw):
        return requests.request(method, self.base + path, headers=self.headers, timeout=30, **kw)

    def submit(self, app, values):
        return self("POST", "/jobs", json={"app": app, "values": values})

    def wait(self, job_id, states=("done", "failed", "cancelled"), timeout=90):
        deadline = time.monotonic() + timeout
        while True:
            job = self("GET", f"/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.3)

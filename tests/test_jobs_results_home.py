"""Job results come home when the user's home is not the jobs service's folder (a VM's persistent
volume, a user's own machine): the service keeps them; the user's real single-user server copies
them into ~/jobs/<app>-<job>/ at start and as soon as a job is done (jobforms.page.results_sync).

A real hub with the jobs service and the local provider; the service's folders for the user
(``JobsService.home_template``) are apart from the home the server runs in
(``LocalProvider.home_root``), as with volumes. A result finished while the server was stopped
arrives when it starts again; one finished while it runs arrives without anyone opening a page; a
result the user changed is never overwritten, one they deleted is not brought back.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.hubproc import HubProcess
from tests.jobs_support import Api, servers_with_jobs_config, wait_for_service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(tmp_path_factory, shared_tmp, local_accounts):
    d = tmp_path_factory.mktemp("results-home")
    homes = Path(shared_tmp) / "results-home-server"  # where the server runs (the "volume")
    kept = Path(shared_tmp) / "results-home-service"  # where the service runs jobs and keeps results
    homes.mkdir(exist_ok=True)
    kept.mkdir(exist_ok=True)
    h = HubProcess(d / "hub", servers_with_jobs_config(homes, kept, local_accounts,
                                                       f"sqlite:///{d}/jobs.sqlite"))
    h.start()
    try:
        wait_for_service(h)
        yield {"hub": h, "homes": homes, "kept": kept}
    finally:
        h.stop()


def start_server(h: HubProcess, user: str) -> None:
    h.spawn(user)
    h.wait_server(user, ready=True, timeout=180)


def wait_for(path: Path, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert time.monotonic() < deadline, f"{path} never arrived"
        time.sleep(0.3)
    return path.read_bytes()


def hello(api: Api, who: str) -> dict:
    r = api.submit("hello-test", {"greeting": "Hi", "who": who, "repeat": 1, "backend": "local"})
    assert r.status_code == 201, r.text
    job = api.wait(r.json()["id"])
    assert job["state"] == "done", job
    return job


def test_results_finished_while_stopped_or_running_reach_the_servers_home(hub):
    h, homes, kept = hub["hub"], hub["homes"], hub["kept"]
    h.create_user("vera")
    api = Api(h, h.user_token("vera"))
    start_server(h, "vera")  # the first start makes her account and home
    home = homes / "vera"
    account = home.stat().st_uid
    # the service's side of her files (an admin's shared folder, as with volumes)
    (kept / "vera").mkdir(mode=0o700, exist_ok=True)
    os.chown(kept / "vera", account, home.stat().st_gid)

    h.stop_server("vera")
    while_stopped = hello(api, "while stopped")
    folder = home / "jobs" / f"hello-test-{while_stopped['id']}"
    assert not folder.exists()  # ran and kept on the service's side only
    service_copy = (kept / "vera" / "jobs" / folder.name / "hello.txt").read_bytes()

    start_server(h, "vera")
    assert wait_for(folder / "hello.txt") == service_copy  # the whole file, byte for byte
    assert (folder / "hello.txt").stat().st_uid == account  # written by her own server
    assert b"while stopped" in service_copy

    while_running = hello(api, "while running")  # nobody opens the Jobs page
    running_folder = home / "jobs" / f"hello-test-{while_running['id']}"
    got = wait_for(running_folder / "hello.txt")
    assert got == api("GET", f"/jobs/{while_running['id']}/results/hello.txt").content
    assert not [p for p in running_folder.iterdir() if p.name.endswith(".part")]

    # her changes stay hers: an edited result is not overwritten, a deleted one not brought back
    (folder / "hello.txt").write_text("my notes")
    (running_folder / "hello.txt").unlink()
    h.stop_server("vera")
    start_server(h, "vera")
    third = hello(api, "third")
    wait_for(home / "jobs" / f"hello-test-{third['id']}" / "hello.txt")  # the sync ran again
    assert (folder / "hello.txt").read_text() == "my notes"
    assert not (running_folder / "hello.txt").exists()
    h.stop_server("vera")

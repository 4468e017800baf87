"""The jobs service through a real hub: a hub-managed service behind the hub's login, jobs run as
each user's own Unix account by the local backend and by a real single-node SLURM, the jobs
database in SQLite and in a real PostgreSQL.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from tests.hubproc import HubProcess
from tests.jobs_support import SERVICE, Api, jobs_config, make_user, wait_for_service

pytestmark = pytest.mark.integration
@pytest.fixture(scope="module")
def homes(shared_tmp):
    path = os.path.join(shared_tmp, "jobs-homes")
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def service_key(tmp_path_factory):
    """The key the service logs in to SFTP destinations with."""
    d = tmp_path_factory.mktemp("service-key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "key")],
                   check=True)
    return d / "key"


@pytest.fixture(scope="module")
def jobs_hub(tmp_path_factory, homes, local_accounts, slurm, service_key):
    d = tmp_path_factory.mktemp("jobs-hub")
    h = HubProcess(d, jobs_config(homes, local_accounts, f"sqlite:///{d}/jobs.sqlite", f"""
        c.JobsService.backends = {{
            "local": {{}},
            "slurm": {{"command_env": {{"SLURM_CONF": "{slurm.conf}"}},
                      "limits": {{"cores": 2, "memory_mb": 2000, "walltime_s": 3600}}}},
        }}
        c.JobsService.sftp_key_file = "{service_key}"
        c.JobsService.host_key_dir = "{d}/destination-keys"
    """))
    h.start()
    wait_for_service(h)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def ada(jobs_hub, local_accounts, homes):
    token, account = make_user(jobs_hub, "ada", local_accounts, homes)
    return Api(jobs_hub, token), account


def test_a_student_runs_hello_watches_it_end_and_downloads_the_result(ada, jobs_hub, homes):
    api, account = ada
    apps = {a["id"]: a for a in api("GET", "/apps").json()}
    assert {"hello-test", "ljj"} <= set(apps)
    r = api.submit("hello-test", {"greeting": "Привет", "who": "Josephson $(id) ;'\"",
                                  "repeat": 2, "backend": "local"})
    assert r.status_code == 201, r.text
    job = api.wait(r.json()["id"])
    assert job["state"] == "done", job
    assert [h["to"] for h in job["history"]] == ["pending", "executing", "terminating", "done"]
    assert job["results"] == ["hello.txt"]
    text = api("GET", f"/jobs/{job['id']}/results/hello.txt").content.decode()
    assert "Привет" in text and "Josephson $(id) ;'\"" in text  # one argument, never a shell
    log = api("GET", f"/jobs/{job['id']}/log", params={"stream": "stdout"}).json()
    assert "Привет" in log["text"]
    # the job ran as ada's own account, in her home
    workdir = os.path.join(homes, "ada", "jobs", f"hello-test-{job['id']}")
    assert os.stat(os.path.join(workdir, "hello.txt")).st_uid == account.uid


def test_bad_values_are_refused_naming_the_field_and_nothing_runs(ada):
    api, _ = ada
    before = len(api("GET", "/jobs").json())
    r = api.submit("hello-test", {"repeat": 99, "pause": "soon"})
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert "repeat" in errors and "pause" in errors, errors
    assert len(api("GET", "/jobs").json()) == before


def test_a_failing_program_ends_failed_with_its_stderr_visible(ada, homes):
    api, account = ada
    secret = os.path.join(homes, "ada", "unreadable.txt")
    with open(secret, "w") as f:
        f.write("x\n")
    os.chmod(secret, 0)  # the job's account cannot read it
    r = api.submit("hello-test", {"use_file": True, "input": "unreadable.txt",
                                  "backend": "local"})
    assert r.status_code == 201, r.text
    job = api.wait(r.json()["id"])
    assert job["state"] == "failed" and job["exit_code"] not in (None, 0), job
    err = api("GET", f"/jobs/{job['id']}/log", params={"stream": "stderr"}).json()["text"]
    assert "cannot read" in err and "Permission denied" in err, err


def test_a_running_job_is_cancelled_and_its_process_ends(ada):
    api, _ = ada
    r = api.submit("hello-test", {"repeat": 10, "pause": 5, "backend": "local"})
    job_id = r.json()["id"]
    api.wait(job_id, states=("executing",))
    assert api("POST", f"/jobs/{job_id}/cancel").status_code == 200
    job = api.wait(job_id)
    assert job["state"] == "cancelled" and "by you" in job["reason"], job


def test_another_user_cannot_see_cancel_read_or_download_a_job(ada, jobs_hub, local_accounts,
                                                               homes):
    api, _ = ada
    job = api.submit("hello-test", {"backend": "local"}).json()
    api.wait(job["id"])
    token, _ = make_user(jobs_hub, "bob", local_accounts, homes)
    bob = Api(jobs_hub, token)
    assert job["id"] not in [j["id"] for j in bob("GET", "/jobs").json()]
    for method, path in [("GET", f"/jobs/{job['id']}"), ("POST", f"/jobs/{job['id']}/cancel"),
                         ("GET", f"/jobs/{job['id']}/log"),
                         ("GET", f"/jobs/{job['id']}/results/hello.txt"),
                         ("GET", f"/jobs/{job['id']}/clone")]:
        assert bob(method, path).status_code == 404, (method, path)
    # nor can a stranger without a login
    assert requests.get(f"{jobs_hub.url}{SERVICE}/api/jobs", timeout=30,
                        allow_redirects=False).status_code in (302, 403)


def test_clone_shows_what_differs_and_the_last_values_are_remembered(ada):
    api, _ = ada
    job = api.submit("hello-test", {"who": "Lena", "repeat": 3, "backend": "local"}).json()
    api.wait(job["id"])
    clone = api("GET", f"/jobs/{job['id']}/clone").json()
    assert clone["changed"]["who"] == {"default": "world", "value": "Lena"}
    assert clone["changed"]["repeat"] == {"default": 1, "value": 3}
    again = api("POST", "/jobs", json={"app": "hello-test", "values": clone["values"],
                                       "clone_of": job["id"]})
    assert again.status_code == 201 and again.json()["clone_of"] == job["id"]
    api.wait(again.json()["id"])
    saved = api("GET", "/apps/hello-test/parameters").json()
    assert saved["last"]["who"] == "Lena"
    assert api("PUT", "/apps/hello-test/parameters/lena", json={"values": clone["values"]}
               ).status_code == 200
    assert api("GET", "/apps/hello-test/parameters/lena").json()["repeat"] == 3


def test_state_changes_are_pushed_as_server_sent_events(ada, jobs_hub):
    api, _ = ada
    with requests.get(f"{api.base}/events", headers=api.headers, stream=True,
                      timeout=60) as stream:
        job = api.submit("hello-test", {"backend": "local"}).json()
        seen = []
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                event = json.loads(line[5:])
                if event["id"] == job["id"]:
                    seen.append(event["state"])
                    if event["state"] in ("done", "failed"):
                        break
    assert seen[-1] == "done" and "executing" in seen, seen


def test_a_job_on_the_real_slurm_reaches_done_with_its_results(ada, slurm):
    api, account = ada
    r = api.submit("ljj", {"backend": "slurm"})
    assert r.status_code == 201, r.text
    job = api.wait(r.json()["id"], timeout=180)
    assert job["state"] == "done", job
    assert "ljj.dat" in job["results"]
    data = api("GET", f"/jobs/{job['id']}/results/ljj.dat").content.decode()
    rows = [line.split() for line in data.splitlines() if line and not line.startswith("#")]
    assert rows and all(len(r) == 12 for r in rows)
    assert slurm.queue() == []


def test_an_outside_scancel_is_noticed_and_said(ada, slurm):
    api, _ = ada
    r = api.submit("hello-test", {"repeat": 10, "pause": 5, "backend": "slurm"})
    job_id = r.json()["id"]
    api.wait(job_id, states=("executing",), timeout=120)
    (slurm_id,) = slurm.queue()
    slurm.run("scancel", slurm_id)
    job = api.wait(job_id, timeout=60)
    assert job["state"] == "cancelled" and "outside the service" in job["reason"], job


def test_the_service_restarted_mid_job_still_tracks_it_and_loses_none(ada, jobs_hub):
    api, _ = ada
    job_id = api.submit("hello-test", {"repeat": 4, "pause": 2, "backend": "local"}).json()["id"]
    api.wait(job_id, states=("executing",))
    jobs_hub.stop()
    jobs_hub.start()  # the hub starts its managed services again
    deadline = time.monotonic() + 60
    while requests.get(f"{jobs_hub.url}{SERVICE}/api/apps", timeout=5,
                       headers=api.headers).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    job = api.wait(job_id, timeout=60)
    assert job["state"] == "done", job


def _as_if_the_service_stopped_while_submitting(db: str, job_id: str, homes: str) -> str:
    """Rewrite the jobs database as a service killed inside a submission leaves it: the job
    submitted, its backend id not saved yet (so still pending); and a second job stored but
    not handed to its backend at all. Returns the second job's id."""
    import sqlite3
    import uuid
    twin = uuid.uuid4().hex[:12]
    with sqlite3.connect(db) as c:
        c.execute("update jobs set backend_id = NULL, state = 'pending' where id = ?", (job_id,))
        c.execute("delete from transitions where job_id = ? and target != 'pending'", (job_id,))
        user, app = c.execute("select user, app_id from jobs where id = ?", (job_id,)).fetchone()
        columns = [r[1] for r in c.execute("pragma table_info(jobs)")]
        values = {"id": "?", "workdir": "?", "backend_id": "NULL", "exit_code": "NULL",
                  "results": "'[]'", "machines": "'[]'", "cancel_requested": "0", "clone_of": "NULL"}
        c.execute(f"insert into jobs ({', '.join(columns)}) select "
                  f"{', '.join(values.get(col, col) for col in columns)} from jobs where id = ?",
                  (twin, os.path.join(homes, user, "jobs", f"{app}-{twin}"), job_id))
        c.execute("insert into transitions (job_id, source, target, at, reason) select ?, source, "
                  "target, at, reason from transitions where job_id = ? and target = 'pending'",
                  (twin, job_id))
    return twin


@pytest.mark.parametrize("backend", ["local", "slurm"])
def test_a_restart_inside_a_submission_neither_runs_the_job_twice_nor_loses_it(
        ada, jobs_hub, homes, slurm, backend):
    """The service stopped between handing a job to its batch system and saving the batch id:
    after the restart it finds the job there by its name and follows it (no second run); a job
    stored but never handed over is submitted then."""
    api, _ = ada
    job_id = api.submit("hello-test", {"repeat": 3, "pause": 2, "backend": backend}).json()["id"]
    api.wait(job_id, states=("executing",))
    jobs_hub.stop()
    twin = _as_if_the_service_stopped_while_submitting(str(jobs_hub.dir / "jobs.sqlite"), job_id, homes)
    jobs_hub.start()
    wait_for_service(jobs_hub)
    job, other = api.wait(job_id, timeout=120), api.wait(twin, timeout=120)
    assert job["state"] == "done" and other["state"] == "done", (job, other)
    assert [h["to"] for h in job["history"]] == ["pending", "executing", "terminating", "done"]
    if backend == "slurm":  # one SLURM job each, never a second one under the same name
        for one in (job_id, twin):
            named = slurm.run("squeue", "--noheader", "--states=all", "--format=%i",
                              f"--name=nebulahub-{one}").stdout.split()
            assert len(named) == 1, (one, named)
    else:  # a second launch into the same control folder is refused, so 'done' says: adopted
        for one in (job_id, twin):
            workdir = os.path.join(homes, "ada", "jobs", f"hello-test-{one}")
            assert os.path.isfile(os.path.join(workdir, "hello.txt")), os.listdir(workdir)


def test_the_jobs_database_can_be_postgresql(tmp_path, homes, local_accounts, postgres):
    h = HubProcess(tmp_path / "hub", jobs_config(homes, local_accounts, postgres.url))
    h.start()
    try:
        wait_for_service(h)
        token, _ = make_user(h, "pgu", local_accounts, homes)
        api = Api(h, token)
        job = api.submit("hello-test", {"backend": "local"}).json()
        assert api.wait(job["id"])["state"] == "done"
        import sqlalchemy as sa
        engine = sa.create_engine(postgres.url)
        with engine.connect() as c:
            states = [r[0] for r in c.execute(sa.text(
                "select target from transitions where job_id = :j order by id"),
                {"j": job["id"]})]
        engine.dispose()
        assert states == ["pending", "executing", "terminating", "done"]
    finally:
        h.stop()


def test_the_quota_shows_used_and_free_and_a_submission_beyond_it_is_refused(ada):
    api, _ = ada
    ids = [api.submit("hello-test", {"repeat": 10, "pause": 5, "backend": "local"}).json()["id"]
           for _ in range(3)]  # max_live_jobs = 3
    quota = api("GET", "/quota").json()["service"]
    assert quota["jobs"] == {"used": 3, "limit": 3, "free": 0}, quota
    assert quota["cores"]["used"] == 3
    before = len(api("GET", "/jobs").json())
    r = api.submit("hello-test", {"backend": "local"})
    assert r.status_code == 400 and "3 jobs pending or running" in r.json()["errors"]["quota"]
    assert len(api("GET", "/jobs").json()) == before  # nothing was created
    for job_id in ids:
        api("POST", f"/jobs/{job_id}/cancel")
    assert all(api.wait(j)["state"] == "cancelled" for j in ids)
    assert api("GET", "/quota").json()["service"]["jobs"]["free"] == 3


def test_a_user_without_an_account_yet_is_told_to_start_a_server_first(jobs_hub):
    jobs_hub.create_user("newcomer")
    api = Api(jobs_hub, jobs_hub.user_token("newcomer"))
    r = api.submit("hello-test", {"backend": "local"})
    assert r.status_code == 400 and "start your server once" in r.text, r.text
    assert api("GET", "/jobs").json() == []


# ---- where results go ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ftp_server(nethosts, tmp_path_factory):
    """A real anonymous, writable FTP server (pyftpdlib) on a namespace host, as the reference
    service uploaded results to ftp://10.93.221.96/pub."""
    root = tmp_path_factory.mktemp("ftp-root")
    host = nethosts.add_host("ftpdest", start_sshd=False)
    proc = subprocess.Popen(["ip", "netns", "exec", host.netns, sys.executable, "-m", "pyftpdlib",
                             "-i", host.ip, "-p", "2121", "-w", "-d", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not host.port_open(2121, ip=host.ip):
        assert proc.poll() is None and time.monotonic() < deadline, "pyftpdlib did not start"
        time.sleep(0.2)
    yield host, root
    proc.terminate()
    proc.wait(10)
    host.destroy()


@pytest.fixture(scope="module")
def sftp_server(nethosts, service_key):
    host = nethosts.add_host("sftpdest", authorized_keys=[
        (service_key.parent / "key.pub").read_text().strip()])
    yield host
    host.destroy()


def test_results_are_uploaded_to_an_ftp_url(ada, ftp_server):
    api, _ = ada
    host, root = ftp_server
    r = api.submit("hello-test", {"who": "FTP", "backend": "local",
                                  "destination": f"ftp://{host.ip}:2121/pub/run-1"})
    assert r.status_code == 201, r.text
    job = api.wait(r.json()["id"])
    assert job["state"] == "done", (job["reason"], job["history"])
    assert "FTP" in (root / "pub" / "run-1" / "hello.txt").read_text()


def test_results_go_to_an_sftp_url_with_the_servers_key_pinned(ada, sftp_server):
    import pwd

    api, _ = ada
    home = pwd.getpwnam(sftp_server.user).pw_dir
    url = f"sftp://{sftp_server.user}@{sftp_server.ip}{home}/results/run-2"
    job = api.wait(api.submit("hello-test", {"who": "SFTP", "backend": "local",
                                             "destination": url}).json()["id"])
    assert job["state"] == "done", (job["reason"], job["history"])
    delivered = os.path.join(home, "results", "run-2", "hello.txt")
    assert "SFTP" in open(delivered).read()
    assert os.stat(delivered).st_uid == pwd.getpwnam(sftp_server.user).pw_uid
    # another machine answers at that address now: nothing is sent to it
    sftp_server.regenerate_host_key()
    job = api.wait(api.submit("hello-test", {"who": "again", "backend": "local",
                                             "destination": url.replace("run-2", "run-3")}
                              ).json()["id"])
    assert job["state"] == "failed" and "could not be delivered" in job["reason"], job["reason"]
    assert not os.path.exists(os.path.join(home, "results", "run-3"))


def test_a_destination_on_the_services_own_machine_is_refused(ada):
    api, _ = ada
    job = api.wait(api.submit("hello-test", {"backend": "local",
                                             "destination": "ftp://127.0.0.1:2121/pub"}
                              ).json()["id"])
    assert job["state"] == "failed" and "hub's own machine" in job["reason"], job["reason"]


def test_a_file_url_is_written_as_the_users_own_account_only(ada, homes):
    api, account = ada
    mine = os.path.join(homes, "ada", "exported")
    job = api.wait(api.submit("hello-test", {"backend": "local",
                                             "destination": f"file://{mine}"}).json()["id"])
    assert job["state"] == "done", job["reason"]
    assert os.stat(os.path.join(mine, "hello.txt")).st_uid == account.uid
    job = api.wait(api.submit("hello-test", {"backend": "local",
                                             "destination": "file:///etc/nebulahub-owned"}
                              ).json()["id"])
    assert job["state"] == "failed" and "Permission denied" in job["reason"], job["reason"]
    assert not os.path.exists("/etc/nebulahub-owned")


def test_a_result_or_log_swapped_for_a_link_is_never_read_for_the_user(ada, homes):
    api, _ = ada
    job = api.wait(api.submit("hello-test", {"backend": "local"}).json()["id"])
    workdir = os.path.join(homes, "ada", "jobs", f"hello-test-{job['id']}")
    for name in ("hello.txt", "stdout.txt"):
        os.unlink(os.path.join(workdir, name))
        os.symlink("/etc/shadow", os.path.join(workdir, name))  # as the job's account could
    r = api("GET", f"/jobs/{job['id']}/results/hello.txt")
    assert r.status_code == 404 and b"root:" not in r.content
    log = api("GET", f"/jobs/{job['id']}/log", params={"stream": "stdout"}).json()
    assert log["text"] == "" and "root:" not in log["text"]

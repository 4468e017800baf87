"""The cloud backend's HTCondor-pool mode through a real hub and jobs service: per-job VMs from
the OpenNebula double (namespace hosts) join a pool through their context, and the job is
submitted to that pool pinned to them.

The pool is the fake HTCondor of tests/condor (no HTCondor daemons exist here). A test-side
"startd" stands in for the image's contextualization: for every VM of the double that runs with
NEBULAHUB_JOB_ID in its context it publishes a slot ad with NebulaHubJob = that id in the fake
pool, and withdraws it when the VM ends. The fake's schedd starts a job whose Requirements name
a machine attribute only once such a slot matches (classad2's own matching)."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import requests
from traitlets import TraitError

from jobforms.backends import CloudBackend
from machines import MachineRequest

from tests.hubproc import HubProcess
from tests.jobs_support import SERVICE, Api, cloud_config, jobs_config, make_user, wait_for_service
# the OpenNebula double and its clean-up after each test (autouse), shared with SSH mode's tests
from tests.test_jobs_cloud import (EVERY_STATE, clean_cloud, cloud,  # noqa: F401
                                   live_vms, wait_no_live_vms)

pytestmark = pytest.mark.integration
CONDOR_BIN = Path(__file__).parent / "condor" / "bin"
JOIN_TIMEOUT = 8


class Startd(threading.Thread):
    """Every running VM of the double whose context names a job joins the fake pool as one
    slot publishing that job (as the image's contextualization would); it leaves when the VM
    no longer runs. ``joining = False``: VMs never show up (a broken image, a wrong pool)."""

    def __init__(self, cloud, machines: Path):
        super().__init__(daemon=True)
        self.cloud, self.machines = cloud, machines
        self.joining = True
        self.seen: dict[int, dict] = {}  # VM id -> its context, when it joined
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.2):
            for vm in list(self.cloud.vms.values()):
                context = vm.template.get("CONTEXT")
                context = context if isinstance(context, dict) else {}
                ad = self.machines / f"vm-{vm.id}.json"
                running = vm.state == 3 and vm.lcm_state == 3 and vm.host is not None
                if running and self.joining and "NEBULAHUB_JOB_ID" in context:
                    if not ad.exists():
                        self.seen[vm.id] = dict(context)
                        tmp = ad.with_suffix(".tmp")
                        tmp.write_text(json.dumps({
                            "Name": f"slot1@vm-{vm.id}", "Machine": vm.host.ip,
                            "State": "Unclaimed", "Activity": "Idle", "OpSys": "LINUX",
                            "NebulaHubJob": context["NEBULAHUB_JOB_ID"],
                            "Start": "TARGET.NebulaHubJob =?= MY.NebulaHubJob",
                            "Requirements": "TARGET.NebulaHubJob =?= MY.NebulaHubJob"}))
                        tmp.chmod(0o644)
                        os.replace(tmp, ad)
                elif ad.exists():
                    ad.unlink()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


class Pool:
    """The fake pool's state folder: the schedd's queue and history, the slots."""

    def __init__(self, state: Path, python_env: str):
        self.state = state
        self.env = {"PATH": f"{CONDOR_BIN}:{python_env}/bin:/usr/local/bin:/usr/bin:/bin",
                    "FAKE_CONDOR_STATE": str(state)}

    def ads(self, where: str, job_id: str) -> list[dict]:
        """Job ads of the queue or the history carrying this service job's attribute."""
        found = []
        for path in (self.state / where).glob("*.json"):
            ad = json.loads(path.read_text())
            if ad.get("NebulaHubJob") == job_id:
                found.append(ad)
        return found

    def leftovers(self) -> list[int]:
        pids = []
        for path in (self.state / "queue").glob("*.json"):
            ad = json.loads(path.read_text())
            pids += [ad[k] for k in ("_job", "_shepherd") if k in ad]
        return pids


@pytest.fixture(scope="module")
def pool(shared_tmp, local_accounts):
    state = Path(shared_tmp) / "condor-pool-jobs"
    # root runs the queries, the job's account submits and removes: one pool for both
    for sub in ("", "queue", "history", "machines"):
        (state / sub).mkdir(exist_ok=True)
        (state / sub).chmod(0o777)
    for name in ("lock", "commands.log"):
        (state / name).touch()
        (state / name).chmod(0o666)
    yield Pool(state, local_accounts.python_env)
    import shutil
    import signal

    for pid in Pool(state, "").leftovers():   # a failed test must not leave jobs running
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def startd(cloud, pool):
    thread = Startd(cloud, pool.state / "machines")
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def homes(shared_tmp):
    path = os.path.join(shared_tmp, "cloud-pool-job-homes")
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory, cloud, nethosts, pool, startd, homes, local_accounts):
    d = tmp_path_factory.mktemp("jobs-cloud-pool")
    h = HubProcess(d, jobs_config(homes, local_accounts, f"sqlite:///{d}/jobs.sqlite", f"""
        c.JobsService.backends = {{"cloud": {{
            "poll_interval": 0.3, "sweep_interval": 0, "state_dir": "{d}/cloud-jobs",
            "limits": {{"nodes": 2}}, "command_env": {pool.env!r},
            "pool": {{"context": {{"CONDOR_HOST": "cm.pool.test"}},
                      "join_timeout": {JOIN_TIMEOUT}}}}}}}
    """ + cloud_config(cloud, nethosts, "hub-under-test-pool")),
        env={"NEBULAHUB_ONE_AUTH": "hubacct:cloud-secret-pw"})
    h.start()
    wait_for_service(h)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def ines(hub, local_accounts, homes):
    token, account = make_user(hub, "ines", local_accounts, homes)
    return Api(hub, token), account


@pytest.fixture(autouse=True)
def vms_join(startd):
    startd.joining = True
    yield
    startd.joining = True


def test_a_two_vm_pool_job_runs_pinned_to_its_own_vms_and_leaves_none(ines, cloud, pool,
                                                                      startd, homes):
    api, account = ines
    before = set(cloud.vms)
    r = api.submit("hello-test", {"backend": "cloud", "nodes": 2, "who": "pool 'x' \"y\""})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    job = api.wait(job_id, timeout=120)
    assert job["state"] == "done", (job["reason"], job["history"])
    assert [h["to"] for h in job["history"]] == EVERY_STATE, job["history"]

    # both VMs were told their job and the pool in their context, and joined it
    new = sorted(set(cloud.vms) - before)
    assert len(new) == 2
    for vm_id in new:
        assert startd.seen[vm_id]["NEBULAHUB_JOB_ID"] == job_id
        assert startd.seen[vm_id]["CONDOR_HOST"] == "cm.pool.test"
    # one HTCondor job, submitted pinned to them, ran on one of their slots and completed
    [ad] = pool.ads("history", job_id)
    assert ad["Requirements"] == f'(TARGET.NebulaHubJob =?= "{job_id}")'
    assert ad["NebulaHubJob"] == job_id and ad["NebulaHubJobId"] == job_id
    assert ad["RemoteHost"] in {f"slot1@vm-{v}" for v in new}
    assert ad["JobStatus"] == 4 and ad["ExitCode"] == 0
    assert pool.ads("queue", job_id) == []

    # the results came home, as the user's own files
    assert job["results"] == ["hello.txt"]
    text = api("GET", f"/jobs/{job_id}/results/hello.txt").content.decode()
    assert "pool 'x' \"y\"" in text
    workdir = os.path.join(homes, "ines", "jobs", f"hello-test-{job_id}")
    assert os.stat(os.path.join(workdir, "hello.txt")).st_uid == account.uid
    out = api("GET", f"/jobs/{job_id}/log", params={"stream": "stdout"}).json()["text"]
    ips = {cloud.host_of(v).ip for v in new}
    [line] = [x for x in out.splitlines() if x.startswith("machines: ")]
    assert set(line.split()[1:]) == ips
    assert wait_no_live_vms(cloud) == []


def test_vms_that_never_join_the_pool_fail_the_job_with_a_sentence_and_are_given_back(
        ines, cloud, pool, startd):
    api, _ = ines
    startd.joining = False
    job_id = api.submit("hello-test", {"backend": "cloud", "nodes": 2}).json()["id"]
    api.wait(job_id, states=("bootstrapping",), timeout=60)
    deadline = time.monotonic() + JOIN_TIMEOUT
    while "(0 of 2)" not in api("GET", f"/jobs/{job_id}").json()["reason"]:
        assert time.monotonic() < deadline, "the wait for the pool was never shown"
        time.sleep(0.3)
    assert "Waiting for the machines to join the HTCondor pool" in \
        api("GET", f"/jobs/{job_id}").json()["reason"]
    job = api.wait(job_id, timeout=90)
    assert job["state"] == "failed", (job["reason"], job["history"])
    assert (f"did not join the HTCondor pool within {JOIN_TIMEOUT} s (0 of 2 joined)"
            in job["reason"]), job["reason"]
    assert [h["to"] for h in job["history"]] == ["pending", "booting", "bootstrapping",
                                                 "terminating", "failed"], job["history"]
    assert wait_no_live_vms(cloud) == []
    assert pool.ads("queue", job_id) == [] and pool.ads("history", job_id) == []


def test_cancel_while_waiting_for_the_pool_gives_the_vms_back(ines, cloud, pool, startd):
    api, _ = ines
    startd.joining = False
    job_id = api.submit("hello-test", {"backend": "cloud", "nodes": 2}).json()["id"]
    api.wait(job_id, states=("bootstrapping",), timeout=60)
    assert api("POST", f"/jobs/{job_id}/cancel").status_code == 200
    job = api.wait(job_id, timeout=30)
    assert job["state"] == "cancelled", (job["reason"], job["history"])
    assert [h["to"] for h in job["history"]][-2:] == ["terminating", "cancelled"]
    assert wait_no_live_vms(cloud) == []
    assert pool.ads("queue", job_id) == [] and pool.ads("history", job_id) == []


def test_cancel_while_executing_removes_the_condor_job_and_the_vms(ines, cloud, pool):
    api, _ = ines
    job_id = api.submit("hello-test", {"backend": "cloud", "nodes": 2, "repeat": 10,
                                       "pause": 3}).json()["id"]
    api.wait(job_id, states=("executing",), timeout=60)
    deadline = time.monotonic() + 30
    while not [a for a in pool.ads("queue", job_id) if a["JobStatus"] == 2]:
        assert time.monotonic() < deadline, pool.ads("queue", job_id)
        time.sleep(0.2)
    assert len(live_vms(cloud)) == 2
    assert api("POST", f"/jobs/{job_id}/cancel").status_code == 200
    job = api.wait(job_id, timeout=60)
    assert job["state"] == "cancelled", (job["reason"], job["history"])
    assert [h["to"] for h in job["history"]][-2:] == ["terminating", "cancelled"]
    [ad] = pool.ads("history", job_id)
    assert ad["JobStatus"] == 3 and "condor_rm" in ad["RemoveReason"], ad
    assert pool.ads("queue", job_id) == []
    assert wait_no_live_vms(cloud) == []


def test_a_job_held_in_the_pool_fails_with_htcondors_reason_and_leaves_nothing(ines, cloud,
                                                                              pool):
    api, _ = ines
    (pool.state / "next_job.json").write_text(json.dumps({"hold": "disk quota exceeded"}))
    job_id = api.submit("hello-test", {"backend": "cloud"}).json()["id"]
    job = api.wait(job_id, timeout=60)
    assert job["state"] == "failed", (job["reason"], job["history"])
    assert "HTCondor held: disk quota exceeded" in job["reason"], job["reason"]
    assert [h["to"] for h in job["history"]][-2:] == ["terminating", "failed"]
    [ad] = pool.ads("history", job_id)
    assert ad["JobStatus"] == 3, ad
    assert pool.ads("queue", job_id) == []
    assert wait_no_live_vms(cloud) == []


def test_a_value_htcondor_cannot_carry_is_refused_before_any_vm_is_made(ines, cloud):
    api, _ = ines
    before = set(cloud.vms)
    job = api.wait(api.submit("hello-test", {"backend": "cloud", "who": "$(id)"}).json()["id"],
                   timeout=30)
    assert job["state"] == "failed" and "macros" in job["reason"], job
    assert set(cloud.vms) == before


def test_the_service_restarted_while_a_pool_job_runs_finishes_it(ines, cloud, pool, hub):
    api, _ = ines
    job_id = api.submit("hello-test", {"backend": "cloud", "nodes": 2, "repeat": 4,
                                       "pause": 1.5}).json()["id"]
    api.wait(job_id, states=("executing",), timeout=60)
    vms = [vm.id for vm in live_vms(cloud)]
    hub.stop()
    assert all(cloud.vms[v].state == 3 for v in vms)  # the job's VMs outlive the service
    hub.start()
    deadline = time.monotonic() + 60
    while requests.get(f"{hub.url}{SERVICE}/api/apps", timeout=5,
                       headers=api.headers).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    job = api.wait(job_id, timeout=90)
    assert job["state"] == "done", (job["reason"], job["history"])
    assert len(pool.ads("history", job_id)) == 1   # one HTCondor job: not submitted again
    assert "Goodbye!" in api("GET", f"/jobs/{job_id}/log", params={"stream": "stdout"}
                             ).json()["text"]
    assert wait_no_live_vms(cloud) == []


def test_pool_settings_that_cannot_work_are_refused_with_a_sentence():
    with pytest.raises(TraitError, match="CONDOR_PASSWORD looks like a secret"):
        CloudBackend(pool={"context": {"CONDOR_PASSWORD": "pw"}})
    with pytest.raises(TraitError, match="unknown setting"):
        CloudBackend(pool={"contexts": {"CONDOR_HOST": "cm"}})
    with pytest.raises(TraitError, match="the cloud backend's own settings"):
        CloudBackend(pool={"htcondor": {"submit_host": "me@submit"}})
    with pytest.raises(TraitError, match="not a setting of HTCondorBackend"):
        CloudBackend(pool={"htcondor": {"queue": "x"}})
    with pytest.raises(TraitError, match="extra_submit"):
        CloudBackend(pool={"htcondor": {"extra_submit": "should_transfer_files = YES"}})
    assert CloudBackend(pool={"context": {"CONDOR_HOST": "cm"}}).pool
    # the machine layer refuses a secret in any request's context, not only the pool's
    with pytest.raises(ValueError, match="private key"):
        MachineRequest(user="ines", owner_id="j1", start_id="s1", context={
            "POOL_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"})

"""Jobs on VMs of their own: the jobs service in a real hub, the cloud backend through the
machine layer against the OpenNebula double, whose VMs are namespace hosts with real sshd."""
from __future__ import annotations

import asyncio
import os
import time

import pytest
import requests

from tests.hubproc import HubProcess
from tests.jobs_support import SERVICE, Api, cloud_config, jobs_config, make_user, wait_for_service
from tests.one_double import OneDouble

pytestmark = pytest.mark.integration
EVERY_STATE = ["pending", "booting", "bootstrapping", "executing", "terminating", "done"]


@pytest.fixture(scope="module")
def cloud(nethosts):
    double = OneDouble(users={"hubacct": "cloud-secret-pw"}, network=nethosts, step_seconds=0.3)
    double.start()
    double.set_quota("hubacct", vms=4, cpu=8, memory=8192)
    yield double
    double.stop()


@pytest.fixture(scope="module")
def homes(shared_tmp):
    path = os.path.join(shared_tmp, "cloud-job-homes")
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory, cloud, nethosts, vm_python_env, homes, local_accounts):
    d = tmp_path_factory.mktemp("jobs-cloud")
    h = HubProcess(d, jobs_config(homes, local_accounts, f"sqlite:///{d}/jobs.sqlite", f"""
        c.JobsService.backends = {{"cloud": {{
            "python_env": "{vm_python_env}", "poll_interval": 0.3, "sweep_interval": 1,
            "state_dir": "{d}/cloud-jobs", "limits": {{"nodes": 2}}}}}}
    """ + cloud_config(cloud, nethosts, "hub-under-test")),
        env={"NEBULAHUB_ONE_AUTH": "hubacct:cloud-secret-pw"})
    h.start()
    wait_for_service(h)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def lea(hub, local_accounts, homes):
    token, account = make_user(hub, "lea", local_accounts, homes)
    return Api(hub, token), account


def live_vms(cloud):
    return [vm for vm in cloud.vms.values() if vm.state != 6]


def wait_no_live_vms(cloud, timeout=30):
    deadline = time.monotonic() + timeout
    while live_vms(cloud) and time.monotonic() < deadline:
        time.sleep(0.2)
    return live_vms(cloud)


@pytest.fixture(autouse=True)
def clean_cloud(cloud):
    yield
    cloud.boot_delay(0)
    deadline = time.monotonic() + 30
    while live_vms(cloud):  # as the cloud's admin would, after a failed test
        for vm in live_vms(cloud):
            try:
                cloud._rpc_vm_action(vm.owner, "terminate-hard", vm.id)
            except Exception:  # not in a state oned can terminate from yet
                assert time.monotonic() < deadline, vm
        time.sleep(0.5)


def test_a_two_vm_job_goes_through_every_state_brings_its_results_home_and_leaves_no_vm(
        lea, cloud, homes):
    api, account = lea
    before = set(cloud.vms)
    r = api.submit("hello-test", {"backend": "cloud", "nodes": 2, "who": "VM $(id) 'x'",
                                  "use_file": False})
    assert r.status_code == 201, r.text
    job = api.wait(r.json()["id"], timeout=120)
    assert job["state"] == "done", (job["reason"], job["history"])
    assert [h["to"] for h in job["history"]] == EVERY_STATE, job["history"]
    assert job["results"] == ["hello.txt"]
    text = api("GET", f"/jobs/{job['id']}/results/hello.txt").content.decode()
    assert "VM $(id) 'x'" in text
    out = api("GET", f"/jobs/{job['id']}/log", params={"stream": "stdout"}).json()["text"]
    new = sorted(set(cloud.vms) - before)
    assert len(new) == 2
    ips = [cloud.host_of(vm_id).ip for vm_id in new]
    assert f"machines: {' '.join(ips)}" in out or f"machines: {' '.join(reversed(ips))}" in out
    # the job-worker tags, and the results in the user's home as the user's own files
    tags = cloud.all_templates_text()
    assert "job-worker" in tags and job["id"] in tags
    workdir = os.path.join(homes, "lea", "jobs", f"hello-test-{job['id']}")
    assert os.stat(os.path.join(workdir, "hello.txt")).st_uid == account.uid
    assert not os.path.exists(os.path.join(workdir, ".nebulahub"))
    assert wait_no_live_vms(cloud) == []


def test_cancel_while_booting_leaves_no_vm(lea, cloud):
    api, _ = lea
    cloud.boot_delay(6)
    job_id = api.submit("hello-test", {"backend": "cloud"}).json()["id"]
    api.wait(job_id, states=("booting",), timeout=30)
    assert api("POST", f"/jobs/{job_id}/cancel").status_code == 200
    job = api.wait(job_id, timeout=60)
    assert job["state"] == "cancelled", (job["reason"], job["history"])
    states = [h["to"] for h in job["history"]]
    assert states == ["pending", "booting", "terminating", "cancelled"], job["history"]
    assert wait_no_live_vms(cloud, timeout=15) == []


def test_a_boot_failure_ends_failed_with_the_clouds_reason_and_no_vm(lea, cloud):
    api, _ = lea
    cloud.fail_next_boot()
    job = api.wait(api.submit("hello-test", {"backend": "cloud"}).json()["id"], timeout=60)
    assert job["state"] == "failed", job
    assert "could not start" in job["reason"] and "BOOT_FAILURE" in job["reason"].upper(), job
    assert "executing" not in [h["to"] for h in job["history"]]
    assert wait_no_live_vms(cloud) == []


def test_the_sweep_gives_back_an_orphaned_job_vm_but_never_a_running_jobs(lea, cloud):
    from opennebula import OpenNebulaClient

    api, _ = lea

    async def orphan():
        client = OpenNebulaClient(cloud.endpoint, "hubacct:cloud-secret-pw")
        vm_id = await client.instantiate(name="left-behind", template_id=0, tags={
            "NEBULAHUB_HUB_ID": "hub-under-test", "NEBULAHUB_USER": "lea",
            "NEBULAHUB_START_ID": "never-recorded", "NEBULAHUB_OWNER_KIND": "job-worker",
            "NEBULAHUB_OWNER_ID": "deadbeef0000"})
        await client.close()
        return vm_id

    job_id = api.submit("hello-test", {"backend": "cloud", "repeat": 4, "pause": 2}).json()["id"]
    api.wait(job_id, states=("executing",), timeout=60)
    left = asyncio.run(orphan())
    running = [vm.id for vm in live_vms(cloud) if vm.id != left]
    deadline = time.monotonic() + 30
    while cloud.vms[left].state != 6 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert cloud.vms[left].state == 6, "the orphaned job VM was not given back"
    assert all(cloud.vms[v].state == 3 for v in running), "a running job's VM was touched"
    job = api.wait(job_id, timeout=60)
    assert job["state"] == "done", (job["reason"], job["history"])
    assert wait_no_live_vms(cloud) == []


def test_the_form_quota_counts_cloud_vms_and_refuses_beyond_it(lea, cloud):
    api, _ = lea
    quota = api("GET", "/quota").json()
    assert quota["service"]["vms"] == {"used": 0, "limit": 3, "free": 3}
    assert "VMs" in quota["backends"]["cloud"]  # the cloud account's own quota, as on the form
    cloud.boot_delay(6)
    first = api.submit("hello-test", {"backend": "cloud", "nodes": 2}).json()["id"]
    r = api.submit("hello-test", {"backend": "cloud", "nodes": 2})
    assert r.status_code == 400 and "you may hold 3" in r.json()["errors"]["nodes"], r.text
    api("POST", f"/jobs/{first}/cancel")
    assert api.wait(first, timeout=60)["state"] == "cancelled"
    assert wait_no_live_vms(cloud, timeout=15) == []


def test_the_service_restarted_while_a_cloud_job_runs_finishes_it(lea, cloud, hub):
    api, _ = lea
    job_id = api.submit("hello-test", {"backend": "cloud", "repeat": 5, "pause": 2}).json()["id"]
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
    assert "Goodbye!" in api("GET", f"/jobs/{job_id}/log", params={"stream": "stdout"}
                             ).json()["text"]
    assert wait_no_live_vms(cloud) == []

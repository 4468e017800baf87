"""Users' files survive their VMs: a persistent home volume per user's server, or a folder on a
shared filesystem. A real hub and proxy, the OpenNebula double (images, datastore quota,
persistent images on one VM at a time), namespace VMs whose home is the volume's content.
"""
from __future__ import annotations

import json
import os
import pwd
import stat
import time

import pytest
import requests

from tests.hubproc import HubProcess
from tests.one_double import OneDouble

pytestmark = pytest.mark.integration
IMAGE_DS = 1


def hub_config(endpoint, vm_env, user, extra=""):
    return f"""
        c.OpenNebulaSpawner.provider = "opennebula"
        c.OpenNebulaSpawner.python_env = "{vm_env}"
        c.OpenNebulaSpawner.poll_interval = 2
        c.OpenNebulaSpawner.profiles = [{{"slug": "small", "name": "Small", "cpu": 0.5,
                                          "memory_mb": 512}}]
        c.OpenNebulaProvider.endpoint = "{endpoint}"
        c.OpenNebulaProvider.template_id = 0
        c.OpenNebulaProvider.hub_id = "hub-storage"
        c.OpenNebulaProvider.ssh_user = "{user}"
        c.OpenNebulaProvider.ready_timeout = 60
        c.OpenNebulaProvider.poll_interval = 0.2
        c.OpenNebulaProvider.volume_size_mb = 512
        c.OpenNebulaProvider.volume_datastore_id = {IMAGE_DS}
        c.MachineAccess.ssh_timeout = 30
        c.MachineAccess.release_retry_interval = 1
        {extra}
    """


@pytest.fixture(scope="module")
def cloud(nethosts):
    double = OneDouble(users={"hubacct": "pw"}, network=nethosts, step_seconds=0.2)
    double.start()
    double.set_quota("hubacct", vms=6, cpu=6, memory=16384)
    yield double
    double.stop()


@pytest.fixture(scope="module")
def hub(cloud, vm_python_env, nethosts, tmp_path_factory):
    h = HubProcess(tmp_path_factory.mktemp("hub-storage"),
                   hub_config(cloud.endpoint, vm_python_env, nethosts.ssh_user),
                   env={"NEBULAHUB_ONE_AUTH": "hubacct:pw"})
    h.start()
    yield h
    h.stop()


def live_vms(cloud):
    return [vm for vm in cloud.vms.values() if vm.state != 6]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def volumes(cloud, user):
    return [i for i in cloud.images.values()
            if i.template.get("NEBULAHUB_HUB_ID") == "hub-storage"
            and i.template.get("NEBULAHUB_USER") == user]


def start(hub, user, server=""):
    assert hub.spawn(user, server, {"profile": "small"}).status_code in (201, 202)
    events = hub.progress(user, server)
    assert events[-1].get("ready"), events
    return events


def contents(hub, user, token, path, text=None):
    url = f"{hub.url}/user/{user}/api/contents/{path}"
    headers = {"Authorization": f"token {token}"}
    if text is not None:
        r = requests.put(url, headers=headers, timeout=30,
                         data=json.dumps({"type": "file", "format": "text", "content": text}))
        assert r.status_code in (200, 201), r.text
        return text
    r = requests.get(url, headers=headers, timeout=30)
    return r.json().get("content") if r.status_code == 200 else None


def test_a_students_file_survives_stop_and_start_on_a_new_vm(hub, cloud):
    hub.create_user("stu")
    token = hub.user_token("stu")
    start(hub, "stu")
    first_vm = hub.server_model("stu")["state"]["machine"]["vm_id"]
    contents(hub, "stu", token, "notes.txt", "E = mc^2, measured on Tuesday")
    hub.stop_server("stu")
    wait_for(lambda: cloud.vms[first_vm].state == 6, 30, "the VM was not terminated")
    (volume,) = volumes(cloud, "stu")  # the VM went, the volume stays
    start(hub, "stu")
    second_vm = hub.server_model("stu")["state"]["machine"]["vm_id"]
    assert second_vm != first_vm
    assert hub.server_model("stu")["state"]["machine"]["volume_id"] == volume.id
    assert contents(hub, "stu", token, "notes.txt") == "E = mc^2, measured on Tuesday"
    assert len(volumes(cloud, "stu")) == 1
    hub.stop_server("stu")
    wait_for(lambda: not live_vms(cloud), 30, "VMs left behind")
    assert volumes(cloud, "stu"), "the volume was deleted with the VM"


def test_two_named_servers_do_not_fight_over_one_volume(hub, cloud):
    hub.create_user("nam")
    for name in ("one", "two"):
        assert hub.spawn("nam", name, {"profile": "small"}).status_code in (201, 202)
    for name in ("one", "two"):
        assert hub.progress("nam", name)[-1].get("ready")
    ids = {hub.server_model("nam", n)["state"]["machine"]["volume_id"] for n in ("one", "two")}
    assert len(ids) == 2 and len(volumes(cloud, "nam")) == 2
    for name in ("one", "two"):
        hub.stop_server("nam", name)
    wait_for(lambda: not live_vms(cloud), 30, "VMs left behind")


def test_a_volume_still_held_by_a_shutting_down_vm_delays_the_next_spawn_with_a_message(hub,
                                                                                        cloud):
    hub.create_user("slow")
    start(hub, "slow")
    first_vm = hub.server_model("slow")["state"]["machine"]["vm_id"]
    cloud.shutdown_delay(5)  # the volume is freed when the VM is DONE
    try:
        hub.stop_server("slow")
        assert cloud.vms[first_vm].state != 6
        events = start(hub, "slow")
    finally:
        cloud.shutdown_delay(0)
    assert any("release the volume with your files" in e.get("message", "") for e in events)
    assert cloud.vms[first_vm].state == 6
    hub.stop_server("slow")
    wait_for(lambda: not live_vms(cloud), 30, "VMs left behind")


def test_over_the_storage_quota_is_refused_readably_before_any_vm_exists(hub, cloud):
    cloud.set_datastore_quota("hubacct", IMAGE_DS, size_mb=100)  # a volume needs 512 MB
    try:
        hub.create_user("full")
        vms_before = len(cloud.vms)
        r = hub.spawn("full", options={"profile": "small"})
        if r.status_code in (201, 202):
            message = hub.progress("full")[-1]["message"]
        else:
            message = r.json()["message"]
        assert "no room for your files' volume" in message and "512 MB" in message, message
        assert len(cloud.vms) == vms_before and not volumes(cloud, "full")
    finally:
        cloud.set_datastore_quota("hubacct", IMAGE_DS, size_mb=-2)


def test_the_spawn_form_shows_the_storage_quota_next_to_the_vm_quota(hub, cloud):
    from tests.browser import chromium_page, hub_login

    cloud.set_datastore_quota("hubacct", IMAGE_DS, size_mb=8192)
    try:
        with chromium_page() as page:
            hub_login(page, hub.url, "formq", "test-password")
            page.wait_for_selector("table.nebulahub-quota", timeout=30_000)
            quota = page.inner_text("table.nebulahub-quota")
    finally:
        cloud.set_datastore_quota("hubacct", IMAGE_DS, size_mb=-2)
    assert "Storage" in quota and "MB used of 8192 MB" in quota, quota


def test_hub_killed_just_after_creating_the_volume_leaves_one_volume_reused(hub, cloud):
    cloud.image_create_delay(4)  # the hub waits for the new volume: kill it then
    try:
        hub.create_user("kil")
        assert hub.spawn("kil", options={"profile": "small"}).status_code == 202
        wait_for(lambda: volumes(cloud, "kil"), 30, "no volume was created")
        hub.kill()
        hub.start()
    finally:
        cloud.image_create_delay(0)
    wait_for(lambda: not (hub.server_model("kil") or {}).get("pending"), 60, "still pending")
    start(hub, "kil")
    assert len(volumes(cloud, "kil")) == 1
    assert hub.server_model("kil")["state"]["machine"]["volume_id"] == volumes(cloud, "kil")[0].id
    hub.stop_server("kil")
    wait_for(lambda: not live_vms(cloud), 30, "VMs left behind")


def test_shared_filesystem_mode_mounts_the_users_own_folder(cloud, vm_python_env, nethosts,
                                                          tmp_path, shared_tmp):
    export = os.path.join(shared_tmp, "nfs-export")
    os.makedirs(export, exist_ok=True)
    cloud.shared_filesystem("nfs.example.org:/export/homes", export)
    hub = HubProcess(tmp_path / "hub", hub_config(
        cloud.endpoint, vm_python_env, nethosts.ssh_user, f"""
        c.OpenNebulaProvider.home_storage = "shared"
        c.OpenNebulaProvider.shared_home_root = "{export}/{{username}}"
        c.OpenNebulaProvider.shared_home_fstab = (
            "nfs.example.org:/export/homes/{{username}} {{home}} nfs defaults 0 0")
    """), env={"NEBULAHUB_ONE_AUTH": "hubacct:pw"})
    hub.start()
    try:
        hub.create_user("sha")
        token = hub.user_token("sha")
        start(hub, "sha")
        vm_id = hub.server_model("sha")["state"]["machine"]["vm_id"]
        context = cloud.vms[vm_id].template["CONTEXT"]
        assert context["NEBULAHUB_HOME_FSTAB"] == (
            f"nfs.example.org:/export/homes/sha /home/{nethosts.ssh_user} nfs defaults 0 0")
        folder = os.path.join(export, "sha")
        st = os.stat(folder)
        assert stat.S_IMODE(st.st_mode) == 0o700
        assert st.st_uid == pwd.getpwnam(nethosts.ssh_user).pw_uid
        contents(hub, "sha", token, "shared.txt", "on the site's filesystem")
        assert open(os.path.join(folder, "shared.txt")).read() == "on the site's filesystem"
        assert not volumes(cloud, "sha")
        hub.stop_server("sha")
    finally:
        hub.stop()
    wait_for(lambda: not live_vms(cloud), 30, "VMs left behind")

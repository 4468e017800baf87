"""On namespace hosts, the double's guests mount the home NebulaHub's context asks for: a
persistent image's folder (formatted at first use, the login user's, 0700) bind-mounted at the
home in that VM host's own mount namespace, so a file written over SSH in one VM is there in
the next VM with the same image and not on a VM with another image; or a shared filesystem's
per-user folder. The machine's own home never changes and no mount outlives its host. Needs
root (network namespaces, sshd)."""
import asyncio
import os
import pwd
import secrets
import shutil
import tempfile
import time

import asyncssh
import pyone
import pytest

from tests.conftest import require_root
from tests.nethosts import client_keypair, network_fixture
from tests.one_double import ACTIVE, DONE, IMAGE_READY, RUNNING, OneDouble

pytestmark = pytest.mark.integration

net = network_fixture(scope="module", prefix="odh", subnet="10.213.161.0/24")
SCRIPT = "IyEvYmluL3NoCmV4aXQgMAo="     # what the hub sends is not run: the double acts it out


@pytest.fixture
def double(net):
    require_root()
    d = OneDouble({"alice": "pw"}, network=net, step_seconds=0.05)
    d.start()
    yield d
    d.stop()
    assert not net.hosts, "the double left namespace hosts behind"


@pytest.fixture(scope="module")
def key():
    return client_keypair()


@pytest.fixture
def home(net):
    """The login user's home on this machine (shared by every namespace host)."""
    return pwd.getpwnam(net.ssh_user).pw_dir


def one(double):
    return pyone.OneServer(double.endpoint, session="alice:pw", protocol="xmlrpc")


def until(check, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.01)
    raise AssertionError(f"{what} never happened")


def new_home_image(server, name):
    iid = server.image.allocate({"TEMPLATE": {"NAME": name, "TYPE": "DATABLOCK",
                                              "SIZE": "1024", "PERSISTENT": "YES"}}, 1)
    until(lambda: server.image.info(iid).STATE == IMAGE_READY, what="image READY")
    return iid


def start_vm(double, net, pub, context, disks=()):
    server = one(double)
    extra = {"TEMPLATE": {"DISK": [{"IMAGE_ID": "0"}, *disks],
                          "CONTEXT": {"NETWORK": "YES", "SSH_PUBLIC_KEY": pub,
                                      "USERNAME": net.ssh_user, "START_SCRIPT_BASE64": SCRIPT,
                                      **context}}}
    vm_id = server.template.instantiate(0, "home", False, extra, False)
    until(lambda: ((vm := server.vm.info(vm_id)).STATE, vm.LCM_STATE) == (ACTIVE, RUNNING),
          what=f"VM {vm_id} RUNNING")
    host = double.host_of(vm_id)
    host.wait_accepting(10)
    return vm_id, host


def volume_vm(double, net, pub, home, iid):
    return start_vm(double, net, pub, {"NEBULAHUB_HOME": home, "NEBULAHUB_HOME_DISK": "vdb"},
                    [{"IMAGE_ID": str(iid), "TARGET": "vdb"}])


def ssh(host, key, user, command):
    """Run ``command`` over SSH as ``user`` (a login: sshd's mount namespace)."""
    async def go():
        async with asyncssh.connect(
                host.ip, username=user, client_keys=[key], agent_path=None,
                known_hosts=asyncssh.import_known_hosts(host.known_hosts_line),
                connect_timeout=5) as conn:
            return (await conn.run(command, check=True)).stdout
    return asyncio.run(go())


def terminate(double, vm_id):
    server = one(double)
    server.vm.action("terminate-hard", vm_id)
    until(lambda: server.vm.info(vm_id).STATE == DONE, what=f"VM {vm_id} DONE")


def mounted_anywhere(path: str) -> list[str]:
    """Processes (any mount namespace) that have ``path`` mounted."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                if any(line.split()[3] == path or line.split()[4] == path for line in f):
                    found.append(pid)
        except OSError:
            continue
    return found


def test_files_in_the_home_survive_into_the_next_vm_with_the_same_image(double, net, key,
                                                                         home):
    priv, pub = key
    user, server = net.ssh_user, one(double)
    mine, other = new_home_image(server, "home-1"), new_home_image(server, "home-2")
    marker = f"kept-{secrets.token_hex(4)}"
    assert not os.path.exists(os.path.join(home, marker))
    first, host = volume_vm(double, net, pub, home, mine)
    folder = double.image_dir(mine)
    assert ssh(host, priv, user, "findmnt -n -o TARGET --target ~").strip() == home
    listing = ssh(host, priv, user, f"cd && pwd && stat -c '%U %a' . && ls -A && "
                                    f"echo kept > {marker}").split()
    assert listing == [home, user, "700", "lost+found"]   # formatted at first use, the user's
    assert sorted(os.listdir(folder)) == sorted(["lost+found", marker])
    assert not os.path.exists(os.path.join(home, marker))  # the machine's home is untouched
    terminate(double, first)
    assert mounted_anywhere(folder) == []                  # nothing outlives the host

    second, host2 = volume_vm(double, net, pub, home, mine)
    assert ssh(host2, priv, user, f"cat ~/{marker}").strip() == "kept"
    _, stranger = volume_vm(double, net, pub, home, other)  # running at the same time
    assert ssh(stranger, priv, user, "ls -A ~").split() == ["lost+found"]
    assert host2.run("cat", f"{home}/{marker}", user=user).stdout.strip() == b"kept"
    assert not os.path.exists(os.path.join(home, marker))
    assert double.host_errors == []
    terminate(double, second)
    assert mounted_anywhere(folder) == []


def test_a_shared_filesystem_mounts_the_users_folder_at_the_home(double, net, key, home):
    priv, pub = key
    user = net.ssh_user
    share = tempfile.mkdtemp(prefix="nebulahub-share-")
    try:
        folder = os.path.join(share, user)
        os.mkdir(folder, 0o700)
        pw = pwd.getpwnam(user)
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        with open(os.path.join(folder, "from-the-nfs-server"), "w") as f:
            f.write("hello")
        double.shared_filesystem("nfs.example.org:/export/homes", share)
        fstab = f"nfs.example.org:/export/homes/{user} {home} nfs defaults 0 0"
        vm_id, host = start_vm(double, net, pub, {"NEBULAHUB_HOME": home,
                                                  "NEBULAHUB_HOME_FSTAB": fstab})
        assert ssh(host, priv, user, "cat ~/from-the-nfs-server") == "hello"
        ssh(host, priv, user, "echo back > ~/written-in-the-vm")
        assert os.path.exists(os.path.join(folder, "written-in-the-vm"))
        assert not os.path.exists(os.path.join(home, "written-in-the-vm"))

        unknown = f"files.example.org:/export/homes/{user} {home} nfs defaults 0 0"
        vm2, host2 = start_vm(double, net, pub, {"NEBULAHUB_HOME": home,
                                                 "NEBULAHUB_HOME_FSTAB": unknown})
        assert any(f"vm {vm2}: home: mounting files.example.org" in e
                   for e in double.host_errors)              # a real guest fails to mount
        assert "from-the-nfs-server" not in ssh(host2, priv, user, "ls -A ~")
        terminate(double, vm_id)
        terminate(double, vm2)
        assert mounted_anywhere(folder) == []
    finally:
        shutil.rmtree(share, ignore_errors=True)


def test_without_the_start_script_nothing_is_mounted(double, net, key, home):
    _, pub = key
    server = one(double)
    iid = new_home_image(server, "home-3")
    extra = {"TEMPLATE": {"DISK": [{"IMAGE_ID": "0"}, {"IMAGE_ID": str(iid), "TARGET": "vdb"}],
                          "CONTEXT": {"NETWORK": "YES", "SSH_PUBLIC_KEY": pub,
                                      "USERNAME": net.ssh_user, "NEBULAHUB_HOME": home,
                                      "NEBULAHUB_HOME_DISK": "vdb"}}}
    vm_id = server.template.instantiate(0, "no-script", False, extra, False)
    until(lambda: server.vm.info(vm_id).LCM_STATE == RUNNING, what="RUNNING")
    host = double.host_of(vm_id)
    host.wait_accepting(10)
    assert host.mounts == []
    assert not os.path.exists(double.image_dir(iid))      # never formatted

"""The double's images answer like oned 7.3.80, seen through pyone: a new DATABLOCK is LOCKED
while the datastore makes it, then READY; image and pool documents parse; datastore quota is
shown, enforced and freed; delete is refused while an image is locked or used; a persistent
image serves one VM at a time and is back only when that VM is DONE; an extra template's DISK
replaces the template's DISKs; disk resize by state. (Guests mounting homes:
test_one_double_homes.py.)"""
import time
import xmlrpc.client

import pyone
import pytest

from tests.one_double import (
    ACTIVE,
    ALLOCATE,
    BOOT_FAILURE,
    CLONING,
    DISK_RESIZE,
    DONE,
    EPILOG,
    IMAGE_DELETE,
    IMAGE_ERROR,
    IMAGE_LOCKED,
    IMAGE_LOCKED_USED_PERS,
    IMAGE_READY,
    IMAGE_USED,
    IMAGE_USED_PERS,
    PROLOG,
    RUNNING,
    SHUTDOWN,
    OneDouble,
)

HOME = {"TYPE": "DATABLOCK", "SIZE": "1024", "PERSISTENT": "YES",
        "NEBULAHUB_HUB_ID": "hub-1", "NEBULAHUB_USER": "alice", "NEBULAHUB_SERVER": ""}


@pytest.fixture
def double():
    d = OneDouble({"alice": "pw", "bob": "pw2", "oneadmin": "admin"}, step_seconds=0.03)
    d.start()
    yield d
    d.stop()


def one(double, session="alice:pw"):
    return pyone.OneServer(double.endpoint, session=session, protocol="xmlrpc")


def raw(double):
    return xmlrpc.client.ServerProxy(double.endpoint).one


def until(check, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"{what} never happened")


def image_state(server, iid, state, timeout=5.0):
    return until(lambda: (img := server.image.info(iid)).STATE == state and img, timeout,
                 f"image {iid} in state {state}")


def vm_state(server, vm_id, state, lcm=0, timeout=5.0):
    return until(lambda: ((vm := server.vm.info(vm_id)).STATE, vm.LCM_STATE) == (state, lcm)
                 and vm, timeout, f"VM {vm_id} in ({state}, {lcm})")


def new_home(server, name="home-alice", **attrs):
    iid = server.image.allocate({"TEMPLATE": {"NAME": name, **HOME, **attrs}}, 1)
    image_state(server, iid, IMAGE_READY)
    return iid


def with_home(iid, target="vdb"):
    """The extra template the product sends: the template's own DISK and the home volume."""
    return {"TEMPLATE": {"DISK": [{"IMAGE_ID": "0"}, {"IMAGE_ID": str(iid), "TARGET": target}]}}


def ds_entries(server):
    section = server.user.info(-1).DATASTORE_QUOTA
    entries = section.DATASTORE if section is not None else []
    return {int(e.ID): e for e in (entries if isinstance(entries, list) else [entries])}


# ------------------------------------------------------------------ allocate, info, pool

def test_a_new_datablock_is_locked_while_the_datastore_makes_it_then_ready(double):
    alice = one(double)
    double.image_create_delay(0.3)
    iid = alice.image.allocate({"TEMPLATE": {"NAME": "home-alice", **HOME}}, 1)
    img = alice.image.info(iid)
    assert img.STATE == IMAGE_LOCKED and img.SOURCE in ("", None)
    img = image_state(alice, iid, IMAGE_READY)
    assert (img.NAME, img.TYPE, img.PERSISTENT, img.SIZE, img.DATASTORE_ID, img.DATASTORE) == (
        "home-alice", 2, 1, 1024, 1, "default")
    assert (img.UNAME, img.FORMAT, img.RUNNING_VMS, img.VMS.ID) == ("alice", "raw", 0, [])
    assert img.SOURCE.startswith("/var/lib/one//datastores/1/")
    # Image::insert keeps custom attributes, takes NAME/TYPE/SIZE/PERSISTENT out, adds DEV_PREFIX
    assert dict(img.TEMPLATE) == {"DEV_PREFIX": "sd", "NEBULAHUB_HUB_ID": "hub-1",
                                  "NEBULAHUB_USER": "alice", "NEBULAHUB_SERVER": None}  # empty
    text = alice.image.allocate('NAME = "scratch"\nTYPE = "DATABLOCK"\nSIZE = 10', 1)
    assert alice.image.info(text).PERSISTENT == 0     # not PERSISTENT=YES: not persistent


def test_the_pool_lists_mine_and_the_public_os_image(double):
    alice, bob = one(double), one(double, "bob:pw2")
    a = new_home(alice)
    b = new_home(bob, "home-bob")

    def ids(pool):
        return [i.ID for i in (pool.IMAGE or [])]

    assert ids(alice.imagepool.info(-3, -1, -1)) == [a]
    assert ids(alice.imagepool.info(-2, -1, -1)) == [0, a]       # image 0: the templates' OS
    assert ids(one(double, "oneadmin:admin").imagepool.info(-2, -1, -1)) == [0, a, b]
    assert ids(one(double, "oneadmin:admin").imagepool.info(-2, a, a)) == [a]   # id range
    assert ids(one(double, "oneadmin:admin").imagepool.info(-2, 1, -2)) == [a, b]  # a page
    with pytest.raises(pyone.OneAuthorizationException,
                       match=rf"^\[one.image.info\] User \[3\] : Not authorized to perform USE "
                             rf"IMAGE \[{a}\].$"):
        bob.image.info(a)
    assert raw(double).image.info("alice:pw", 99) == [
        False, "[one.image.info] Error getting image [99].", 0x400, 99, 0]


def test_allocate_refusals_in_onedss_words(double):
    api = raw(double).image
    bad = {"TEMPLATE": {"NAME": "x", "TYPE": "DATABLOCK"}}
    assert api.allocate("alice:pw", "NAME=x\nTYPE=DATABLOCK\nSIZE=1", 7) == [
        False, "[one.image.allocate] Error getting datastore [7].", 0x400, 7, 0]
    assert api.allocate("alice:pw", "NAME=x\nTYPE=DATABLOCK\nSIZE=1", 0) == [
        False, ("[one.image.allocate] Error allocating a new image. New images can only be "
                "allocated in a files or image datastore."), 0x4000, -1, 0]
    with pytest.raises(pyone.OneInternalException,
                       match=r"^\[one.image.allocate\] Cannot parse image SIZE: Wrong number or "
                             r"missing SIZE attribute.$"):
        one(double).image.allocate(bad, 1)
    new_home(one(double))
    with pytest.raises(pyone.OneException,
                       match=r"^\[one.image.allocate\] Error allocating a new image. NAME is "
                             r"already taken by IMAGE 1.$"):
        one(double).image.allocate({"TEMPLATE": {"NAME": "home-alice", **HOME}}, 1)
    double.set_datastore_free(1, 500)
    assert api.allocate("alice:pw", "NAME=big\nTYPE=DATABLOCK\nSIZE=1024", 1) == [
        False, "[one.image.allocate] Not enough space in datastore", 0x800, -1, 0]


# ------------------------------------------------------------------ datastore quota

def test_datastore_quota_is_shown_enforced_and_freed_by_delete(double):
    alice = one(double)
    assert ds_entries(alice) == {}                      # no entry before any image
    double.set_datastore_quota("alice", 1, images=2, size_mb=1500)
    first = new_home(alice)
    entry = ds_entries(alice)[1]
    assert (entry.IMAGES, entry.IMAGES_USED, entry.SIZE, entry.SIZE_USED) == (
        "2", "1", "1500", "1024")
    refused = raw(double).image.allocate("alice:pw", "NAME=second\nTYPE=DATABLOCK\nSIZE=1024\n"
                                                     "PERSISTENT=YES", 1)
    assert refused == [False, ("[one.image.allocate] User [2] : user [2] limit of 1500 "
                               "reached for SIZE quota in DATASTORE with ID: 1."), 0x200, -1, 0]
    with pytest.raises(pyone.OneAuthorizationException, match="limit of 2 reached for IMAGES"):
        alice.image.allocate("NAME=a\nTYPE=DATABLOCK\nSIZE=1", 1)
        alice.image.allocate("NAME=b\nTYPE=DATABLOCK\nSIZE=1", 1)
    alice.image.delete(first)
    assert alice.image.info(first).STATE == IMAGE_DELETE   # the datastore removes it
    until(lambda: first not in [i.ID for i in alice.imagepool.info(-3, -1, -1).IMAGE or []])
    assert ds_entries(alice)[1].SIZE_USED == "1"           # only "a" (1 MB) is left
    double.set_datastore_quota("alice", 1, images=-1, size_mb=-1)
    for image in alice.imagepool.info(-3, -1, -1).IMAGE:
        alice.image.delete(image.ID)
    until(lambda: ds_entries(alice) == {}, what="the entry at defaults with nothing used gone")


# ------------------------------------------------------------------ VMs with a persistent image

def test_a_persistent_image_serves_one_vm_at_a_time_and_is_free_again_only_at_done(double):
    alice, api = one(double), raw(double)
    iid = new_home(alice)
    vm1 = alice.template.instantiate(0, "first", False, with_home(iid), False)
    img = alice.image.info(iid)
    assert (img.STATE, img.RUNNING_VMS, img.VMS.ID) == (IMAGE_USED_PERS, 1, [vm1])
    assert alice.image.info(0).STATE == IMAGE_USED        # the OS image: many VMs may use it
    refused = api.template.instantiate("alice:pw", 0, "second", False,
                                       f'DISK = [ IMAGE_ID = "0" ]\nDISK = [ IMAGE_ID = "{iid}", '
                                       'TARGET = "vdb" ]', False)
    assert refused == [False, ("[one.template.instantiate] Error allocating a new virtual "
                               f"machine template. DISK 1: Cannot acquire image {iid}, it is "
                               "persistent and already in use"), ALLOCATE, -1, 0]
    assert api.image.delete("alice:pw", iid) == [
        False, "[one.image.delete] Cannot delete image. There are 1 VMs using it.", 0x800, -1, 0]
    vm_state(alice, vm1, ACTIVE, RUNNING)
    double.shutdown_delay(0.3)                           # a slow shutdown keeps it in use
    alice.vm.action("terminate", vm1)
    vm_state(alice, vm1, ACTIVE, SHUTDOWN)
    assert alice.image.info(iid).STATE == IMAGE_USED_PERS
    seen = set()
    while (image := alice.image.info(iid)).STATE != IMAGE_READY:   # EPILOG saves it back
        assert image.STATE == IMAGE_USED_PERS
        vm = alice.vm.info(vm1)
        seen.add((vm.STATE, vm.LCM_STATE))
    assert alice.vm.info(vm1).STATE == DONE            # free only once the VM is DONE
    assert (ACTIVE, SHUTDOWN) in seen and seen <= {(ACTIVE, SHUTDOWN), (ACTIVE, EPILOG),
                                                   (DONE, 0)}
    img = alice.image.info(iid)
    assert (img.STATE, img.RUNNING_VMS, img.VMS.ID) == (IMAGE_READY, 0, [])
    vm2 = alice.template.instantiate(0, "second", False, with_home(iid), False)
    assert vm2 == vm1 + 1                                # the refused VM used up no id
    vm_state(alice, vm2, ACTIVE, RUNNING)


def test_an_extra_disk_replaces_the_templates_disks(double):
    alice = one(double)
    iid = new_home(alice)
    only_home = alice.template.instantiate(0, "only", False,
                                           {"TEMPLATE": {"DISK": {"IMAGE_ID": str(iid)}}}, False)
    disk = alice.vm.info(only_home).TEMPLATE["DISK"]      # Template::merge: one DISK left
    assert (disk["DISK_ID"], disk["IMAGE_ID"], disk["TARGET"]) == ("0", str(iid), "sda")
    assert alice.image.info(0).RUNNING_VMS == 0
    alice.vm.action("terminate-hard", only_home)         # PENDING: DONE at once
    vm_state(alice, only_home, DONE)
    both = alice.template.instantiate(0, "both", False, with_home(iid), False)
    template = alice.vm.info(both).TEMPLATE
    os_disk, home = template["DISK"]
    assert (os_disk["DISK_ID"], os_disk["IMAGE_ID"], os_disk["TARGET"]) == ("0", "0", "sda")
    assert (home["DISK_ID"], home["IMAGE_ID"], home["TARGET"]) == ("1", str(iid), "vdb")
    assert (home["PERSISTENT"], home["CLONE"], home["SAVE"], home["SIZE"]) == (
        "YES", "NO", "YES", "1024")
    assert (template["CONTEXT"]["DISK_ID"], template["CONTEXT"]["TARGET"]) == ("2", "hda")
    short = alice.vmpool.info(-3, -1, -1, -1).VM[-1].TEMPLATE["DISK"]
    assert [(d["DISK_ID"], d["IMAGE_ID"]) for d in short] == [("0", "0"), ("1", str(iid))]


def test_a_vm_on_an_image_still_being_made_waits_in_cloning(double):
    alice = one(double)
    double.image_create_delay(0.3)
    iid = alice.image.allocate({"TEMPLATE": {"NAME": "fresh", **HOME}}, 1)
    vm_id = alice.template.instantiate(0, "early", False, with_home(iid), False)
    vm = alice.vm.info(vm_id)
    assert (vm.STATE, alice.image.info(iid).STATE) == (CLONING, IMAGE_LOCKED_USED_PERS)
    assert vm.TEMPLATE["DISK"][1]["CLONING"] == "YES"
    vm_state(alice, vm_id, ACTIVE, RUNNING)
    assert alice.image.info(iid).STATE == IMAGE_USED_PERS
    with pytest.raises(pyone.OneInternalException, match=r"^\[one.image.delete\] Image locked, "
                       r"use --force flag to remove the image. Force delete may leave some "
                       r"files on Datastore$"):
        alice.image.delete(alice.image.allocate({"TEMPLATE": {"NAME": "x", **HOME}}, 1))


def test_a_failed_vm_leaves_its_persistent_image_in_error_until_enabled(double):
    alice = one(double)
    iid = new_home(alice)
    double.fail_next_boot()
    vm_id = alice.template.instantiate(0, "broken", False, with_home(iid), False)
    vm_state(alice, vm_id, ACTIVE, BOOT_FAILURE)
    alice.vm.action("terminate-hard", vm_id)             # CLEANUP_DELETE, then DONE
    vm_state(alice, vm_id, DONE)
    assert alice.image.info(iid).STATE == IMAGE_ERROR
    with pytest.raises(pyone.OneException, match=rf"DISK 1: Cannot acquire image {iid}, it is "
                                                 r"in state: ERROR$"):
        alice.template.instantiate(0, "again", False, with_home(iid), False)
    alice.image.enable(iid, True)
    assert alice.image.info(iid).STATE == IMAGE_READY


def test_tags_are_updated_by_append_or_replace(double):
    alice = one(double)
    iid = new_home(alice)
    alice.image.update(iid, {"TEMPLATE": {"NEBULAHUB_RESIZE_MB": "2048"}}, 1)
    assert alice.image.info(iid).TEMPLATE["NEBULAHUB_RESIZE_MB"] == "2048"
    assert alice.image.info(iid).TEMPLATE["NEBULAHUB_USER"] == "alice"
    alice.image.update(iid, 'ONLY = "this"', 0)
    assert dict(alice.image.info(iid).TEMPLATE) == {"ONLY": "this"}
    assert raw(double).image.update("alice:pw", iid, "A=1", 2)[1] == \
        "[one.image.update] Wrong update type"


# ------------------------------------------------------------------ disk resize

def test_diskresize_grows_the_disk_now_and_the_image_when_the_vm_gives_it_back(double):
    alice, api = one(double), raw(double)
    iid = new_home(alice)
    double.set_datastore_quota("alice", 1, size_mb=4096)
    double.prolog_delay(0.3)
    vm_id = alice.template.instantiate(0, "grow", False, with_home(iid), False)
    vm_state(alice, vm_id, ACTIVE, PROLOG)
    assert api.vm.diskresize("alice:pw", vm_id, 1, "2048") == [
        False, f"[one.vm.diskresize] Could not resize disk for VM {vm_id}, wrong state PROLOG.",
        0x800, -1, 0]
    vm_state(alice, vm_id, ACTIVE, RUNNING)
    assert api.vm.diskresize("alice:pw", vm_id, 1, "512")[1] == \
        "[one.vm.diskresize] New disk size has to be greater than current one"
    with pytest.raises(xmlrpc.client.Fault):              # the size is an XML-RPC string
        api.vm.diskresize("alice:pw", vm_id, 1, 2048)
    alice.vm.diskresize(vm_id, 1, "2048")
    vm_state(alice, vm_id, ACTIVE, DISK_RESIZE)
    assert ds_entries(alice)[1].SIZE_USED == "2048"       # charged at once
    vm_state(alice, vm_id, ACTIVE, RUNNING)
    assert alice.vm.info(vm_id).TEMPLATE["DISK"][1]["SIZE"] == "2048"
    assert alice.image.info(iid).SIZE == 1024             # TM local: copied back at the end
    alice.vm.action("terminate", vm_id)
    vm_state(alice, vm_id, DONE)
    assert (alice.image.info(iid).SIZE, alice.image.info(iid).STATE) == (2048, IMAGE_READY)
    with pytest.raises(pyone.OneAuthorizationException,
                       match="limit of 4096 reached for SIZE quota in DATASTORE with ID: 1"):
        vm2 = alice.template.instantiate(0, "grow-more", False, with_home(iid), False)
        vm_state(alice, vm2, ACTIVE, RUNNING)
        alice.vm.diskresize(vm2, 1, "8192")


def test_on_a_shared_datastore_the_image_grows_when_the_resize_ends(double):
    alice = one(double)
    shared = double.add_datastore("homes", tm_mad="shared")
    assert shared == 100
    iid = alice.image.allocate({"TEMPLATE": {"NAME": "home", **HOME}}, shared)
    image_state(alice, iid, IMAGE_READY)
    vm_id = alice.template.instantiate(0, "grow", False, with_home(iid), False)
    vm_state(alice, vm_id, ACTIVE, RUNNING)
    assert alice.vm.info(vm_id).TEMPLATE["DISK"][1]["LN_TARGET"] == "NONE"
    alice.vm.diskresize(vm_id, 1, "3072")
    vm_state(alice, vm_id, ACTIVE, RUNNING)
    assert alice.image.info(iid).SIZE == 3072

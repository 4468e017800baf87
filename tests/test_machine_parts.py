"""The machine layer's parts on their own: bootstrap, keys, trust, reach, shared cloud view."""
import asyncio
import os
import sys

import pytest

from machines.bootstrap import LOADER, BootstrapRunner, server_request
from machines.errors import BootstrapFailed
from machines.record import JumpHost, Machine


SERVER_PYTHON = "/usr/bin/python3"  # stdlib only is needed; every account can run it


def run_local(request, account=None):
    """Run the bootstrap as a local process, as ``account`` when given (the hub as root)."""
    if account and os.geteuid() == 0:
        who, python = {"user": account.uid, "group": account.gid}, SERVER_PYTHON
    else:
        who, python = {}, sys.executable
    return asyncio.run(BootstrapRunner().run_local(python, request,
                                                   env={"PATH": os.environ["PATH"]}, **who))


def account_dir(shared_tmp, account, name):
    d = os.path.join(shared_tmp, name)
    os.makedirs(d, exist_ok=True)
    os.chown(d, account.uid, account.gid)
    return d


def test_bootstrap_reports_status_of_a_never_started_server(shared_tmp, test_account):
    w = os.path.join(account_dir(shared_tmp, test_account, "status"), "w")
    assert run_local(server_request("status", w), test_account)["running"] is False
    assert run_local(server_request("stop", w), test_account)["stopped"] is False


def test_bootstrap_failure_is_a_readable_sentence_and_the_token_file_is_private(
        shared_tmp, test_account):
    d = account_dir(shared_tmp, test_account, "failure")
    req = server_request("start", os.path.join(d, "w"), token="s3cret-token",
                         python_env=os.path.join(d, "no-such-env"), create_env="")
    with pytest.raises(BootstrapFailed, match="has no jupyterhub-singleuser"):
        run_local(req, test_account)
    token = os.path.join(d, "w", "token")
    assert open(token).read() == "s3cret-token"
    assert os.stat(token).st_mode & 0o777 == 0o600
    assert os.stat(token).st_uid == test_account.uid
    assert os.stat(os.path.join(d, "w")).st_mode & 0o777 == 0o700


def test_bootstrap_never_starts_a_server_as_root(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: the refusal is about servers started as root")
    req = server_request("start", str(tmp_path / "w"), token="s3cret-token",
                         python_env=sys.prefix, create_env="")
    with pytest.raises(BootstrapFailed, match="never runs a server as root"):
        run_local(req)
    assert not (tmp_path / "w" / "token").exists()


def test_loader_in_argv_holds_no_secret():
    assert "token" not in LOADER.lower() and len(LOADER) < 200


def test_a_machine_record_round_trip_keeps_what_a_restart_needs():
    m = Machine(provider="opennebula", start_id="abc", vm_id=7, host="10.0.0.5",
                username="jovyan", jump=JumpHost(host="gw", username="u"),
                host_keys={"10.0.0.5:22": "ssh-ed25519 AAAA"}, sealed_private_key="gAAAA...")
    assert Machine(**m.model_dump(mode="json")) == m
    assert JumpHost.parse("gw@bastion.example:2200", "x") == JumpHost(
        host="bastion.example", username="gw", port=2200)
    with pytest.raises(ValueError, match="between 1 and 65535"):
        JumpHost.parse("gw@bastion:70000", "x")


def test_the_users_hub_key_files_are_sealed_and_old_clear_ones_get_sealed(tmp_path):
    from machines.keys import UserKeyStore
    from machines.secretbox import SecretBox

    store = UserKeyStore(str(tmp_path / "keys"), SecretBox.from_environment(str(tmp_path / "k")))
    line = store.public_line("ann@example.org")
    (path,) = list((tmp_path / "keys").iterdir())
    assert b"PRIVATE KEY" not in path.read_bytes() and path.stat().st_mode & 0o777 == 0o600
    assert store.public_line("ann@example.org") == line  # the same key comes back
    import asyncssh
    clear = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    path.write_text(clear)
    assert store.public_line("ann@example.org") == \
        asyncssh.import_private_key(clear).export_public_key().decode().strip()
    assert b"PRIVATE KEY" not in path.read_bytes()


@pytest.mark.parametrize("host, why", [
    ("127.0.0.1", "loopback"), ("127.1.2.3", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "metadata"), ("0.0.0.0", "not a machine"), ("::ffff:127.0.0.1", "loopback"),
    ("fe80::1", "link-local"), ("224.0.0.1", "not a machine"),
])
def test_users_own_machine_cannot_be_the_hubs_loopback_or_the_cloud_metadata(host, why):
    from machines.errors import HostRefused
    from machines.netguard import check_address

    with pytest.raises(HostRefused, match="resource_host: ") as e:
        check_address(host, field="resource_host", host=host, own=set())
    assert why in str(e.value)


def test_users_own_machine_cannot_be_the_hubs_own_address_and_admins_set_the_networks():
    import ipaddress

    from machines.errors import HostRefused
    from machines.netguard import check_address, hub_addresses

    own = hub_addresses()
    assert ipaddress.ip_address("127.0.0.1") in own
    with pytest.raises(HostRefused, match="the hub's own machine"):
        check_address("10.9.9.9", field="resource_host", host="10.9.9.9",
                      own={ipaddress.ip_address("10.9.9.9")})
    check_address("10.9.9.9", field="f", host="h", allow=["10.0.0.0/8"], own=set())
    with pytest.raises(HostRefused, match="outside the networks"):
        check_address("192.168.1.4", field="f", host="h", allow=["10.0.0.0/8"], own=set())
    with pytest.raises(HostRefused, match="does not serve on"):
        check_address("10.1.2.3", field="f", host="h", deny=["10.1.0.0/16"], own=set())
    with pytest.raises(ValueError, match="user_host_allow"):
        check_address("10.1.2.3", field="f", host="h", allow=["not-a-net"], own=set())


def test_host_keys_pinned_across_spawns_are_never_overwritten_silently(tmp_path):
    from machines.hostkeys import HUB_SCOPE, HostKeyStore, user_scope

    store = HostKeyStore(str(tmp_path / "hk"))
    store.pin(HUB_SCOPE, "10.0.0.5:22", "ssh-ed25519 AAAAold")
    store.pin(HUB_SCOPE, "10.0.0.5:22", "ssh-ed25519 AAAAnew")
    assert store.load(HUB_SCOPE) == {"10.0.0.5:22": "ssh-ed25519 AAAAold"}
    assert store.load(user_scope("ann")) == {}  # a user's machines are theirs alone
    assert store.forget(HUB_SCOPE, "10.0.0.5:22") and not store.forget(HUB_SCOPE, "10.0.0.5:22")
    assert oct((tmp_path / "hk").stat().st_mode & 0o777) == "0o700"



class _FakeCloud:
    """An OpenNebula client that counts pool queries (each takes a moment)."""

    def __init__(self):
        self.calls = 0

    async def list_tagged(self, hub_id):
        self.calls += 1
        await asyncio.sleep(0.05)
        from opennebula import VmInfo, VmPhase
        return [VmInfo(id=i, name=f"vm{i}", state=3, lcm_state=3, phase=VmPhase.RUNNING)
                for i in range(50)]


def test_fifty_servers_polling_at_once_make_one_cloud_query():
    from machines.cloudwatch import VmPoolWatch

    cloud = _FakeCloud()
    watch = VmPoolWatch(cloud, "hub", max_age=5)

    async def fifty_polls():
        return await asyncio.gather(*(watch.snapshot() for _ in range(50)))

    results = asyncio.run(fifty_polls())
    assert cloud.calls == 1 and all(49 in vms for _, vms in results)
    asyncio.run(watch.snapshot())  # still fresh: no new query
    assert cloud.calls == 1


def test_reconcile_asks_each_owner_kinds_source_and_never_touches_an_unknown_kind():
    from opennebula import VmInfo, VmPhase
    from machines.reconcile import References, find_orphans

    def vm(i, **tags):
        return VmInfo(id=i, name=f"vm{i}", state=3, lcm_state=3, phase=VmPhase.RUNNING,
                      tags={"NEBULAHUB_HUB_ID": "hub", **tags})

    class Cloud:
        async def list_tagged(self, hub_id):
            return [vm(1, NEBULAHUB_START_ID="live"), vm(2, NEBULAHUB_START_ID="dead"),
                    vm(3, NEBULAHUB_OWNER_KIND="server", NEBULAHUB_START_ID="dead2"),
                    vm(4, NEBULAHUB_OWNER_KIND="job-worker", NEBULAHUB_START_ID="j1"),
                    vm(5, NEBULAHUB_OWNER_KIND="dask-worker", NEBULAHUB_START_ID="d1")]

    async def servers():
        return References(start_ids={"live"})

    async def jobs():
        return References(vm_ids={4})

    orphans = asyncio.run(find_orphans(Cloud(), "hub", {"server": servers}))
    assert sorted(v.id for v in orphans) == [2, 3]  # job and Dask workers: no source, kept
    orphans = asyncio.run(find_orphans(Cloud(), "hub", {"server": servers, "job-worker": jobs}))
    assert sorted(v.id for v in orphans) == [2, 3]  # the job still holds its worker


def test_one_refused_terminate_does_not_stop_the_sweep():
    from opennebula import OpenNebulaError, VmInfo, VmPhase
    from machines.reconcile import References, reconcile

    class Cloud:
        terminated = []

        async def list_tagged(self, hub_id):
            return [VmInfo(id=i, name="x", state=3, lcm_state=3, phase=VmPhase.RUNNING,
                           tags={"NEBULAHUB_START_ID": f"s{i}"}) for i in (1, 2, 3)]

        async def terminate(self, vm_id):
            if vm_id == 1:
                raise OpenNebulaError("Could not terminate VM 1, wrong state PROLOG")
            self.terminated.append(vm_id)

    async def nothing():
        return References()

    cloud = Cloud()
    assert len(asyncio.run(reconcile(cloud, "hub", {"server": nothing}))) == 3
    assert cloud.terminated == [2, 3]


def test_a_command_runs_on_the_hubs_machine_as_the_users_account_with_no_shell(test_account):
    from machines.hosts import LocalHost

    host = LocalHost(test_account.name, "/", "/usr/bin/python3")
    tricky = ["a b", "$(id)", "'quoted'", "x;rm -rf /", "\n", "ü"]
    res = asyncio.run(host.run(["/usr/bin/python3", "-c",
                                "import os,sys,json; print(json.dumps([os.getuid()]+sys.argv[1:]))",
                                *tricky]))
    import json
    uid, *args = json.loads(res.stdout)
    assert res.returncode == 0 and args == tricky
    if os.geteuid() == 0:
        assert uid == test_account.uid

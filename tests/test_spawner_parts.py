"""The spawner's parts on their own: profiles, options, the form, the bootstrap program."""
import asyncio
import os
import sys
import types

import pytest
from tornado import web

from spawner import form
from spawner.bootstrap import LOADER, BootstrapFailed, BootstrapRunner, server_request
from spawner.profiles import parse_profiles
from spawner.state import JumpHost, ServerState


class FakeProvider:
    allow_user_resources = True

    async def form_info(self, spawner):
        return {"VMs": "1 used of 4, 3 free", "CPU": "1 used of 6, 5 free",
                "Hub key for your resource": "ssh-ed25519 AAAAC3Nza hub-key"}


def fake_spawner(profiles=None, user_options=None):
    sp = types.SimpleNamespace(
        profiles=profiles or [{"slug": "small", "name": "Small"},
                              {"slug": "big", "name": "Big <b>", "cpu": 4, "memory_mb": 8192}],
        user=types.SimpleNamespace(name="ann"), user_options=user_options or {},
        host_provider=FakeProvider())
    sp.profile_list = lambda: parse_profiles(sp.profiles)
    return sp


def test_profile_errors_name_the_profile_and_field():
    with pytest.raises(ValueError, match=r"profiles\[1\] \(bad\): memory_mb"):
        parse_profiles([{"slug": "ok", "name": "Ok"},
                        {"slug": "bad", "name": "Bad", "memory_mb": 1}])
    with pytest.raises(ValueError, match="slug"):
        parse_profiles([{"slug": "Has Spaces", "name": "x"}])
    with pytest.raises(ValueError, match="unique"):
        parse_profiles([{"slug": "a", "name": "x"}, {"slug": "a", "name": "y"}])


@pytest.mark.parametrize("options, field", [
    ({"profile": "nope"}, "profile"),
    ({"memory": "9000"}, "memory"),
    ({"resource_host": "-oProxyCommand=x"}, "resource_host"),
    ({"resource_host": "h.example", "resource_user": "Root;rm"}, "resource_user"),
    ({"resource_host": "h.example", "resource_port": "70000"}, "resource_port"),
    ({"resource_host": "h.example", "resource_jump": "u@-bad"}, "resource_jump"),
    ({"resource_port": "22"}, "resource_port"),
])
def test_bad_options_name_the_field(options, field):
    with pytest.raises(web.HTTPError) as e:
        form.validate_options(options, fake_spawner())
    assert e.value.log_message.startswith(f"{field}:"), e.value.log_message


def test_good_options_are_normalised():
    out = form.validate_options({"resource_host": "10.1.2.3", "resource_port": "2222",
                                 "resource_jump": "gw@bastion.example:2200"}, fake_spawner())
    assert out == {"profile": "small", "resource_host": "10.1.2.3", "resource_port": 2222,
                   "resource_jump": "gw@bastion.example:2200"}
    assert JumpHost.parse("gw@bastion.example:2200", "x") == JumpHost(
        host="bastion.example", username="gw", port=2200)


def test_form_shows_profiles_quota_and_the_hub_key_escaped():
    html = asyncio.run(form.render_form(fake_spawner(user_options={"profile": "big"})))
    assert 'value="big" checked' in html
    assert "Big &lt;b&gt;" in html
    assert "Big <b>" not in html
    assert "3 free" in html and "5 free" in html
    assert "ssh-ed25519 AAAAC3Nza hub-key" in html
    assert 'name="resource_host"' in html


def test_state_round_trip_keeps_what_a_restart_needs():
    st = ServerState(provider="opennebula", start_id="abc", vm_id=7, host="10.0.0.5",
                     username="jovyan", jump=JumpHost(host="gw", username="u"),
                     host_keys={"10.0.0.5:22": "ssh-ed25519 AAAA"}, local_port=4000,
                     api_port=5000, server_port=6000, workdir="~/.nebulahub/servers/abc")
    again = ServerState(**st.dump())
    assert again == st


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


def test_progress_stays_open_while_the_spawn_is_pending_before_start_runs():
    """The hub may open the progress stream before start() (apply_user_options comes first)."""
    from spawner import OpenNebulaSpawner

    async def scenario():
        sp = OpenNebulaSpawner(provider="local")
        sp._spawn_pending = True  # what the hub sets when a spawn is requested
        seen = []

        async def read():
            async for event in sp.progress():
                seen.append(event["message"])

        reader = asyncio.ensure_future(read())
        await asyncio.sleep(0.2)
        assert not reader.done(), "progress ended before the spawn started"
        sp._starting = True
        sp.report(40, "Using the hub's own machine")
        await asyncio.sleep(0.1)
        sp._starting = False
        sp._spawn_pending = False
        await asyncio.wait_for(reader, 5)
        return seen

    assert asyncio.run(scenario()) == ["Using the hub's own machine"]


# ---- security and robustness of the spawner's own parts ------------------------------------

def test_a_state_written_with_a_clear_private_key_loads_sealed(tmp_path):
    """State from the release before keys were sealed still loads, and is never stored in
    clear again (what admins read through the REST API holds no private key)."""
    from spawner import OpenNebulaSpawner
    from spawner.keys import new_spawn_key

    private, _ = new_spawn_key()
    sp = OpenNebulaSpawner(provider="opennebula", crypt_key_file=str(tmp_path / "key"))
    sp.load_state({"provider": "opennebula", "start_id": "abc", "vm_id": 3,
                   "private_key": private, "host": "10.0.0.5"})
    state = sp.get_state()
    assert "private_key" not in state and "PRIVATE KEY" not in str(state)
    assert sp.secret_box.open(state["sealed_private_key"]) == private
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    # the hub's crypt key, when set, is used instead of the key file (as for auth_state)
    os.environ["JUPYTERHUB_CRYPT_KEY"] = "ab" * 32
    try:
        sp2 = OpenNebulaSpawner(provider="opennebula", crypt_key_file=str(tmp_path / "key2"))
        sealed = sp2.secret_box.seal("secret")
        assert not (tmp_path / "key2").exists()
        with pytest.raises(Exception, match="crypt key changed"):
            sp.secret_box.open(sealed)
    finally:
        del os.environ["JUPYTERHUB_CRYPT_KEY"]


def test_the_users_hub_key_files_are_sealed_and_old_clear_ones_get_sealed(tmp_path):
    from spawner.keys import UserKeyStore
    from spawner.secretbox import SecretBox

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
    from spawner.netguard import HostRefused, check_address

    with pytest.raises(HostRefused, match="resource_host: ") as e:
        check_address(host, field="resource_host", host=host, own=set())
    assert why in str(e.value)


def test_users_own_machine_cannot_be_the_hubs_own_address_and_admins_set_the_networks():
    import ipaddress

    from spawner.netguard import HostRefused, check_address, hub_addresses

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


@pytest.mark.parametrize("options, field", [
    ({"resource_host": "h.example\n"}, "resource_host"),
    ({"resource_host": "h.example", "resource_user": "ann\n"}, "resource_user"),
    ({"resource_host": "h.example", "resource_jump": "gw@bastion:0"}, "resource_jump"),
    ({"resource_host": "h.example", "resource_jump": "gw@bastion:65536"}, "resource_jump"),
    ({"resource_host": "h.example", "resource_jump": "gw@bastion\n"}, "resource_jump"),
    ({"resource_host": "h.example", "resource_trust_new_host_key": "maybe"},
     "resource_trust_new_host_key"),
])
def test_trailing_newlines_and_out_of_range_jump_ports_are_refused_by_name(options, field):
    with pytest.raises(web.HTTPError) as e:
        form.validate_options(options, fake_spawner())
    assert e.value.log_message.startswith(f"{field}:"), e.value.log_message


def test_host_keys_pinned_across_spawns_are_never_overwritten_silently(tmp_path):
    from spawner.hostkeys import HUB_SCOPE, HostKeyStore, user_scope

    store = HostKeyStore(str(tmp_path / "hk"))
    store.pin(HUB_SCOPE, "10.0.0.5:22", "ssh-ed25519 AAAAold")
    store.pin(HUB_SCOPE, "10.0.0.5:22", "ssh-ed25519 AAAAnew")
    assert store.load(HUB_SCOPE) == {"10.0.0.5:22": "ssh-ed25519 AAAAold"}
    assert store.load(user_scope("ann")) == {}  # a user's machines are theirs alone
    assert store.forget(HUB_SCOPE, "10.0.0.5:22") and not store.forget(HUB_SCOPE, "10.0.0.5:22")
    assert oct((tmp_path / "hk").stat().st_mode & 0o777) == "0o700"


class _BrokenProvider:
    """A provider with a programming error in check() / acquire(), or a real outage."""

    def __new__(cls, failure):
        from spawner.providers import HostProvider

        class Provider(HostProvider):
            name = "broken"
            released = 0

            async def check(self, state):
                raise failure

            async def acquire(self, ctx):
                raise failure

            async def release(self, state):
                type(self).released += 1

        return Provider()


def _spawner_with(provider, **state):
    from spawner import OpenNebulaSpawner
    from spawner.state import ServerState

    sp = OpenNebulaSpawner(provider="local", poll_grace=0,
                           user=types.SimpleNamespace(name="ann", escaped_name="ann"))
    sp.host_provider = provider
    sp.server_state = ServerState(**state)
    return sp


def test_a_bug_while_polling_keeps_the_server_and_logs_its_traceback(caplog):
    provider = _BrokenProvider(TypeError("a programming error"))
    sp = _spawner_with(provider, workdir="/w", server_port=8888, host="10.0.0.5")
    with caplog.at_level("ERROR"):
        assert asyncio.run(sp.poll()) is None  # still running, even with no grace at all
    assert provider.released == 0, "a bug must never release the user's machine"
    record = next(r for r in caplog.records if "unexpectedly" in r.getMessage())
    assert record.exc_info and record.exc_info[0] is TypeError


def test_a_cloud_or_network_outage_past_the_grace_releases_the_machine():
    provider = _BrokenProvider(ConnectionRefusedError("cloud down"))
    sp = _spawner_with(provider, workdir="/w", server_port=8888, host="10.0.0.5")
    assert asyncio.run(sp.poll()) == 0
    assert provider.released == 1


def test_a_bug_while_starting_is_logged_with_its_traceback(caplog):
    from spawner.spawner import UserFacingSpawnError

    provider = _BrokenProvider(KeyError("oops"))
    sp = _spawner_with(provider)
    with caplog.at_level("ERROR"), pytest.raises(UserFacingSpawnError) as e:
        asyncio.run(sp.start())
    assert e.value.reason == "internal" and "KeyError" in e.value.message
    record = next(r for r in caplog.records if "Spawn of" in r.getMessage())
    assert record.exc_info and record.exc_info[0] is KeyError
    assert provider.released == 1

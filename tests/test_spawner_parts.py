"""The JupyterHub adapter's parts on their own: profiles, options, the form, its state, and how
start/poll treat what the machine layer raises."""
import asyncio
import types

import pytest
from tornado import web

from machines import JumpHost, MachineProvider
from machines.hosts import Host
from spawner import form
from spawner.profiles import parse_profiles


class FakeProvider:
    allow_user_resources = True

    async def form_info(self, user):
        return {"VMs": "1 used of 4, 3 free", "CPU": "1 used of 6, 5 free",
                "Hub key for your resource": "ssh-ed25519 AAAAC3Nza hub-key"}


def fake_spawner(profiles=None, user_options=None):
    sp = types.SimpleNamespace(
        profiles=profiles or [{"slug": "small", "name": "Small"},
                              {"slug": "big", "name": "Big <b>", "cpu": 4, "memory_mb": 8192}],
        user=types.SimpleNamespace(name="ann"), user_options=user_options or {},
        machine_provider=FakeProvider())
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


def test_a_state_written_by_the_first_release_still_loads(tmp_path):
    """Release 1 kept its state flat, marked a user's own machine in ``profile`` and kept the
    per-spawn private key in clear: it loads as this version, the key sealed, one meaning per
    field (what admins read through the REST API holds no private key)."""
    from machines.keys import new_spawn_key
    from spawner import OpenNebulaSpawner
    from spawner.state import STATE_VERSION

    private, _ = new_spawn_key()
    v1 = {"provider": "ssh", "start_id": "abc123", "profile": "own-resource",
          "started_at": 1700000000.0, "host": "10.0.0.5", "port": 2222, "username": "ann",
          "jump": {"host": "gw", "username": "u", "port": 22}, "private_key": private,
          "host_keys": {"10.0.0.5:2222": "ssh-ed25519 AAAA"}, "workdir": "~/.nebulahub/s/abc",
          "server_port": 6000, "local_port": 4000, "api_port": 5000}
    sp = OpenNebulaSpawner(provider="ssh", user=types.SimpleNamespace(name="ann"))
    sp.machine_access.crypt_key_file = str(tmp_path / "key")
    sp.load_state(v1)
    state = sp.get_state()
    assert state["version"] == STATE_VERSION
    m = state["machine"]
    assert m["own_resource"] is True and state["profile"] == ""  # one meaning per field
    assert (m["host"], m["port"], m["username"], m["jump"]["host"]) == ("10.0.0.5", 2222, "ann",
                                                                        "gw")
    assert m["host_keys"] == v1["host_keys"] and m["user"] == "ann"
    assert (state["server_port"], state["local_port"], state["api_port"]) == (6000, 4000, 5000)
    assert "PRIVATE KEY" not in str(state) and "private_key" not in m
    assert sp.machine_access.secret_box.open(m["sealed_private_key"]) == private
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    # and this version's state loads as it is
    again = OpenNebulaSpawner(provider="ssh", user=types.SimpleNamespace(name="ann"))
    again.machine_access.crypt_key_file = str(tmp_path / "key")
    again.load_state(state)
    assert again.get_state() == state


def test_the_hubs_crypt_key_seals_keys_when_it_is_set(tmp_path, monkeypatch):
    from machines import MachineAccess

    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "ab" * 32)
    access = MachineAccess(crypt_key_file=str(tmp_path / "key"))
    sealed = access.secret_box.seal("secret")
    assert not (tmp_path / "key").exists()
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY")
    other = MachineAccess(crypt_key_file=str(tmp_path / "key"))
    with pytest.raises(Exception, match="crypt key changed"):
        other.secret_box.open(sealed)


class _ServerListens(Host):
    """A machine whose server answers, or whose check itself has a bug (``failure``)."""

    def __init__(self, failure=None):
        self.failure = failure

    async def open(self, *, wait, report=None): ...
    async def run(self, argv, *, input=None, env=None, timeout=60): ...
    async def exchange(self, argv, data=b"", *, timeout=600): ...
    async def bootstrap(self, request, on_event=None): ...
    async def forward_to_machine(self, port, local_port=0): ...
    async def forward_to_hub(self, host, port, remote_port=0): ...

    async def port_open(self, port):
        if self.failure:
            raise self.failure
        return True

    def reached_before(self):
        return False


def _broken_provider(failure, host_failure=None):
    """A provider with a programming error in check() / acquire(), or a real outage; its
    machine's own check may fail too (``host_failure``)."""

    class Provider(MachineProvider):
        name = "broken"
        released = 0

        async def check(self, machine):
            raise failure

        async def acquire(self, request, machine, report, persist):
            raise failure

        def host_for(self, machine, *, trust_new_key=False):
            return _ServerListens(host_failure)

        async def release(self, machine):
            type(self).released += 1

    return Provider()


def _spawner_with(provider, **state):
    from machines import Machine
    from spawner import OpenNebulaSpawner
    from spawner.state import ServerState

    sp = OpenNebulaSpawner(provider="local", poll_grace=0,
                           user=types.SimpleNamespace(name="ann", escaped_name="ann"))
    sp.machine_provider = provider
    sp.server_state = ServerState(machine=Machine(host="10.0.0.5"), **state)
    return sp


@pytest.mark.parametrize("where", ["asking the provider", "checking the machine"])
def test_a_bug_while_polling_keeps_the_server_and_logs_its_traceback(caplog, where):
    bug = TypeError("a programming error")
    provider = (_broken_provider(bug) if where == "asking the provider"
                else _broken_provider(ConnectionRefusedError("cloud down"), host_failure=bug))
    sp = _spawner_with(provider, workdir="/w", server_port=8888)
    with caplog.at_level("ERROR"):
        assert asyncio.run(sp.poll()) is None  # still running, even with no grace at all
    assert provider.released == 0, "a bug must never release the user's machine"
    record = next(r for r in caplog.records if r.exc_info and r.exc_info[0] is TypeError)
    assert "failed" in record.getMessage()


def test_a_cloud_outage_drops_no_server_whose_machine_answers():
    provider = _broken_provider(ConnectionRefusedError("cloud down"))
    sp = _spawner_with(provider, workdir="/w", server_port=8888)
    assert asyncio.run(sp.poll()) is None  # however long: liveness comes from the server
    assert provider.released == 0


def test_a_cloud_and_machine_silent_past_the_grace_releases_the_machine_once():
    down = ConnectionRefusedError("nobody answers")
    provider = _broken_provider(down, host_failure=down)
    sp = _spawner_with(provider, workdir="/w", server_port=8888)
    assert asyncio.run(sp.poll()) == 0  # poll_grace is 0 here
    assert asyncio.run(sp.poll()) == 0
    assert provider.released == 1


def test_a_bug_while_starting_is_logged_with_its_traceback(caplog):
    from spawner.spawner import UserFacingSpawnError

    provider = _broken_provider(KeyError("oops"))
    sp = _spawner_with(provider)
    with caplog.at_level("ERROR"), pytest.raises(UserFacingSpawnError) as e:
        asyncio.run(sp.start())
    assert e.value.reason == "internal" and "KeyError" in e.value.message
    record = next(r for r in caplog.records if "Spawn of" in r.getMessage())
    assert record.exc_info and record.exc_info[0] is KeyError
    assert provider.released == 1

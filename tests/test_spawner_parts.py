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


def run_local(request):
    return asyncio.run(BootstrapRunner().run_local(sys.executable, request,
                                                   env={"PATH": os.environ["PATH"]}))


def test_bootstrap_reports_status_of_a_never_started_server(tmp_path):
    assert run_local(server_request("status", str(tmp_path / "w")))["running"] is False
    assert run_local(server_request("stop", str(tmp_path / "w")))["stopped"] is False


def test_bootstrap_failure_is_a_readable_sentence_and_the_token_file_is_private(tmp_path):
    req = server_request("start", str(tmp_path / "w"), token="s3cret-token",
                         python_env=str(tmp_path / "no-such-env"), create_env="")
    with pytest.raises(BootstrapFailed, match="has no jupyterhub-singleuser"):
        run_local(req)
    token = tmp_path / "w" / "token"
    assert token.read_text() == "s3cret-token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "w").stat().st_mode & 0o777 == 0o700


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

"""VISPA-style bootstrap on a host that has only python3: the environment is built on the host."""
import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.hubproc import HubProcess
from tests.vmimage import requirements, wheelhouse

pytestmark = pytest.mark.integration


def test_bootstrap_builds_a_fresh_environment_when_the_image_has_none(nethosts, tmp_path):
    wheels = wheelhouse()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    host = nethosts.add_host("bare1", authorized_keys=[(tmp_path / "k.pub").read_text().strip()])
    env_dir = f".nebulahub/fresh-{secrets.token_hex(4)}"
    hub = HubProcess(tmp_path / "hub", f"""
        c.OpenNebulaSpawner.provider = "ssh"
        c.OpenNebulaSpawner.python_env = ""
        c.OpenNebulaSpawner.create_env = "~/{env_dir}"
        c.OpenNebulaSpawner.singleuser_packages = {json.dumps(requirements())}
        c.OpenNebulaSpawner.pip_args = ["--no-index", "--find-links", "{wheels}"]
        c.OpenNebulaSpawner.profiles = [{{"slug": "notebook", "name": "Notebook"}}]
        c.SshProvider.host = "{host.ip}"
        c.SshProvider.username_template = "{host.user}"  # the one test login of the host
        c.SshProvider.key_file = "{tmp_path}/k"
    """)
    hub.start()
    try:
        hub.create_user("fay")
        token = hub.user_token("fay")
        assert hub.spawn("fay").status_code == 202
        events = hub.progress("fay")
        messages = [e["message"] for e in events]
        assert events[-1].get("ready"), messages
        assert any("Creating a Python environment" in m for m in messages), messages
        assert any(m.startswith("Installing jupyterhub") for m in messages), messages
        assert hub.get_via_proxy("/user/fay/api/status", token).status_code == 200
        hub.stop_server("fay")
    finally:
        hub.stop()
        host.destroy()
        shutil.rmtree(f"/home/{nethosts.ssh_user}/{env_dir}", ignore_errors=True)
        Path(f"/home/{nethosts.ssh_user}/{env_dir}.lock").unlink(missing_ok=True)

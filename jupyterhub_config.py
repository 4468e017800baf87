"""NebulaHub configuration.

As shipped, this is the embedded default that ``make demo`` starts: the ``local`` host provider (no
cloud, no SSH, same bootstrap code), demo users with a shared password, hub on 127.0.0.1:8000.

To serve on OpenNebula, set ``NEBULAHUB_PROVIDER=opennebula`` (or edit ``provider`` below) and fill
the OpenNebula section. ``jupyterhub --help-all`` lists every setting with its help text
(classes OpenNebulaSpawner, OpenNebulaProvider, SshProvider, LocalProvider).
"""
import os
from pathlib import Path

c = get_config()  # noqa: F821 (provided by JupyterHub)

ROOT = Path(__file__).resolve().parent
STATE = Path(os.environ.get("NEBULAHUB_STATE_DIR", ROOT / "var")).resolve()
STATE.mkdir(parents=True, exist_ok=True)
os.chmod(STATE, 0o700)

# ---- the hub -------------------------------------------------------------------------------
c.JupyterHub.bind_url = f"http://127.0.0.1:{os.environ.get('NEBULAHUB_PORT', '8000')}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{os.environ.get('NEBULAHUB_HUB_PORT', '8081')}"
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
chp = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
if chp.exists():
    c.ConfigurableHTTPProxy.command = [str(chp)]
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 3

# ---- who may log in (demo: shared password; replace with your authenticator) ---------------
DEMO_USERS = ["student", "researcher", "admin"]
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = os.environ.get("NEBULAHUB_DEMO_PASSWORD", "nebula-demo")
c.Authenticator.allowed_users = set(DEMO_USERS)
c.Authenticator.admin_users = {"admin"}

# ---- where servers run ---------------------------------------------------------------------
c.JupyterHub.spawner_class = "opennebula"
c.OpenNebulaSpawner.provider = os.environ.get("NEBULAHUB_PROVIDER", "local")
c.OpenNebulaSpawner.default_url = "/lab"
# A hub restart must not stop anybody's server; only the demo (local) stops its servers on exit.
c.JupyterHub.cleanup_servers = c.OpenNebulaSpawner.provider == "local"
c.OpenNebulaSpawner.profiles = [
    {"slug": "notebook", "name": "Notebook", "description": "JupyterLab for notebooks",
     "cpu": 1, "vcpu": 1, "memory_mb": 2048, "default_url": "/lab"},
    {"slug": "student", "name": "Student", "description": "Opens the no-code plotting app",
     "cpu": 1, "vcpu": 1, "memory_mb": 2048, "default_url": "/nebulahub-plot/",
     "max_lifetime_hours": 8},
    {"slug": "large", "name": "Large", "description": "For heavier analyses",
     "cpu": 2, "vcpu": 2, "memory_mb": 4096, "default_url": "/lab"},
]

# local provider (the embedded default): servers run on this machine, homes under the state dir
c.LocalProvider.home_root = str(STATE / "homes" / "{username}")
c.LocalProvider.workdir_root = str(STATE / "servers")

# OpenNebula: credentials come from $NEBULAHUB_ONE_AUTH or a file, never from this file
c.OpenNebulaProvider.endpoint = os.environ.get("NEBULAHUB_ONE_ENDPOINT",
                                               "http://localhost:2633/RPC2")
c.OpenNebulaProvider.auth_file = os.environ.get("NEBULAHUB_ONE_AUTH_FILE", "")
c.OpenNebulaProvider.template_id = int(os.environ.get("NEBULAHUB_ONE_TEMPLATE", "-1"))
c.OpenNebulaProvider.hub_id = os.environ.get("NEBULAHUB_HUB_ID", "nebulahub")
c.OpenNebulaProvider.ssh_user = "jovyan"
# c.OpenNebulaSpawner.jump_host = "hub@bastion.example.org:22"
# c.OpenNebulaSpawner.jump_key_file = "/etc/nebulahub/bastion_ed25519"
# c.OpenNebulaSpawner.python_env = "/opt/nebulahub/env"   # baked into the image (fast start)

# ssh provider: a fixed host, or users' own machines
# c.SshProvider.host = "jupyter@compute.example.org"
# c.SshProvider.key_file = "/etc/nebulahub/hub_ed25519"
c.SshProvider.allow_user_resources = True
c.SshProvider.user_key_dir = str(STATE / "user-keys")

# ---- orphan sweep: terminate VMs of this hub that no server references ------------------------
if c.OpenNebulaSpawner.provider == "opennebula":
    from spawner.reconcile import managed_service

    sweep, sweep_role = managed_service(__file__, every=300)
    c.JupyterHub.services = [sweep]
    c.JupyterHub.load_roles = [sweep_role]

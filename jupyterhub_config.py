"""NebulaHub configuration.

As shipped, this is the embedded default that ``make demo`` starts: the ``local`` host provider (no
cloud, no SSH, same bootstrap code), demo users with a shared password, hub on 127.0.0.1:8000.
The demo password only ever serves the ``local`` provider on a loopback address: with any other
provider or bind address the hub refuses to start until an authenticator is configured in the
ADMIN section below.

To serve on OpenNebula, set ``NEBULAHUB_PROVIDER=opennebula`` (or edit ``provider`` below), fill
the OpenNebula section and set ``c.JupyterHub.authenticator_class``. ``jupyterhub --help-all``
lists every setting with its help text (classes OpenNebulaSpawner, MachineAccess,
OpenNebulaProvider, SshProvider, LocalProvider).

Ports (see README): the public proxy port ``$NEBULAHUB_PORT`` (8000), the hub's internal API
``$NEBULAHUB_HUB_PORT`` (8081), the proxy's REST API ``$NEBULAHUB_PROXY_API_PORT`` (default: a free
loopback port chosen at start), all on 127.0.0.1 by default.
"""
import ipaddress
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

c = get_config()  # noqa: F821 (provided by JupyterHub)

ROOT = Path(__file__).resolve().parent
# Hub-private state (database, cookie secret, crypt key, SSH keys): 0700, root's alone.
STATE = Path(os.environ.get("NEBULAHUB_STATE_DIR", ROOT / "var")).resolve()
STATE.mkdir(parents=True, exist_ok=True)
os.chmod(STATE, 0o700)
AS_ROOT = os.geteuid() == 0
# What users' own accounts must reach (demo homes, the servers' Python): a folder every account
# can traverse when the hub is root; the state folder itself otherwise.
SHARED = Path(os.environ.get("NEBULAHUB_SHARED_DIR",
                             "/var/lib/nebulahub/demo" if AS_ROOT else STATE)).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_file(path: Path) -> str:
    """Create ``path`` empty and 0600 if missing (SQLite keeps the mode), tighten it if not."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    return str(path)


# ---- the hub -------------------------------------------------------------------------------
c.JupyterHub.bind_url = (f"http://{os.environ.get('NEBULAHUB_IP', '127.0.0.1')}:"
                         f"{os.environ.get('NEBULAHUB_PORT', '8000')}")
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{os.environ.get('NEBULAHUB_HUB_PORT', '8081')}"
c.ConfigurableHTTPProxy.api_url = (
    f"http://127.0.0.1:{os.environ.get('NEBULAHUB_PROXY_API_PORT') or free_port()}")
c.JupyterHub.db_url = f"sqlite:///{private_file(STATE / 'jupyterhub.sqlite')}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
chp = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
if chp.exists():
    c.ConfigurableHTTPProxy.command = [str(chp)]
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 3

# ---- where servers run ---------------------------------------------------------------------
c.JupyterHub.spawner_class = "opennebula"
c.OpenNebulaSpawner.provider = os.environ.get("NEBULAHUB_PROVIDER", "local")
c.OpenNebulaSpawner.default_url = "/lab"
# how the hub reaches machines: sealed keys and pinned host keys live in the private state
c.MachineAccess.crypt_key_file = str(STATE / "nebulahub_crypt_key")
c.MachineAccess.host_key_dir = str(STATE / "host-keys")
c.MachineAccess.pending_release_file = str(STATE / "pending-releases.json")
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

# local provider (the embedded default): each user's server runs on this machine as a Unix
# account of its own ("nhdemo-<user>", created by the demo and removed by `nebulahub accounts
# remove`), in a home under SHARED, from a Python environment every account can read.
c.LocalProvider.home_root = str(SHARED / "homes" / "{username}")
c.LocalProvider.system_user_prefix = os.environ.get("NEBULAHUB_ACCOUNT_PREFIX", "nhdemo-")
c.LocalProvider.create_system_users = True
c.LocalProvider.accounts_registry = str(STATE / "created-accounts")
if AS_ROOT and c.OpenNebulaSpawner.provider == "local":
    c.OpenNebulaSpawner.python_env = os.environ.get("NEBULAHUB_SERVER_ENV",
                                                    "/var/lib/nebulahub/server-env")

# OpenNebula: credentials come from $NEBULAHUB_ONE_AUTH or a file, never from this file
c.OpenNebulaProvider.endpoint = os.environ.get("NEBULAHUB_ONE_ENDPOINT",
                                               "http://localhost:2633/RPC2")
c.OpenNebulaProvider.auth_file = os.environ.get("NEBULAHUB_ONE_AUTH_FILE", "")
c.OpenNebulaProvider.template_id = int(os.environ.get("NEBULAHUB_ONE_TEMPLATE", "-1"))
c.OpenNebulaProvider.hub_id = os.environ.get("NEBULAHUB_HUB_ID", "nebulahub")
c.OpenNebulaProvider.ssh_user = "jovyan"
# c.MachineAccess.jump_host = "hub@bastion.example.org:22"
# c.MachineAccess.jump_key_file = "/etc/nebulahub/bastion_ed25519"
# c.OpenNebulaSpawner.python_env = "/opt/nebulahub/env"   # baked into the image (fast start)

# ssh provider: a fixed host (each hub user logs in as the account of the same name), or users'
# own machines
# c.SshProvider.host = "compute.example.org"
# c.SshProvider.key_file = "/etc/nebulahub/hub_ed25519"
c.SshProvider.allow_user_resources = True
c.SshProvider.user_key_dir = str(STATE / "user-keys")

# ---- ADMIN: who may log in -----------------------------------------------------------------
# Set your authenticator here, e.g.
#   c.JupyterHub.authenticator_class = "github"      (oauthenticator)
#   c.JupyterHub.authenticator_class = "pam"         (Unix accounts of this machine)
# Without one, the shared demo password is used -- only for the local provider on loopback.


def _loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


DEMO_USERS = ["student", "researcher", "admin"]
if "authenticator_class" not in c.JupyterHub:
    if c.OpenNebulaSpawner.provider != "local" or not _loopback(c.JupyterHub.bind_url):
        sys.exit(
            "NebulaHub refuses to start: the demo password may only serve the 'local' provider "
            f"on a loopback address (provider {c.OpenNebulaSpawner.provider!r}, bind "
            f"{c.JupyterHub.bind_url}). Set c.JupyterHub.authenticator_class (and its settings) "
            f"in the ADMIN section of {__file__}.")
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = os.environ.get("NEBULAHUB_DEMO_PASSWORD",
                                                                 "nebula-demo")
    admin_password = STATE / "demo-admin-password"
    if not admin_password.exists():
        import secrets

        fd = os.open(admin_password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
    c.SharedPasswordAuthenticator.admin_password = admin_password.read_text().strip()
    c.Authenticator.allowed_users = set(DEMO_USERS)
    c.Authenticator.admin_users = {"admin"}

# ---- services: the orphan sweep (VMs whose owner no longer lives) and the idle culler ----------
from spawner.reconcile import idle_culler, managed_service  # noqa: E402

c.JupyterHub.services, c.JupyterHub.load_roles = [], []
if c.OpenNebulaSpawner.provider == "opennebula":
    sweep, sweep_role = managed_service(__file__, every=300)
    c.JupyterHub.services.append(sweep)
    c.JupyterHub.load_roles.append(sweep_role)
# forgotten servers give their VMs back: on by default for VMs, 0 turns it off
CULL_IDLE = int(os.environ.get("NEBULAHUB_CULL_IDLE_SECONDS",
                               "3600" if c.OpenNebulaSpawner.provider == "opennebula" else "0"))
if CULL_IDLE:
    culler, culler_role = idle_culler(CULL_IDLE)
    c.JupyterHub.services.append(culler)
    c.JupyterHub.load_roles.append(culler_role)

# ---- the jobs service (problem-oriented jobs; README "Jobs") ---------------------------------
# Hub-managed, behind the hub's login; its port is a free loopback port chosen at start (or
# $NEBULAHUB_JOBS_PORT). Jobs run on the backends below as each user's own Unix account.
from jobforms.service import managed_service as jobs_service  # noqa: E402

jobs, jobs_roles = jobs_service(__file__, int(os.environ.get("NEBULAHUB_JOBS_PORT", "0")))
c.JupyterHub.services.append(jobs)
c.JupyterHub.load_roles.extend(jobs_roles)
c.OpenNebulaSpawner.service_urls = {jobs["name"]: f"{jobs['url']}/services/{jobs['name']}/"}
# the hub's home page links to the Jobs page in each user's server (templates/home.html)
c.JupyterHub.template_paths = [str(ROOT / "templates")]
c.JobsService.db_url = f"sqlite:///{private_file(STATE / 'nebulahub-jobs.sqlite')}"
c.JobsService.backends = {"local": {}}
# c.JobsService.backends = {
#     "local": {},
#     "slurm": {"submit_host": "nebulahub@slurm-login.example.org",
#               "submit_key_file": "/etc/nebulahub/submit_ed25519",
#               "limits": {"cores": 16, "memory_mb": 64000, "walltime_s": 86400}},
#     "htcondor": {"limits": {"cores": 8}},
# }
if c.OpenNebulaSpawner.provider == "local":
    # the demo: jobs run here, as the same account and in the same home as the user's server
    import getpass  # noqa: E402

    c.JobsService.account_template = (c.LocalProvider.system_user_prefix + "{username}"
                                      if AS_ROOT else getpass.getuser())
    c.JobsService.home_template = c.LocalProvider.home_root
    if AS_ROOT:
        c.JobsService.job_env = {"PATH": f"{c.OpenNebulaSpawner.python_env}/bin:/usr/bin:/bin"}

"""The jobs service's settings: every admin knob is a traitlet with its help (``--help-all``)."""
from __future__ import annotations

from traitlets import Dict, Float, Integer, List, Unicode
from traitlets.config import Configurable


class JobsService(Configurable):
    """Problem-oriented jobs: apps from admin-written descriptors, run on batch backends."""

    db_url = Unicode(
        "sqlite:///nebulahub-jobs.sqlite",
        help="""SQLAlchemy URL of the jobs database: SQLite (default, a file next to the
        service) or PostgreSQL (``postgresql+psycopg://user@host/db``). Migrated at start.""",
    ).tag(config=True)

    apps_dir = Unicode(
        "",
        help="""Folder of app descriptors (one folder per app with its app.yaml); empty: the
        apps shipped with NebulaHub.""",
    ).tag(config=True)

    backends = Dict(
        {"local": {}},
        help="""The backends jobs may run on: {name: settings}. A name is ``local``, ``slurm``
        or ``htcondor`` (or any name with ``{"kind": "slurm", ...}``); settings are the
        backend class's traitlets (``limits``, ``command_env``, ``exec_prefix``, ...) plus
        ``submit_host`` (``user@host[:port]``) to run its commands over SSH. Apps choose among
        these; the first is the default.""",
    ).tag(config=True)

    account_template = Unicode(
        "{username}",
        help="""The Unix account a hub user's jobs run as ({username} replaced): the same
        mapping as the servers' (LocalProvider.system_user_prefix + {username} in the demo).""",
    ).tag(config=True)

    home_template = Unicode(
        "/home/{username}",
        help="""A hub user's home on the machines jobs run on; jobs get a folder under
        ``<home>/jobs`` and file parameters are paths inside the home.""",
    ).tag(config=True)

    job_env = Dict(
        {},
        help="""Environment every job gets besides NEBULAHUB_JOB_ID, e.g. {"PATH":
        "/opt/nebulahub/env/bin:/usr/bin:/bin"} so that the apps' ``python3`` has numpy.""",
    ).tag(config=True)

    max_live_jobs = Integer(
        4, help="How many jobs of one user may be pending or running at once."
    ).tag(config=True)

    max_cores = Integer(
        8, help="How many cores one user's live jobs may ask for together."
    ).tag(config=True)

    max_vms = Integer(
        4, help="How many cloud VMs one user's live jobs may hold together (cloud backends)."
    ).tag(config=True)

    poll_interval = Float(
        2.0, help="Seconds between two looks at the batch systems (one query per backend)."
    ).tag(config=True)

    log_tail_bytes = Integer(
        65536, help="Most bytes of a job's output one log request returns."
    ).tag(config=True)

    sftp_key_file = Unicode(
        "", help="""Private key the service logs in to SFTP result destinations with (its public
        half goes into the destination account's authorized_keys).""",
    ).tag(config=True)

    destination_allow = List(
        Unicode(), help="""Networks (CIDR) FTP and SFTP result destinations may be in (empty:
        any address that is not denied). The service's own machine, loopback and link-local
        (cloud metadata) addresses are always refused."""
    ).tag(config=True)

    destination_deny = List(
        Unicode(), help="Networks (CIDR) result destinations may never be in."
    ).tag(config=True)

    host_key_dir = Unicode(
        "~/.nebulahub/jobs-host-keys", help="""Folder (0700) of SFTP destinations' host keys,
        pinned per user at their first delivery to a server."""
    ).tag(config=True)

    allowed_users = List(
        Unicode(), help="Hub users who may use the service (empty: every hub user)."
    ).tag(config=True)

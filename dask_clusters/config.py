"""The admin's settings of users' Dask clusters: one traitlets class, read from one file.

The clusters run inside each user's server (a notebook kernel, the plotting app), so the settings
reach them as a file every server can read: ``/etc/nebulahub/dask.py`` by default, or the file
named by ``$NEBULAHUB_DASK_CONFIG`` (set it per profile with ``c.OpenNebulaSpawner.environment``).
It is a traitlets Python config file::

    c.DaskClusters.backend = "slurm"
    c.DaskClusters.worker_cores = 2
    c.DaskClusters.worker_memory = "4 GiB"
    c.DaskClusters.adapt_maximum = 8
    c.DaskClusters.scheduler_interface = "ib0"

``python -m dask_clusters --help-all`` prints every setting with its help;
``python -m dask_clusters show-config`` the values a server would use. What is not set here comes
from dask's own configuration (``/etc/dask/jobqueue.yaml``, ``~/.config/dask/``) where dask-jobqueue
reads it: e.g. ``jobqueue.slurm.job-extra-directives``. A setting given here always wins.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from traitlets import (Bool, CaselessStrEnum, Dict, Float, Integer, List, TraitError, Unicode,
                       validate)
from traitlets.config import Configurable, Config
from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

from .errors import ConfigProblem

DEFAULT_FILE = "/etc/nebulahub/dask.py"
ENV_FILE = "NEBULAHUB_DASK_CONFIG"
BACKENDS = ("local", "slurm", "htcondor")
WALLTIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):(\d{2}):(\d{2})$")


def parse_memory(text: str, setting: str) -> int:
    """Bytes of ``"4 GiB"``, ``"1500MB"``, ... (dask's units), or :class:`ConfigProblem`."""
    from dask.utils import parse_bytes

    try:
        value = parse_bytes(text)
    except (ValueError, TypeError):
        raise ConfigProblem(f"{setting} = {text!r} is not an amount of memory (write e.g. "
                            "'4 GiB' or '1500 MB').") from None
    if value <= 0:
        raise ConfigProblem(f"{setting} must be more than 0 bytes, not {text!r}.")
    return int(value)


def parse_walltime(text: str, setting: str = "DaskClusters.worker_walltime") -> int:
    """Seconds of ``[D-]HH:MM:SS``, or :class:`ConfigProblem`."""
    m = WALLTIME.match(str(text).strip())
    if not m:
        raise ConfigProblem(f"{setting} = {text!r} is not a wall time; write HH:MM:SS "
                            "(or D-HH:MM:SS), e.g. '01:00:00'.")
    days, h, mi, s = (int(g or 0) for g in m.groups())
    seconds = days * 86400 + h * 3600 + mi * 60 + s
    if seconds < 1:
        raise ConfigProblem(f"{setting} must be at least one second, not {text!r}.")
    return seconds


class DaskClusters(Configurable):
    """How users' Dask clusters are made: where workers run, their size, scaling, limits."""

    backend = CaselessStrEnum(BACKENDS, default_value="local", help="""Where workers run:
        'local' (processes inside the user's server, the default), 'slurm' (one SLURM job per
        worker, dask-jobqueue's SLURMCluster) or 'htcondor' (one HTCondor job per worker,
        HTCondorCluster). The batch commands (sbatch/squeue/scancel, condor_submit/condor_q/
        condor_rm) must work in the user's server, as the user.""").tag(config=True)

    # ---- one worker ---------------------------------------------------------------------------
    worker_cores = Integer(1, min=1, help="Cores of one worker (one batch job each).").tag(
        config=True)
    worker_memory = Unicode("2 GiB", help="""Memory of one worker, e.g. '4 GiB': the job asks
        for it and the worker keeps within it (dask spills, pauses, then restarts).""").tag(
        config=True)
    worker_walltime = Unicode("01:00:00", help="""Wall time of one worker job, HH:MM:SS (SLURM
        --time; HTCondor allowed_execute_duration). Workers retire gracefully
        worker_lifetime_margin seconds before it, handing their data to the others, and are
        replaced.""").tag(config=True)
    worker_lifetime_margin = Float(120.0, min=0, help="""Seconds before the wall time at which a
        worker retires by itself (dask's --lifetime), so the batch system never kills it with
        data on it. 0: no early retirement.""").tag(config=True)
    worker_env = Dict(value_trait=Unicode(), help="""Environment variables of every worker, e.g.
        {'OMP_NUM_THREADS': '1'} (exported by the job before the worker starts; never put
        secrets here: job scripts are readable by the batch system's admins).""").tag(
        config=True)
    worker_prologue = List(Unicode(), help="""Shell lines run in the job before the worker
        starts, e.g. ['module load python/3.11']. Admin-written: not checked.""").tag(
        config=True)
    worker_python = Unicode("", help="""Python the workers run (it needs dask, distributed and
        NebulaHub's plotting code: the server environment has them). Empty: the Python of the
        user's server, which must then be on a filesystem the worker machines share.""").tag(
        config=True)
    worker_death_timeout = Float(60.0, min=1, help="""Seconds a worker waits for its scheduler
        before it exits: a worker whose user's server is gone ends its job by itself.""").tag(
        config=True)
    worker_connect_timeout = Float(120.0, min=1, help="""Seconds a worker job may run without
        its worker reaching the scheduler before the user is told that the worker machines
        cannot reach the scheduler's address.""").tag(config=True)
    worker_local_directory = Unicode("", help="""Folder on the worker machine for spilled data
        (e.g. '$TMPDIR' or '/scratch'). Empty: dask's default.""").tag(config=True)
    log_directory = Unicode("~/.nebulahub/dask/logs", help="""Folder (on a filesystem the
        worker machines share) for the worker jobs' output and error files; the user is shown
        the last line of a failed worker's error file.""").tag(config=True)

    # ---- backends -----------------------------------------------------------------------------
    slurm_partition = Unicode("", help="SLURM partition of the worker jobs (empty: the "
                              "cluster's default).").tag(config=True)
    slurm_account = Unicode("", help="SLURM account (-A) of the worker jobs (empty: the "
                            "user's default).").tag(config=True)
    slurm_directives = List(Unicode(), help="""More sbatch options of every worker job, e.g.
        ['--qos=dask', '--constraint=avx2'] (written as #SBATCH lines).""").tag(config=True)
    htcondor_disk = Unicode("1 GiB", help="Disk of one HTCondor worker job (RequestDisk).").tag(
        config=True)
    htcondor_submit = Dict(value_trait=Unicode(), help="""More submit commands of every
        HTCondor worker job, e.g. {'accounting_group': 'physics', '+WantDask': 'true'}.""").tag(
        config=True)
    batch_env = List(Unicode(), default_value=["SLURM_CONF", "CONDOR_CONFIG"], help="""Names of
        environment variables of the user's server passed to the batch commands the status
        watch runs (squeue, condor_q, scancel, condor_rm); PATH always is.""").tag(config=True)

    # ---- scaling ------------------------------------------------------------------------------
    adapt_minimum = Integer(0, min=0, help="Workers an adaptive cluster keeps even when idle.").tag(
        config=True)
    adapt_maximum = Integer(4, min=1, help="""Workers an adaptive cluster may grow to (also
        capped by the user's limits).""").tag(config=True)
    adapt_interval = Float(2.0, min=0.1, help="Seconds between two adaptive decisions.").tag(
        config=True)
    adapt_wait_count = Integer(5, min=1, help="""Consecutive adaptive decisions that must agree
        before a worker is retired (dask's wait_count).""").tag(config=True)
    adapt_cooldown = Float(60.0, min=0, help="""Seconds after a scale-up during which no worker
        is retired, and a queued job younger than this is never cancelled: this stops the
        submit/cancel loops adaptive scaling falls into while jobs wait in the queue.""").tag(
        config=True)
    start_timeout = Float(180.0, min=1, help="""Seconds the plotting app waits for its first
        worker before it draws in the user's server instead (and says why).""").tag(config=True)
    max_failed_jobs = Integer(3, min=1, help="""Worker jobs in a row that may fail (held, killed,
        never reached the scheduler) before the cluster stops replacing them and reports
        itself unavailable.""").tag(config=True)
    poll_interval = Float(10.0, min=0.5, help="""Seconds between two looks at the batch system
        (one squeue or condor_q for all of a cluster's jobs) for jobs that died, were held or
        hit their wall time.""").tag(config=True)
    idle_timeout = Float(1800.0, min=0, help="""Seconds without any computation after which a
        cluster closes and its jobs are removed (0: never). A later request starts it
        again.""").tag(config=True)

    # ---- where the scheduler listens ----------------------------------------------------------
    scheduler_interface = Unicode("", help="""Network interface the scheduler listens on and
        workers connect to (e.g. 'ib0', 'eth1'); checked at start: it must exist on the user's
        server with an IPv4 address. Empty: scheduler_host, else the address of the default
        route.""").tag(config=True)
    scheduler_host = Unicode("", help="""Address (of the user's server) the scheduler listens
        on, when no interface is given; checked at start by binding to it.""").tag(config=True)
    scheduler_port = Integer(0, min=0, max=65535, help="""Port the scheduler listens on (0: a
        free one; a fixed port must be free, which is checked at start).""").tag(config=True)
    scheduler_contact_address = Unicode("", help="""Address workers are told to connect to, as
        'host:port', when it differs from where the scheduler listens (NAT, a port forwarded by
        the site). Empty: where it listens.""").tag(config=True)
    dashboard_port = Integer(0, min=0, max=65535, help="""Port of the Dask dashboard, on
        127.0.0.1 only (0: a free one). Users open it through their server:
        <server>/proxy/<port>/status.""").tag(config=True)
    tls = Bool(True, help="""Scheduler, workers and the user's client talk TLS with a
        certificate made for each cluster, readable only by the user (files in
        ~/.nebulahub/dask/tls, on the shared filesystem): nobody else who can reach the
        scheduler's port can run code as the user. Turn off only on a private network.""").tag(
        config=True)

    # ---- per-user limits ----------------------------------------------------------------------
    user_max_workers = Integer(4, min=1, help="""Workers one user may have at once, over all
        their clusters (notebooks and plotting app alike).""").tag(config=True)
    user_max_cores = Integer(8, min=1, help="Cores one user's workers may hold at once.").tag(
        config=True)
    user_max_memory = Unicode("16 GiB", help="Memory one user's workers may hold at once.").tag(
        config=True)

    @validate("worker_memory", "user_max_memory", "htcondor_disk")
    def _memory(self, proposal):
        parse_memory(proposal["value"], f"DaskClusters.{proposal['trait'].name}")
        return proposal["value"]

    @validate("worker_walltime")
    def _walltime(self, proposal):
        parse_walltime(proposal["value"])
        return proposal["value"]

    # ---- derived values -----------------------------------------------------------------------
    @property
    def worker_memory_bytes(self) -> int:
        return parse_memory(self.worker_memory, "DaskClusters.worker_memory")

    @property
    def walltime_seconds(self) -> int:
        return parse_walltime(self.worker_walltime)

    @property
    def python(self) -> str:
        return self.worker_python or sys.executable

    def check(self) -> None:
        """:class:`ConfigProblem` for settings that contradict each other."""
        if self.adapt_minimum > self.adapt_maximum:
            raise ConfigProblem(f"DaskClusters.adapt_minimum ({self.adapt_minimum}) is more "
                                f"than adapt_maximum ({self.adapt_maximum}).")
        if self.worker_cores > self.user_max_cores:
            raise ConfigProblem(f"One worker has {self.worker_cores} cores "
                                "(DaskClusters.worker_cores), more than a user may hold "
                                f"(user_max_cores = {self.user_max_cores}).")
        if self.worker_memory_bytes > parse_memory(self.user_max_memory, "user_max_memory"):
            raise ConfigProblem(f"One worker has {self.worker_memory} of memory "
                                "(DaskClusters.worker_memory), more than a user may hold "
                                f"(user_max_memory = {self.user_max_memory}).")
        if self.worker_lifetime_margin >= self.walltime_seconds:
            raise ConfigProblem(f"DaskClusters.worker_lifetime_margin "
                                f"({self.worker_lifetime_margin:g} s) must be shorter than the "
                                f"wall time ({self.worker_walltime}).")
        for name in self.worker_env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigProblem(f"DaskClusters.worker_env: {name!r} is not an environment "
                                    "variable name.")


def config_file() -> str | None:
    """The admin's file: ``$NEBULAHUB_DASK_CONFIG``, else /etc/nebulahub/dask.py if it exists."""
    named = os.environ.get(ENV_FILE, "").strip()
    if named:
        return named
    return DEFAULT_FILE if os.path.exists(DEFAULT_FILE) else None


def load_config(path: str | None = None, **overrides) -> DaskClusters:
    """The settings from ``path`` (default: :func:`config_file`), then ``overrides``
    (``backend="local"`` ...); :class:`ConfigProblem` with a sentence for a missing or broken
    file or a bad value."""
    path = path if path is not None else config_file()
    config = Config()
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigProblem(f"The Dask settings file {p} (${ENV_FILE}) does not exist; ask "
                                "your admin.")
        try:
            config = PyFileConfigLoader(p.name, path=str(p.parent)).load_config()
        except ConfigFileNotFound:
            raise ConfigProblem(f"The Dask settings file {p} cannot be read.") from None
        except Exception as e:  # a syntax error in the admin's file: say where
            raise ConfigProblem(f"The Dask settings file {p} is broken: {e}") from None
    try:
        settings = DaskClusters(config=config)
        for key, value in overrides.items():
            if not settings.has_trait(key):
                raise ConfigProblem(f"There is no Dask setting {key!r}.")
            setattr(settings, key, value)
    except TraitError as e:
        raise ConfigProblem(f"A Dask setting is wrong: {e}") from None
    settings.check()
    return settings

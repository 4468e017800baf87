"""Suite-wide rules.

Under CI (``NEBULAHUB_REQUIRE_INTEGRATION=1``, exported by ``.ci/run``) a skipped test is a
failed test: integration tests that need root, namespaces, sshd or Chromium must run there.
"""
import os
import signal
import threading
import types

import pytest

REQUIRE_ALL = os.environ.get("NEBULAHUB_REQUIRE_INTEGRATION") == "1"


def _stopped(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}: tearing down what the tests started")


def pytest_configure(config):
    """A stopped run still cleans up: SIGTERM (what ``kill``, a CI timeout or a stopped job
    sends) becomes KeyboardInterrupt, which pytest answers by tearing down every fixture set up so
    far (hubs, proxies, SLURM, PostgreSQL, namespaces, accounts) instead of dying with them
    running (``tests/test_interrupted_run.py``)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stopped)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must run every test: {reason}"


def require_root():
    """Skip (locally) or fail (CI) a test that needs root for namespaces and sshd."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and sshd")


@pytest.fixture(scope="session")
def nethosts():
    """A private test network of namespace hosts with real sshd (see tests/nethosts/)."""
    require_root()
    from tests.nethosts import running_network

    # another test run on the same machine (a developer's, next to CI's) takes its own
    # network: a second "nh" would clean up the first one's hosts
    with running_network(prefix=os.environ.get("NEBULAHUB_TEST_NET_PREFIX", "nh"),
                         subnet=os.environ.get("NEBULAHUB_TEST_NET", "10.213.0.0/24")) as net:
        yield net


@pytest.fixture(scope="session")
def vm_python_env():
    """A prepared jupyterhub + jupyterlab environment, as a VM image would carry (built once)."""
    require_root()
    from tests.vmimage import prepared_env

    return prepared_env()


@pytest.fixture(scope="session")
def shared_tmp():
    """A folder other Unix accounts can traverse (pytest's tmp_path is root-only): the homes of
    the test hubs' users live here. Removed at the end of the session."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="nebulahub-test-", dir="/var/tmp")
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def local_accounts(shared_tmp):
    """How test hubs with the local provider run users' servers: as root, each user as an
    account of its own with a per-run prefix (removed at the end, only those created); the
    servers' Python environment every account can read. Yields config lines for a hub."""
    import secrets

    from machines.localusers import remove_created

    registry = os.path.join(shared_tmp, "created-accounts")
    if os.geteuid() == 0:
        from machines.serverenv import ensure_server_env

        env = ensure_server_env()
        prefix = f"nht{secrets.token_hex(2)}-"
    else:
        import sys

        env, prefix = sys.prefix, ""
    from tests.hubproc import local_accounts_config

    lines = local_accounts_config(env, prefix, registry)
    yield types.SimpleNamespace(config=lines, prefix=prefix, python_env=env, registry=registry)
    remove_created(registry)


@pytest.fixture(scope="session")
def test_account(local_accounts):
    """An unprivileged account for tests that must not run as root (created once per session)."""
    from machines.localusers import ensure_account, unix_name

    if os.geteuid() != 0:
        import pwd

        from machines.localusers import LocalAccount
        pw = pwd.getpwuid(os.geteuid())
        return LocalAccount(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
    return ensure_account(unix_name(local_accounts.prefix, "plain"), "/nonexistent",
                          local_accounts.registry)


@pytest.fixture(scope="session")
def slurm():
    """One real single-node SLURM for the whole run (see tests/slurm.py)."""
    require_root()
    import shutil

    if not shutil.which("slurmctld"):
        pytest.skip("slurm-wlm is not installed (make test installs it as root)")
    from tests.slurm import SlurmCluster

    cluster = SlurmCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL 15 for the whole run (see tests/postgres.py)."""
    require_root()
    from tests.postgres import BIN, PostgresServer

    if not (BIN / "initdb").exists():
        pytest.skip("postgresql is not installed (make test installs it as root)")
    server = PostgresServer().start()
    yield server
    server.stop()

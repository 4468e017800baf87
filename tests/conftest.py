"""Suite-wide rules.

Under CI (``NEBULAHUB_REQUIRE_INTEGRATION=1``, exported by ``.ci/run``) a skipped test is a
failed test: integration tests that need root, namespaces, sshd or Chromium must run there.
"""
import os

import pytest

REQUIRE_ALL = os.environ.get("NEBULAHUB_REQUIRE_INTEGRATION") == "1"


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

    with running_network(prefix="nh", subnet="10.213.0.0/24") as net:
        yield net


@pytest.fixture(scope="session")
def vm_python_env():
    """A prepared jupyterhub + jupyterlab environment, as a VM image would carry (built once)."""
    require_root()
    from tests.vmimage import prepared_env

    return prepared_env()

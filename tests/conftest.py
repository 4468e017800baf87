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

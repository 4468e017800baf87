"""A test run stopped with SIGTERM (a CI timeout, ``kill``) still tears down what it started."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_a_run_stopped_with_sigterm_tears_its_fixtures_down(tmp_path):
    (tmp_path / "conftest.py").write_text((PROJECT / "tests" / "conftest.py").read_text())  # the suite's rules
    (tmp_path / "test_slow.py").write_text(textwrap.dedent(f"""
        import pathlib, time, pytest

        @pytest.fixture(scope="session")
        def resource():
            pathlib.Path({str(tmp_path)!r}, "started").write_text("")
            yield
            pathlib.Path({str(tmp_path)!r}, "torn-down").write_text("")

        def test_waits(resource):
            time.sleep(120)
    """))
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(tmp_path / "test_slow.py")],
                           cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=str(PROJECT)),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
            time.sleep(0.1)
        run.send_signal(signal.SIGTERM)
        out = run.communicate(timeout=60)[0]
    finally:
        if run.poll() is None:
            run.kill()
    assert (tmp_path / "torn-down").exists(), out
    assert run.returncode != 0 and "stopped by signal" in out, out

"""The CI rule itself: a skip must turn into a failure when NEBULAHUB_REQUIRE_INTEGRATION=1."""
import subprocess
import sys
import textwrap


def test_skip_fails_the_run_under_ci(tmp_path):
    (tmp_path / "conftest.py").write_text(
        open(__file__.replace("test_ci_rule.py", "conftest.py")).read()
    )
    (tmp_path / "test_x.py").write_text(
        textwrap.dedent(
            """
            import pytest
            def test_needs_sshd():
                pytest.skip("no sshd")
            """
        )
    )
    env = {"NEBULAHUB_REQUIRE_INTEGRATION": "1", "PATH": "/usr/bin:/bin"}
    ci = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert ci.returncode == 1, ci.stdout
    assert "skipped under CI" in ci.stdout
    env.pop("NEBULAHUB_REQUIRE_INTEGRATION")
    local = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert local.returncode == 0, local.stdout
    assert "1 skipped" in local.stdout

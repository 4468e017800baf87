"""The local backend runs real processes as a non-root account: a job completes with its output,
fails with its exit code and error file, is cancelled (its whole session ends), is stopped at
its wall time, and is noticed as vanished when something outside kills it."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time

import pytest

from jobforms.backends import BatchState, CommandFailed, LocalBackend
from machines.hosts import LocalHost
from tests.test_backend_support import CountingHost, account_folder, make_job, wait_for


@pytest.fixture
def workdir(shared_tmp, test_account):
    path = account_folder(shared_tmp, test_account.uid, test_account.gid, "local")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def backend(test_account):
    backend = LocalBackend(host=CountingHost(test_account.name, "/", "/usr/bin/python3"),
                           kill_grace=1)
    backend.submitted = []
    yield backend
    for folder in backend.submitted:   # nothing outlives the test
        await backend.cancel(folder)


async def submit(backend, job) -> str:
    folder = await backend.submit(job)
    backend.submitted.append(folder)
    return folder


def session_alive(pid: str) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=,stat=", "--sid", pid], capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if not line.split()[1].startswith("Z")]


async def test_a_job_runs_as_the_users_account_and_completes_with_its_output(
        backend, workdir, test_account):
    job = make_job(workdir, test_account.name,
                   ["sh", "-c", 'id -u; pwd; echo "$NEBULAHUB_GREETING"; echo "$1"', "sh",
                    "two words; $(not run)"])
    folder = await submit(backend, job)
    assert folder == f"{workdir}/.nebulahub/j1"
    status = await wait_for(backend, folder, BatchState.COMPLETED)
    assert status.exit_code == 0 and status.reason == "The program ended with exit code 0."
    with open(job.stdout) as out:
        assert out.read().splitlines() == [str(test_account.uid), workdir, "hello 'world'",
                                           "two words; $(not run)"]
    assert os.stat(job.stdout).st_uid == test_account.uid


async def test_a_failing_program_is_failed_with_its_exit_code_and_error_file(
        backend, workdir, test_account):
    job = make_job(workdir, test_account.name, ["sh", "-c", "echo oops >&2; exit 3"])
    folder = await submit(backend, job)
    status = await wait_for(backend, folder, BatchState.FAILED)
    assert status.exit_code == 3 and "exited with code 3" in status.reason
    with open(job.stderr) as err:
        assert err.read() == "oops\n"


async def test_a_missing_program_fails_with_the_shells_word_in_the_error_file(
        backend, workdir, test_account):
    job = make_job(workdir, test_account.name, ["no-such-program-here"])
    status = await wait_for(backend, await submit(backend, job), BatchState.FAILED)
    assert status.exit_code in (126, 127)   # 126: a folder on PATH is closed to the account
    with open(job.stderr) as err:
        assert "no-such-program-here" in err.read()


async def test_cancel_while_running_ends_the_whole_session_and_reads_cancelled(
        backend, workdir, test_account):
    job = make_job(workdir, test_account.name, ["sh", "-c", "sleep 300 & sleep 300; wait"])
    folder = await submit(backend, job)
    await wait_for(backend, folder, BatchState.RUNNING)
    with open(f"{folder}/pid") as f:
        pid = f.read().strip()
    assert session_alive(pid)
    await backend.cancel(folder)
    status = await wait_for(backend, folder, BatchState.CANCELLED)
    assert status.reason == "The job was cancelled."
    assert session_alive(pid) == []
    await backend.cancel(folder)   # again: nothing to do, no error


async def test_a_job_ignoring_sigterm_is_killed_after_the_grace(backend, workdir, test_account):
    job = make_job(workdir, test_account.name, ["sh", "-c", "trap '' TERM; sleep 300"])
    folder = await submit(backend, job)
    await wait_for(backend, folder, BatchState.RUNNING)
    started = time.monotonic()
    await backend.cancel(folder)
    assert (await wait_for(backend, folder, BatchState.CANCELLED, timeout=10))
    assert time.monotonic() - started < 8
    with open(f"{folder}/pid") as f:
        assert session_alive(f.read().strip()) == []


async def test_a_job_is_stopped_at_its_wall_time(backend, workdir, test_account):
    job = make_job(workdir, test_account.name, ["sleep", "300"], walltime_s=2)
    folder = await submit(backend, job)
    status = await wait_for(backend, folder, BatchState.FAILED, timeout=20)
    assert "wall time of 2 s" in status.reason
    with open(f"{folder}/pid") as f:
        pid = f.read().strip()
    deadline = time.monotonic() + 5   # the watchdog itself leaves after its grace
    while session_alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert session_alive(pid) == []


async def test_a_job_killed_outside_nebulahub_is_noticed_as_vanished(
        backend, workdir, test_account):
    folder = await submit(backend, make_job(workdir, test_account.name, ["sleep", "300"]))
    await wait_for(backend, folder, BatchState.RUNNING)
    with open(f"{folder}/pid") as f:
        pid = int(f.read())
    os.killpg(pid, signal.SIGKILL)
    status = await wait_for(backend, folder, BatchState.VANISHED)
    assert "without recording an exit code" in status.reason


async def test_one_poll_reads_many_jobs_with_a_fixed_number_of_commands(
        backend, workdir, test_account):
    folders = [await submit(backend, make_job(workdir, test_account.name, ["sleep", "300"],
                                              name=f"many{i}")) for i in range(5)]
    backend.host.commands.clear()
    statuses = await backend.status(folders + folders[:1])
    assert set(statuses) == set(folders)
    assert {s.state for s in statuses.values()} <= {BatchState.RUNNING}
    assert len(backend.host.commands) <= 3     # grep of the control files, ps (and a re-read)


async def test_a_job_id_is_started_once(backend, workdir, test_account):
    job = make_job(workdir, test_account.name, ["true"])
    await submit(backend, job)
    with pytest.raises(CommandFailed) as failed:
        await backend.submit(job)
    assert "started already" in str(failed.value)


async def test_the_local_backend_offers_one_node_with_this_machines_cores(backend):
    offers = await backend.offers()
    assert offers.nodes == 1 and offers.cores == os.cpu_count()
    assert offers.memory_mb > 100 and offers.walltime_s is None
    backend.limits = {"cores": 1, "walltime_s": 600}
    assert (await backend.offers()).as_dict() == {"nodes": 1, "cores": 1,
                                                  "memory_mb": offers.memory_mb,
                                                  "walltime_s": 600}


async def test_a_root_service_runs_the_job_as_the_users_account_through_runuser(
        workdir, test_account):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch accounts")
    backend = LocalBackend(host=LocalHost("root", "/root", "/usr/bin/python3", allow_root=True),
                           exec_prefix=["runuser", "-u", "{account}", "--"], kill_grace=1)
    job = make_job(workdir, test_account.name, ["sh", "-c", "id -u; exec sleep 300"])
    folder = await backend.submit(job)
    try:
        await wait_for(backend, folder, BatchState.RUNNING)
        deadline = time.monotonic() + 10
        while not os.path.getsize(job.stdout) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        with open(job.stdout) as out:
            assert out.read() == f"{test_account.uid}\n"
        assert os.stat(f"{folder}/pid").st_uid == test_account.uid
    finally:
        await backend.cancel(folder, test_account.name)
    await wait_for(backend, folder, BatchState.CANCELLED)


async def test_a_root_service_never_reads_a_control_file_the_job_linked_elsewhere(
        workdir, test_account, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch accounts")
    secret = tmp_path / "secret"
    secret.write_text("the-root-only-secret\n")
    os.chmod(secret, 0o600)
    backend = LocalBackend(host=LocalHost("root", "/root", "/usr/bin/python3", allow_root=True),
                           exec_prefix=["runuser", "-u", "{account}", "--"], kill_grace=1)
    # the job itself replaces its launcher log with a link to a file only root may read
    job = make_job(workdir, test_account.name,
                   ["sh", "-c", 'ln -sf "$1" "$2/launcher.log"; exit 3', "sh", str(secret),
                    f"{workdir}/.nebulahub/j1"])
    folder = await backend.submit(job)
    status = await wait_for(backend, folder, BatchState.FAILED)
    assert os.path.islink(f"{folder}/launcher.log")
    assert status.exit_code == 3 and "the-root-only-secret" not in status.reason


async def test_a_started_job_is_found_by_its_control_folder(backend, workdir, test_account):
    """What a restarted service asks before submitting again."""
    job = make_job(workdir, test_account.name, ["true"], name="found")
    assert await backend.find(job) is None
    folder = await submit(backend, job)
    assert await backend.find(job) == folder

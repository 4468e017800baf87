"""The HTCondor backend's real code against the fake condor_* commands (tests/condor/README),
as a non-root account: every JobStatus is mapped, a poll is one condor_q, the arguments reach
the program exactly, and the fake keeps dask-jobqueue's condor_submit contract."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jobforms.backends import BatchState, HTCondorBackend, JobRefused
from jobforms.backends.htcondor import status_of
from machines.hosts import LocalHost
from tests.test_backend_support import account_folder, make_job, wait_for

CONDOR_BIN = Path(__file__).parent / "condor" / "bin"
PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


class Pool:
    """One fake pool: its state folder, its knobs, and the commands it was asked."""

    def __init__(self, state: Path, python_env: str):
        self.state = state
        # the fake's python3 must have htcondor2 and be one the account can run: the users'
        # server environment (this venv's interpreter lives under /root)
        path = f"{CONDOR_BIN}:{python_env}/bin:/usr/local/bin:/usr/bin:/bin"
        self.env = {"PATH": path, "FAKE_CONDOR_STATE": str(state)}

    def next_job(self, **knob) -> None:
        (self.state / "next_job.json").write_text(json.dumps(knob))

    def commands(self) -> list[list[str]]:
        log = self.state / "commands.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env={**os.environ, **self.env}, capture_output=True,
                              text=True, timeout=60)

    def in_queue(self, job_id: str) -> bool:
        return bool(self.run("condor_q", "-json", job_id).stdout.strip())

    def leftovers(self) -> list[int]:
        pids = []
        for ad in self.state.glob("queue/*.json"):
            data = json.loads(ad.read_text())
            pids += [data[k] for k in ("_job", "_shepherd") if k in data]
        return pids


@pytest.fixture
def pool(shared_tmp, test_account, local_accounts):
    state = Path(shared_tmp) / f"condor-{uuid.uuid4().hex[:8]}"
    state.mkdir(mode=0o700)
    os.chown(state, test_account.uid, test_account.gid)
    pool = Pool(state, local_accounts.python_env)
    yield pool
    for pid in pool.leftovers():   # a failed test must not leave its jobs running
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def backend(pool, test_account):
    return HTCondorBackend(host=LocalHost(test_account.name, "/", sys.executable),
                           command_env=pool.env)


@pytest.fixture
def workdir(pool, test_account):
    return account_folder(str(pool.state), test_account.uid, test_account.gid)


async def test_a_job_runs_with_its_arguments_environment_and_folder_and_completes(
        backend, pool, workdir, test_account):
    job = make_job(workdir, test_account.name,
                   ["/bin/sh", "-c", 'echo "$1"; echo "$NEBULAHUB_GREETING"; pwd; id -u', "sh",
                    "two words 'single' \"double\" #SBATCH"], name="c1")
    job_id = await backend.submit(job)
    assert job_id == "1.0"
    status = await wait_for(backend, job_id, BatchState.COMPLETED)
    assert (status.exit_code, status.native) == (0, "JobStatus=4")
    assert Path(job.stdout).read_text().splitlines() == [
        "two words 'single' \"double\" #SBATCH", "hello 'world'", workdir,
        str(test_account.uid)]
    events = Path(workdir, ".nebulahub-c1.condor.log").read_text()
    assert "Job submitted" in events and "Normal termination (return value 0)" in events


async def test_arguments_that_look_like_directives_reach_the_program_exactly(
        backend, workdir, test_account):
    nasty = ["", " ", "a b", "'", '"', "''", "+JobStatus = 4", "queue", "#SBATCH --time=1",
             "$HOME", "$$", "`id`", "\\", "a\\", "ü😀", "\t", "x=y", "--", "%j"]
    job = make_job(workdir, test_account.name, ["python3", "-c", PRINT_ARGV, *nasty])
    job_id = await backend.submit(job)
    await wait_for(backend, job_id, BatchState.COMPLETED)
    assert json.loads(Path(job.stdout).read_text()) == nasty


async def test_a_failing_program_is_failed_with_its_exit_code_and_error_file(
        backend, workdir, test_account):
    job = make_job(workdir, test_account.name, ["/bin/sh", "-c", "echo oops >&2; exit 3"])
    status = await wait_for(backend, await backend.submit(job), BatchState.FAILED)
    assert status.exit_code == 3 and status.reason == "The program exited with code 3."
    assert Path(job.stderr).read_text() == "oops\n"


async def test_a_job_waits_idle_as_queued_then_runs(backend, pool, workdir, test_account):
    pool.next_job(idle_seconds=3)
    job_id = await backend.submit(make_job(workdir, test_account.name, ["/bin/sleep", "2"]))
    status = (await backend.status([job_id]))[job_id]
    assert (status.state, status.native) == (BatchState.QUEUED, "JobStatus=1")
    await wait_for(backend, job_id, BatchState.RUNNING, timeout=10)
    await wait_for(backend, job_id, BatchState.COMPLETED, timeout=10)


async def test_a_held_job_says_why_and_can_be_cancelled(backend, pool, workdir, test_account):
    pool.next_job(hold="the admin holds new jobs for maintenance")
    job_id = await backend.submit(make_job(workdir, test_account.name, ["/bin/true"]))
    status = (await backend.status([job_id]))[job_id]
    assert status.state is BatchState.HELD
    assert status.reason == "held: the admin holds new jobs for maintenance"
    await backend.cancel(job_id)
    status = await wait_for(backend, job_id, BatchState.CANCELLED)
    assert "via condor_rm" in status.reason and not pool.in_queue(job_id)


async def test_a_suspended_job_counts_as_running_with_a_note(backend, pool, workdir, test_account):
    pool.next_job(suspend=True)
    job_id = await backend.submit(make_job(workdir, test_account.name, ["/bin/sleep", "300"]))
    status = await wait_for(backend, job_id, BatchState.RUNNING)
    assert status.native == "JobStatus=7" and "Suspended" in status.reason
    await backend.cancel(job_id)
    await wait_for(backend, job_id, BatchState.CANCELLED)
    assert pool.leftovers() == []


async def test_cancel_while_running_removes_the_job_and_its_process(
        backend, pool, workdir, test_account):
    job_id = await backend.submit(make_job(workdir, test_account.name, ["/bin/sleep", "300"]))
    await wait_for(backend, job_id, BatchState.RUNNING)
    program = json.loads((pool.state / "queue" / "1.json").read_text())["_job"]
    await backend.cancel(job_id)
    status = await wait_for(backend, job_id, BatchState.CANCELLED)
    assert status.native == "JobStatus=3"
    assert not pool.in_queue(job_id)
    with pytest.raises(ProcessLookupError):
        os.killpg(program, 0)
    await backend.cancel(job_id)   # already gone: not an error


async def test_an_external_condor_rm_is_noticed_as_cancelled_with_the_reason(
        backend, pool, workdir, test_account):
    job_id = await backend.submit(make_job(workdir, test_account.name, ["/bin/sleep", "300"]))
    await wait_for(backend, job_id, BatchState.RUNNING)
    assert pool.run("condor_rm", job_id).returncode == 0
    status = await wait_for(backend, job_id, BatchState.CANCELLED)
    assert status.reason == "Removed from HTCondor (via condor_rm (by user root))."


async def test_a_job_over_its_wall_time_is_held_by_htcondor_and_says_so(
        backend, pool, workdir, test_account):
    job_id = await backend.submit(make_job(workdir, test_account.name, ["/bin/sleep", "300"],
                                           walltime_s=2))
    status = await wait_for(backend, job_id, BatchState.HELD, timeout=20)
    assert status.reason == "held: The job exceeded allowed execute duration of 00:00:02"
    await backend.cancel(job_id)
    await wait_for(backend, job_id, BatchState.CANCELLED)


async def test_a_job_without_any_record_is_vanished(backend, pool, workdir, test_account):
    job_id = await backend.submit(make_job(workdir, test_account.name, ["/bin/true"]))
    await wait_for(backend, job_id, BatchState.COMPLETED)
    (pool.state / "history" / "1.json").unlink()   # the schedd's history rotated it away
    status = (await backend.status([job_id]))[job_id]
    assert status.state is BatchState.VANISHED and "no record" in status.reason


async def test_one_poll_is_one_condor_q_whatever_the_number_of_jobs(
        backend, pool, workdir, test_account):
    ids = [await backend.submit(make_job(workdir, test_account.name, ["/bin/sleep", "300"],
                                         name=f"m{i}")) for i in range(4)]
    ended = await backend.submit(make_job(workdir, test_account.name, ["/bin/true"], name="e"))
    await wait_for(backend, ended, BatchState.COMPLETED)
    before = len(pool.commands())
    statuses = await backend.status(ids + [ended])
    asked = [c[0] for c in pool.commands()[before:]]
    assert asked == ["q", "history"]      # the ended one is looked up in the history, once
    assert [s.state for s in statuses.values()].count(BatchState.COMPLETED) == 1
    for job_id in ids:
        await backend.cancel(job_id)


async def test_a_program_that_cannot_be_executed_is_held_with_htcondors_reason(
        backend, workdir, test_account):
    job_id = await backend.submit(make_job(workdir, test_account.name, ["/no/such/program"]))
    status = await wait_for(backend, job_id, BatchState.HELD)
    assert "Failed to execute '/no/such/program'" in status.reason
    await backend.cancel(job_id)


async def test_more_than_one_node_is_refused_before_anything_is_submitted(
        backend, pool, workdir, test_account):
    with pytest.raises(JobRefused) as refused:
        await backend.submit(make_job(workdir, test_account.name, ["/bin/true"], nodes=2))
    assert refused.value.field == "resources.nodes"
    assert pool.commands() == []
    backend.limits = {"cores": 4, "memory_mb": 8000}
    assert (await backend.offers()).as_dict() == {"nodes": 1, "cores": 4, "memory_mb": 8000,
                                                  "walltime_s": None}


@pytest.mark.parametrize("ad, state, words", [
    ({"JobStatus": 1}, BatchState.QUEUED, "Idle"),
    ({"JobStatus": 2}, BatchState.RUNNING, "Running."),
    ({"JobStatus": 3, "RemoveReason": "via condor_rm (by user a)"}, BatchState.CANCELLED,
     "via condor_rm"),
    ({"JobStatus": 4, "ExitCode": 0, "ExitBySignal": False}, BatchState.COMPLETED, "code 0"),
    ({"JobStatus": 4, "ExitCode": 2, "ExitBySignal": False}, BatchState.FAILED, "code 2"),
    ({"JobStatus": 4, "ExitBySignal": True, "ExitSignal": 9}, BatchState.FAILED, "signal 9"),
    ({"JobStatus": 5, "HoldReason": "disk full"}, BatchState.HELD, "held: disk full"),
    ({"JobStatus": 6}, BatchState.RUNNING, "transferring"),
    ({"JobStatus": 7}, BatchState.RUNNING, "Suspended"),
    ({"JobStatus": 9}, BatchState.QUEUED, "JobStatus 9"),
])
def test_every_job_status_of_htcondor_is_mapped(ad, state, words):
    status = status_of(ad)
    assert status.state is state and words in status.reason


async def test_the_fake_keeps_dask_jobqueues_condor_submit_contract(pool, monkeypatch, tmp_path):
    """HTCondorCluster runs ``condor_submit [extra] <file>`` and ``condor_rm <id>`` with its
    own code: the fake must answer it the way HTCondor does (the Dask issue reuses it)."""
    from dask_jobqueue.htcondor import HTCondorJob

    monkeypatch.setenv("PATH", pool.env["PATH"])
    monkeypatch.setenv("FAKE_CONDOR_STATE", str(pool.state))
    monkeypatch.chdir(tmp_path)
    job = HTCondorJob(scheduler="tcp://127.0.0.1:9", name="w", cores=1, memory="1GB",
                      disk="1GB", submit_command_extra=["-batch-name", "dask-test"])
    with job.job_file() as path:
        out = await job._submit_job(path)
    job_id = job._job_id_from_submit_output(out)
    assert job_id == "1.0"
    ad = json.loads((pool.state / "queue" / "1.json").read_text())
    assert ad["Cmd"] == "/bin/sh" and ad["JobBatchName"] == "dask-test"
    assert ad["RequestCpus"] == 1 and ad["DaskWorkerCores"] == 1
    assert ad["_argv"][0] == "-c" and "distributed.cli.dask_worker" in ad["_argv"][1]
    await HTCondorJob._close_job(job_id, job.cancel_command)
    assert not pool.in_queue(job_id)
    assert pool.commands()[0][:3] == ["submit", "-batch-name", "dask-test"]


async def test_a_submitted_job_is_found_by_its_id_queued_and_ended(backend, pool, workdir, test_account):
    """What a restarted service asks before submitting again (condor_q, then condor_history)."""
    other = make_job(workdir, test_account.name, ["/bin/true"], name="never")
    assert await backend.find(other) is None   # nothing submitted under that id
    job = make_job(workdir, test_account.name, ["/bin/sleep", "1"], name="found")
    job_id = await backend.submit(job)
    assert await backend.find(job) == job_id   # in the queue
    await wait_for(backend, job_id, BatchState.COMPLETED)
    assert await backend.find(job) == job_id   # in the history
    assert await backend.find(other) is None

"""The SLURM backend against a real single-node SLURM (the ``slurm`` fixture), submitting as a
non-root account: queued or running, then completed with its output; failed with its exit code;
cancelled and gone from squeue; an outside scancel noticed; a time limit noticed as TIMEOUT;
an id SLURM has no record of is vanished; one poll is one squeue."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from jobforms.backends import BatchState, Limits, SlurmBackend
from jobforms.backends.slurm import final_status, live_status
from machines.hosts import LocalHost
from tests.test_backend_support import CountingHost, account_folder, make_job, wait_for

PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"
SMALL = {"memory_mb": 64}   # two CPUs and 4000 MB: small jobs run side by side


@pytest.fixture(scope="module")
def workdir(shared_tmp, test_account):
    path = account_folder(shared_tmp, test_account.uid, test_account.gid, "slurm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def slurm_backend(slurm, test_account) -> SlurmBackend:
    return SlurmBackend(host=CountingHost(test_account.name, "/", "/usr/bin/python3"),
                        command_env={"SLURM_CONF": str(slurm.conf)})


@pytest.fixture
async def backend(slurm, test_account):
    backend = slurm_backend(slurm, test_account)
    yield backend
    # the slurm fixture expects an empty queue: cancel what this test left (not the module's
    # over-time job, which the last test waits for)
    listed = slurm.run("squeue", "--noheader", "--format=%i %j").stdout.split("\n")
    for job_id, _, name in (line.partition(" ") for line in listed if line.strip()):
        if name.startswith("nebulahub-") and name != "nebulahub-overtime":
            await backend.cancel(job_id)


@pytest.fixture(scope="module")
def over_time(slurm, test_account, workdir):
    """A job asking for 5 s of wall time, submitted once for the module: SLURM keeps time
    limits in minutes, so it is killed after a minute or so; the last test waits for that."""
    import asyncio

    backend = slurm_backend(slurm, test_account)
    job = make_job(workdir, test_account.name, ["sleep", "600"], name="overtime", walltime_s=5,
                   **SMALL)
    job_id = asyncio.run(backend.submit(job))
    yield job_id
    slurm.run("scancel", job_id, check=False)


def scontrol(slurm, job_id: str) -> str:
    return slurm.run("scontrol", "--oneliner", "show", "job", job_id).stdout


async def test_a_job_is_queued_or_running_then_completes_with_its_output(
        slurm, backend, workdir, test_account):
    job = make_job(workdir, test_account.name,
                   ["sh", "-c", 'echo "$1"; echo "$NEBULAHUB_GREETING"; pwd; id -u', "sh",
                    "two words"], name="done", **SMALL)
    job_id = await backend.submit(job)
    assert job_id.isdigit()
    first = (await backend.status([job_id]))[job_id]
    assert first.state in (BatchState.QUEUED, BatchState.RUNNING, BatchState.COMPLETED)
    status = await wait_for(backend, job_id, BatchState.COMPLETED)
    assert (status.exit_code, status.native) == (0, "COMPLETED")
    with open(job.stdout) as out:
        assert out.read().splitlines() == ["two words", "hello 'world'", workdir,
                                           str(test_account.uid)]
    assert f"UserId={test_account.name}(" in scontrol(slurm, job_id)


async def test_the_wall_time_is_rounded_up_to_slurms_whole_minutes(slurm, over_time):
    assert " TimeLimit=00:01:00 " in scontrol(slurm, over_time)


async def test_arguments_and_paths_that_look_like_directives_stay_what_they_are(
        slurm, backend, workdir, test_account):
    nasty = ["#SBATCH --time=7", "\n#SBATCH --mem=1\n", "a b", "'", '"', "", "$HOME", "`id`",
             "%j", "\\", "ü😀", "--", "x=y"]
    odd_out = f"{workdir}/out 100% %j #SBATCH.txt"
    job = replace(make_job(workdir, test_account.name, ["python3", "-c", PRINT_ARGV, *nasty],
                           name="nasty", env={"NEBULAHUB_X": "\n#SBATCH --partition=nowhere"},
                           **SMALL), stdout=odd_out)
    job_id = await backend.submit(job)
    await wait_for(backend, job_id, BatchState.COMPLETED)
    with open(odd_out) as out:           # %j stayed %j: it was written as %%j
        assert json.loads(out.read()) == nasty
    shown = scontrol(slurm, job_id)
    assert " TimeLimit=01:00:00 " in shown and " Partition=debug " in shown


async def test_a_failing_program_is_failed_with_its_exit_code_and_error_file(
        backend, workdir, test_account):
    job = make_job(workdir, test_account.name, ["sh", "-c", "echo oops >&2; exit 3"],
                   name="fails", **SMALL)
    status = await wait_for(backend, await backend.submit(job), BatchState.FAILED)
    assert status.exit_code == 3 and status.reason == "The program exited with code 3."
    with open(job.stderr) as err:
        assert err.read() == "oops\n"


async def test_cancel_while_running_ends_cancelled_and_leaves_the_queue(
        slurm, backend, workdir, test_account):
    job_id = await backend.submit(make_job(workdir, test_account.name, ["sleep", "300"],
                                           name="cancel", **SMALL))
    await wait_for(backend, job_id, BatchState.RUNNING)
    await backend.cancel(job_id)
    status = await wait_for(backend, job_id, BatchState.CANCELLED)
    assert "SLURM cancelled the job" in status.reason
    assert job_id not in slurm.queue()
    await backend.cancel(job_id)   # already ended: not an error


async def test_an_outside_scancel_is_noticed_with_a_sentence(
        slurm, backend, workdir, test_account):
    job_id = await backend.submit(make_job(workdir, test_account.name, ["sleep", "300"],
                                           name="outside", **SMALL))
    await wait_for(backend, job_id, BatchState.QUEUED, BatchState.RUNNING)
    slurm.run("scancel", job_id)
    status = await wait_for(backend, job_id, BatchState.CANCELLED, BatchState.VANISHED)
    assert status.reason.startswith("SLURM cancelled the job")


async def test_a_job_slurm_has_no_record_of_is_vanished(backend):
    status = (await backend.status(["987654"]))["987654"]
    assert status.state is BatchState.VANISHED
    assert status.reason.startswith("SLURM has no record of the job any more")


async def test_one_poll_is_one_squeue_for_many_live_jobs(slurm, backend, workdir, test_account):
    ids = [await backend.submit(make_job(workdir, test_account.name, ["sleep", "300"],
                                         name=f"many{i}", **SMALL)) for i in range(4)]
    backend.host.commands.clear()
    statuses = await backend.status(ids)
    assert [c[0] for c in backend.host.commands] == ["squeue"]
    assert {s.state for s in statuses.values()} <= {BatchState.QUEUED, BatchState.RUNNING}
    for job_id in ids:
        await backend.cancel(job_id)


async def test_a_root_service_submits_as_the_users_account_through_runuser(
        slurm, workdir, test_account):
    backend = SlurmBackend(host=LocalHost("root", "/root", "/usr/bin/python3", allow_root=True),
                           exec_prefix=["runuser", "-u", "{account}", "--"],
                           command_env={"SLURM_CONF": str(slurm.conf)})
    job_id = await backend.submit(make_job(workdir, test_account.name, ["id", "-un"],
                                           name="asuser", **SMALL))
    await wait_for(backend, job_id, BatchState.COMPLETED)
    assert f" UserId={test_account.name}(" in scontrol(slurm, job_id)
    with open(f"{workdir}/asuser.out") as out:
        assert out.read() == f"{test_account.name}\n"


async def test_a_held_job_says_who_holds_it(slurm, backend, workdir, test_account):
    backend.submit_command_extra = ["--hold"]
    job_id = await backend.submit(make_job(workdir, test_account.name, ["true"], name="held",
                                           **SMALL))
    status = (await backend.status([job_id]))[job_id]
    assert status.state is BatchState.HELD and "held by its owner (JobHeldUser)" in status.reason
    await backend.cancel(job_id)


async def test_the_cluster_offers_its_node_capped_by_the_admin(backend):
    assert await backend.offers() == Limits(nodes=1, cores=2, memory_mb=4000, walltime_s=None)
    backend.limits = {"memory_mb": 1000, "walltime_s": 3600}
    assert await backend.offers() == Limits(nodes=1, cores=2, memory_mb=1000, walltime_s=3600)


@pytest.mark.parametrize("state, reason, exit_text, expected, words", [
    ("PENDING", "Resources", "", BatchState.QUEUED, "Waiting in the SLURM queue (Resources)"),
    ("PENDING", "JobHeldAdmin", "", BatchState.HELD, "held by an administrator"),
    ("RUNNING", "None", "", BatchState.RUNNING, "Running."),
    ("SUSPENDED", "None", "", BatchState.RUNNING, "Suspended by SLURM"),
    ("COMPLETED", "None", "0:0", BatchState.COMPLETED, "exit code 0"),
    ("FAILED", "NonZeroExitCode", "2:0", BatchState.FAILED, "exited with code 2"),
    ("FAILED", "None", "0:9", BatchState.FAILED, "killed by signal 9"),
    ("TIMEOUT", "TimeLimit", "0:15", BatchState.FAILED, "time limit (TIMEOUT)"),
    ("OUT_OF_MEMORY", "OutOfMemory", "0:125", BatchState.FAILED, "OUT_OF_MEMORY"),
    ("NODE_FAIL", "NodeDown", "0:0", BatchState.FAILED, "NODE_FAIL"),
    ("CANCELLED by 1000", "None", "0:15", BatchState.CANCELLED, "scancel"),
    ("REVOKED", "None", "0:0", BatchState.VANISHED, "federation"),
])
def test_every_slurm_state_is_mapped(state, reason, exit_text, expected, words):
    status = (final_status(state, exit_text, reason) if exit_text
              else live_status(state, reason))
    assert status.state is expected and words in status.reason


async def test_a_job_over_its_time_limit_is_noticed_as_timed_out(slurm, over_time, test_account):
    """Last in the module: by now the one-minute limit of ``over_time`` has mostly passed."""
    backend = slurm_backend(slurm, test_account)
    status = await wait_for(backend, over_time, BatchState.FAILED, timeout=180)
    assert status.native == "TIMEOUT"
    assert status.reason == "SLURM killed the job at its time limit (TIMEOUT)."


async def test_a_submitted_job_is_found_by_its_name_running_and_ended(backend, workdir, test_account):
    """What a restarted service asks before submitting again (squeue --name, all states)."""
    other = make_job(workdir, test_account.name, ["true"], name="never-sent", **SMALL)
    assert await backend.find(other) is None
    job = make_job(workdir, test_account.name, ["sleep", "1"], name="found", **SMALL)
    job_id = await backend.submit(job)
    assert await backend.find(job) == job_id
    await wait_for(backend, job_id, BatchState.COMPLETED, timeout=60)
    assert await backend.find(job) == job_id   # ended, still in the controller's memory
    assert await backend.find(other) is None

"""What every backend shares: the one door for commands (``_call``: the account's prefix, the
environment after it, no shell), errors as sentences with the right transience, limits for the
forms, and every setting documented for ``--help-all``."""
from __future__ import annotations

import socket

import pytest

from jobforms.backends import (BACKEND_CLASSES, BACKENDS, BackendError, BackendUnavailable,
                               HTCondorBackend, JobRefused, Limits, LocalBackend, Resources,
                               SlurmBackend)
from machines.hostkeys import HostKeyStore
from machines.hosts import CommandResult, Host, LocalHost, SshHost
from machines.ssh import SshTarget
from tests.test_backend_support import make_job


class RecordingHost(Host):
    """A host that records what it is asked to run and answers like sbatch would."""

    def __init__(self):
        self.calls = []

    async def open(self, *, wait, report=None):
        return None

    async def run(self, argv, *, input=None, env=None, timeout=60):
        self.calls.append((list(argv), input, env))
        return CommandResult(0, "4242\n", "")

    async def exchange(self, argv, data=b"", *, timeout=600):
        raise NotImplementedError

    async def bootstrap(self, request, on_event=None):
        raise NotImplementedError

    async def forward_to_machine(self, port, local_port=0):
        raise NotImplementedError

    async def forward_to_hub(self, host, port, remote_port=0):
        raise NotImplementedError

    async def port_open(self, port):
        return False


async def test_a_service_login_submits_as_the_jobs_account_through_the_exec_prefix():
    host = RecordingHost()
    backend = SlurmBackend(host=host, exec_prefix=["sudo", "-n", "-u", "{account}", "--"],
                           command_env={"SLURM_CONF": "/etc/slurm/slurm.conf"})
    job = make_job("/home/alice/run", "alice", ["python3", "fit.py"])
    assert await backend.submit(job) == "4242"
    argv, script, env = host.calls[0]
    # sudo resets the environment, so it is given after the prefix, and not to the host
    assert argv[:7] == ["sudo", "-n", "-u", "alice", "--", "env",
                        "SLURM_CONF=/etc/slurm/slurm.conf"]
    assert argv[7:9] == ["sbatch", "--parsable"] and env is None
    assert script.startswith("#!/bin/sh\n") and script.endswith("exec python3 fit.py\n")
    await backend.status(["4242"])               # a poll runs as the host's login
    argv, _, env = host.calls[1]
    assert argv[0] == "squeue" and env == {"SLURM_CONF": "/etc/slurm/slurm.conf"}


async def test_without_a_prefix_the_hosts_account_runs_every_command_with_the_environment():
    host = RecordingHost()
    backend = SlurmBackend(host=host, command_env={"SLURM_CONF": "/c"})
    await backend.cancel("4242", account="alice")
    assert host.calls == [(["scancel", "4242"], None, {"SLURM_CONF": "/c"})]


async def test_an_id_a_backend_never_gave_is_a_bug_not_a_command():
    host = RecordingHost()
    with pytest.raises(ValueError):
        await SlurmBackend(host=host).cancel("12; rm -rf /")
    with pytest.raises(ValueError):
        await HTCondorBackend(host=host).status(["12"])
    assert host.calls == []


async def test_a_submit_host_that_does_not_answer_is_unavailable_not_an_error(tmp_path):
    with socket.socket() as s:   # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ssh = SshHost(SshTarget(host="127.0.0.1", username="nobody", port=port), {},
                  HostKeyStore(str(tmp_path)))
    backend = SlurmBackend(host=ssh, connect_timeout=1)
    with pytest.raises(BackendUnavailable) as unavailable:
        await backend.status(["1"])
    assert unavailable.value.transient and "127.0.0.1" in str(unavailable.value)


async def test_a_missing_batch_command_is_a_sentence_for_the_admin(test_account):
    backend = HTCondorBackend(host=LocalHost(test_account.name, "/", "/usr/bin/python3"),
                              command_env={"PATH": "/nonexistent"})
    with pytest.raises(BackendError) as error:
        await backend.status(["1.0"])
    assert not error.value.transient
    assert str(error.value) == ("The command condor_q is not installed where the htcondor "
                                "backend runs its commands.")


async def test_a_job_beyond_the_admins_limits_is_refused_before_any_command():
    host = RecordingHost()
    backend = SlurmBackend(host=host, limits={"cores": 2, "walltime_s": 3600})
    with pytest.raises(JobRefused) as refused:
        await backend.submit(make_job("/w", "alice", ["true"], cores=4))
    assert refused.value.field == "resources.cores"
    assert str(refused.value) == "The job asks for 4 cores; this backend offers at most 2."
    assert host.calls == []
    backend.limits = {"gpus": 1}
    with pytest.raises(BackendError, match="unknown resources: gpus"):
        backend.check(make_job("/w", "alice", ["true"]))


def test_limits_speak_the_forms_format():
    offered = Limits(cores=8, memory_mb=16000).capped(Limits(nodes=1, cores=4))
    assert offered.as_dict() == {"nodes": 1, "cores": 4, "memory_mb": 16000, "walltime_s": None}
    Limits(nodes=1).refuse_beyond(Resources(nodes=1, cores=64))


def test_every_backend_is_registered_and_every_setting_has_help():
    assert set(BACKENDS) == {"local", "slurm", "htcondor", "cloud"}
    assert BACKENDS["local"] is LocalBackend
    for cls in BACKEND_CLASSES:
        for name, trait in cls.class_traits(config=True).items():
            assert trait.help, f"{cls.__name__}.{name} has no help"
        assert f"--{cls.__name__}." in cls.class_get_help() or not cls.class_traits(config=True)

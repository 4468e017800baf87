"""The SLURM backend running its commands over SSH on a submit host: a namespace host with its own
sshd (tests/nethosts), logged in to as the network's ssh user with a pinned host key. The
network has its own prefix and subnet: a test session running at the same time (others use
the session-wide ``nh`` network) removes every ``nh-*`` namespace it did not make when it starts.

Reaching the cluster from the submit host: the test SLURM listens on 127.0.0.1 of the root
network namespace, which the namespace host's own loopback is not. This test runs a small TCP
relay *inside* the host's namespace, on 127.0.0.1:<SlurmctldPort>, to the controller, so the
SLURM commands on the submit host reach it exactly as configured (SlurmctldHost=localhost).
MUNGE needs nothing: its socket is a file, and the host shares this machine's filesystem. (A
wrapper entering the root namespace was the other choice; it needs CAP_SYS_ADMIN, which the
submit host's login does not have, and it would not run the commands where the backend sends
them.) The slurm fixture itself is untouched.
"""
from __future__ import annotations

import re
import shutil
import socket
import threading

import pytest

from jobforms.backends import BatchState, SlurmBackend
from machines.hostkeys import HostKeyStore
from machines.hosts import SshHost
from machines.ssh import SshTarget
from tests.nethosts import client_keypair, network_fixture, socket_in_netns
from tests.test_backend_support import account_folder, make_job, wait_for

pytestmark = pytest.mark.integration

submit_network = network_fixture(scope="module", prefix="nhbk", subnet="10.213.92.0/24")


class Relay:
    """127.0.0.1:``port`` inside ``netns`` -> 127.0.0.1:``port`` of this (root) namespace."""

    def __init__(self, netns: str, port: int):
        self.port, self.sockets, self.accepted = port, [], 0
        self.listener = socket_in_netns(netns)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                inner, _ = self.listener.accept()
            except OSError:
                return   # closed
            outer = socket.create_connection(("127.0.0.1", self.port))  # this thread: root ns
            self.accepted += 1
            self.sockets += [inner, outer]
            for a, b in ((inner, outer), (outer, inner)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()


@pytest.fixture
def submit_host(submit_network, slurm, tmp_path):
    """(SshHost logged in as the ssh user, the namespace host, the relay to the controller)."""
    key, public = client_keypair("slurm-submit-test")
    host = submit_network.add_host("slurm-submit", authorized_keys=[public])
    port = int(re.search(r"^SlurmctldPort=(\d+)$", slurm.conf.read_text(), re.M).group(1))
    relay = Relay(host.netns, port)
    target = SshTarget(host=host.ip, username=submit_network.ssh_user, client_keys=[key])
    # pinned up front: strict from the first login
    ssh = SshHost(target, {target.key_id: host.host_key_line}, HostKeyStore(str(tmp_path)))
    yield ssh, host, relay
    relay.close()
    host.destroy()


@pytest.fixture
def workdir(shared_tmp, submit_network):
    import pwd

    account = pwd.getpwnam(submit_network.ssh_user)
    path = account_folder(shared_tmp, account.pw_uid, account.pw_gid, "slurm-ssh")
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_jobs_are_submitted_polled_and_cancelled_from_a_submit_host_over_ssh(
        slurm, submit_network, submit_host, workdir):
    ssh, host, relay = submit_host
    backend = SlurmBackend(host=ssh, command_env={"SLURM_CONF": str(slurm.conf)})
    user, submitted = submit_network.ssh_user, []
    try:
        done = await backend.submit(make_job(workdir, user, ["sh", "-c", 'echo "$1"; id -un',
                                                             "sh", "a b; $(not run)"],
                                             name="viassh", memory_mb=64))
        submitted.append(done)
        status = await wait_for(backend, done, BatchState.COMPLETED)
        assert status.exit_code == 0
        with open(f"{workdir}/viassh.out") as out:
            assert out.read().splitlines() == ["a b; $(not run)", user]
        shown = slurm.run("scontrol", "--oneliner", "show", "job", done).stdout
        # the commands ran on the submit host, as its login: they reached the controller
        # through the relay in its namespace (the only way from there), as the ssh user
        assert relay.accepted >= 3 and f" UserId={user}(" in shown

        long = await backend.submit(make_job(workdir, user, ["sleep", "300"], name="long",
                                             memory_mb=64))
        submitted.append(long)
        await wait_for(backend, long, BatchState.RUNNING)
        await backend.cancel(long)
        assert (await wait_for(backend, long, BatchState.CANCELLED)).native == "CANCELLED"
        assert long not in slurm.queue()
        assert (await backend.status(["987655"]))["987655"].state is BatchState.VANISHED
    finally:
        for job_id in submitted:
            slurm.run("scancel", job_id, check=False)
        await ssh.close()

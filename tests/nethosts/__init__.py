"""Real "hosts" for integration tests: Linux network namespaces, each with its own OpenSSH sshd.

Usage (needs root)::

    from tests.nethosts import TestNetwork

    with TestNetwork(prefix="nh") as net:             # setup() on enter, teardown() on exit
        vm = net.add_host("vm1", authorized_keys=[pubkey_line])
        # vm.ip, vm.port, vm.user ("nbvm"), vm.host_key_line, vm.known_hosts_line
        bastion = net.add_bastion("gw", authorized_keys=[pubkey_line])
        inner = net.add_host("vm2", behind=bastion, authorized_keys=[pubkey_line])
        # inner.ip is on the bastion's inner subnet: reachable only through the bastion

Layout:

* root namespace: ``ip route add unreachable <guard>`` (the /16 around the subnet, added first and
  never removed) so no test packet can leave the machine; bridge ``<prefix>-br0`` holding the
  gateway address ``.1/24``.
* host ``NAME``: namespace ``<prefix>-NAME``, ``lo`` up, ``eth0`` (veth peer of ``<prefix>v<n>``
  on the bridge), default route via the gateway, sshd in its own UTS namespace (hostname NAME).
* bastion: a host that also owns bridge ``br1`` *inside* its namespace with ``.1`` of an inner
  /24 (the next free /24 after the main subnet); hosts ``behind=`` it hang off that bridge.
  The bastion does not forward IP, and the root namespace has no route to the inner subnet
  (it falls into the unreachable guard route), so only ProxyJump / tunnels reach them.

Every host has a directory ``<state_dir>/hosts/NAME`` with sshd_config, host key, authorized_keys
and sshd.log. ``state_dir`` defaults to ``/run/nebulahub-nethosts/<prefix>`` (not /tmp: sshd's
StrictModes rejects an AuthorizedKeysFile below a world-writable directory such as /tmp).
Each host records what it created in ``host.json`` there, so that ``setup()`` of a later run can
clean up after a run that was killed.

Modules: ``netns`` (ip/namespace/socket primitives), ``sshd`` (per-host sshd files and process),
``host`` (SshHost), ``network`` (TestNetwork), ``access`` (ssh user, StrictModes, interpreter
checks), ``cleanup`` (leftovers of crashed runs), ``fixtures`` (pytest helpers).
"""
from tests.nethosts.access import VENV_PYTHON, blocking_dir
from tests.nethosts.fixtures import client_keypair, network_fixture, running_network
from tests.nethosts.host import SshHost
from tests.nethosts.netns import NetHostError, socket_in_netns, tcp_port_open
from tests.nethosts.network import DEFAULT_STATE_ROOT, DEFAULT_USER, TestNetwork
from tests.nethosts.sshd import SSHD

__all__ = [
    "DEFAULT_STATE_ROOT", "DEFAULT_USER", "SSHD", "VENV_PYTHON", "NetHostError", "SshHost",
    "TestNetwork", "blocking_dir", "client_keypair", "network_fixture", "running_network",
    "socket_in_netns", "tcp_port_open",
]

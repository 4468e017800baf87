"""pytest helpers around TestNetwork: a context manager, a fixture factory, a client key."""
from __future__ import annotations

import contextlib

from tests.nethosts.network import TestNetwork


@contextlib.contextmanager
def running_network(**kwargs):
    """Context manager: a set-up TestNetwork, torn down afterwards."""
    net = TestNetwork(**kwargs)
    try:
        yield net.setup()
    finally:
        net.teardown()


def network_fixture(scope: str = "session", **kwargs):
    """Make a pytest fixture yielding a set-up TestNetwork (skips without root, fails under CI).

    In a conftest.py or test module::

        from tests.nethosts import network_fixture
        nethosts = network_fixture(scope="session")          # prefix "nh", 10.213.0.0/24

    Use a distinct ``prefix``/``subnet`` per fixture if several networks exist at once.
    """
    import pytest

    @pytest.fixture(scope=scope)
    def _fixture():
        from tests.conftest import require_root
        require_root()
        with running_network(**kwargs) as net:
            yield net

    return _fixture


def client_keypair(comment: str = "nethosts-test"):
    """(asyncssh private key, OpenSSH public key line) — a fresh ed25519 client key."""
    import asyncssh
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    return key, key.export_public_key().decode().strip()

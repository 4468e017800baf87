"""How the hub reaches the machines it uses: the settings shared by every provider and caller.

One object per hub process (the spawner and, later, the job service and Dask clusters make theirs
from the same config section ``c.MachineAccess``): the admin's bastion, the trust store of pinned
host keys, the crypt key sealing stored private keys, and SSH timeouts.
"""
from __future__ import annotations

import asyncssh
from traitlets import Float, Unicode
from traitlets.config import LoggingConfigurable

from .errors import ConfigError
from .hostkeys import HostKeyStore
from .record import JumpHost
from .releases import PendingReleases
from .secretbox import SecretBox


class MachineAccess(LoggingConfigurable):
    """Hub-wide settings for reaching machines over SSH and keeping their secrets."""

    jump_host = Unicode(
        "",
        help="ProxyJump bastion ``[user@]host[:port]`` for VMs and the fixed SSH host.",
    ).tag(config=True)

    jump_key_file = Unicode("", help="Private key the hub logs in to the bastion with.").tag(
        config=True)

    known_hosts_file = Unicode(
        "",
        help="""known_hosts file pinning host keys up front (bastion, fixed hosts). Hosts not in
        it are trusted on first contact, pinned, then checked strictly.""",
    ).tag(config=True)

    host_key_dir = Unicode(
        "host-keys",
        help="""Hub-private folder of SSH host keys pinned across uses: hub-wide for the admin's
        machines (fixed host, bastion), per user for users' own machines. A machine whose key
        changed is refused until the key is accepted deliberately (``nebulahub hostkeys
        forget``, or the spawn form's choice for a user's own machine). VM keys are kept only
        with the VM's record.""",
    ).tag(config=True)

    crypt_key_file = Unicode(
        "nebulahub_crypt_key",
        help="""Key file (hub-private, created 0600 on first use) sealing the SSH private keys the
        hub stores (per-acquisition keys in machine records, users' hub keys). Not used when
        $JUPYTERHUB_CRYPT_KEY is set: then the hub's crypt key seals them, as it seals
        auth_state.""",
    ).tag(config=True)

    ssh_timeout = Float(
        120, help="Seconds a machine may take to accept the SSH login after it runs."
    ).tag(config=True)

    reconnect_timeout = Float(
        5, help="""Seconds to reach a machine that accepted logins before (polls, clean-up): a
        poll never waits longer on a dead machine.""",
    ).tag(config=True)

    pending_release_file = Unicode(
        "pending-releases.json",
        help="""Hub-private file of machines whose release failed because the cloud did not answer
        (or refused in a state it will leave); they are given back as soon as it does, also after
        a hub restart.""",
    ).tag(config=True)

    release_retry_interval = Float(
        10, help="Seconds between attempts to give back machines whose release failed."
    ).tag(config=True)

    bootstrap_python = Unicode(
        "python3", help="Python on remote machines that runs the bootstrap program (3.8+)."
    ).tag(config=True)

    _box: SecretBox | None = None
    _store: HostKeyStore | None = None
    _releases: PendingReleases | None = None

    @property
    def pending_releases(self) -> PendingReleases:
        if self._releases is None:
            self._releases = PendingReleases(self.pending_release_file)
        return self._releases

    @property
    def secret_box(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox.from_environment(self.crypt_key_file)
        return self._box

    @property
    def host_keys(self) -> HostKeyStore:
        if self._store is None:
            self._store = HostKeyStore(self.host_key_dir)
        return self._store

    def bastion(self, default_user: str) -> JumpHost | None:
        return JumpHost.parse(self.jump_host, default_user)

    def bastion_keys(self) -> list:
        if not self.jump_key_file:
            return []
        try:
            return [asyncssh.read_private_key(self.jump_key_file)]
        except (OSError, asyncssh.KeyImportError) as e:
            raise ConfigError(f"The hub cannot read its bastion key: {e}") from None

"""Unix accounts for servers on the hub's own machine (the ``local`` provider).

Each hub user's server runs as a Unix account of its own, named ``<prefix><hub user>``, never as
root: a server cannot read another user's home, the hub's state or the hub's process environment.
When the hub may create accounts (the demo), every account it creates is written to a registry
file, and :func:`remove_created` removes exactly those, never an account the hub found existing.
"""
from __future__ import annotations

import fcntl
import grp
import os
import pwd
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import AccountError

# Debian's useradd default NAME_REGEX, and the 32-character limit of utmp
UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class LocalAccount:
    """Who a server runs as, and where its home is."""

    name: str
    uid: int
    gid: int
    home: str

    @property
    def groups(self) -> list[int]:
        return sorted({g.gr_gid for g in grp.getgrall() if self.name in g.gr_mem} | {self.gid})

    def env(self) -> dict[str, str]:
        """The login variables a process of this account expects."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name,
                "SHELL": pwd.getpwuid(self.uid).pw_shell or "/bin/sh"}


def unix_name(prefix: str, hub_user: str) -> str:
    """``prefix + hub_user`` if that is a valid Unix account name, else :class:`AccountError`."""
    name = f"{prefix}{hub_user}"
    if not UNIX_NAME.fullmatch(name):
        raise AccountError(
            f"The hub user name {hub_user!r} cannot be a Unix account name on this machine "
            f"({name!r}: lowercase letters, digits, '-' and '_', at most 32 characters).")
    return name


def lookup(name: str) -> LocalAccount | None:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return LocalAccount(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def ensure_account(name: str, home: str, registry: str | None) -> LocalAccount:
    """The account ``name``; created (and recorded in ``registry``) if missing and ``registry`` is
    given. Never root. Serialised by a lock on the registry so concurrent spawns create it once."""
    account = lookup(name)
    if account is None and registry:
        Path(registry).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(f"{registry}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            account = lookup(name)
            if account is None:
                _useradd(name, home)
                with open(registry, "a") as f:
                    f.write(name + "\n")
                account = lookup(name)
    if account is None:
        raise AccountError(f"There is no Unix account {name!r} on the hub machine; the admin must "
                           "create it (or let the hub create accounts: "
                           "LocalProvider.create_system_users).")
    if account.uid == 0:
        raise AccountError(f"The account {name!r} is root: NebulaHub never runs a server as root.")
    return account


def _useradd(name: str, home: str) -> None:
    res = subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", home, "--shell", "/bin/bash",
         "--user-group", "--comment", "NebulaHub user", name],
        capture_output=True, text=True)
    if res.returncode != 0:
        raise AccountError(f"Could not create the Unix account {name!r}: {res.stderr.strip()}")


def prepare_home(account: LocalAccount, home: str) -> None:
    """Create ``home`` for the account (0700, owned by it); leave an existing one as it is but
    take ownership of what the hub itself put there (e.g. demo files)."""
    path = Path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise AccountError(f"The home {home} is not a folder.")
    if st.st_uid != account.uid:
        if st.st_uid != os.geteuid():
            raise AccountError(f"The home {home} belongs to another account (uid {st.st_uid}).")
        for root, dirs, files in os.walk(path):
            for n in [root, *(os.path.join(root, x) for x in dirs + files)]:
                os.lchown(n, account.uid, account.gid)
    os.chmod(path, 0o700)


def created_accounts(registry: str) -> list[str]:
    try:
        with open(registry) as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def remove_created(registry: str) -> list[str]:
    """Delete the accounts listed in ``registry`` (only those), then the registry; returns them.

    Their homes are left to whoever owns the folder they live in (the demo's state directory)."""
    removed = []
    for name in created_accounts(registry):
        if lookup(name) is None:
            continue
        _kill_processes_of(name)
        res = subprocess.run(["userdel", name], capture_output=True, text=True)
        if res.returncode == 0:
            removed.append(name)
    for path in (registry, f"{registry}.lock"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return removed


def _kill_processes_of(name: str) -> None:
    """userdel refuses while the account runs processes; a stopped demo leaves none, a crashed one
    may."""
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)


def path_blocker(path: str, account: LocalAccount) -> str | None:
    """The first directory on ``path`` the account cannot traverse (mode bits), or None."""
    groups = set(account.groups)
    p = Path(os.path.abspath(path))
    for d in [*reversed(p.parents), p]:
        try:
            st = os.stat(d)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            break
        if st.st_uid == account.uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return str(d)
    real = os.path.realpath(path)
    if real != os.path.abspath(path):
        return path_blocker(real, account)
    return None

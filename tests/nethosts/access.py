"""What the ssh user can reach: its account, the directories sshd's StrictModes checks, the
interpreter the tests run as that user. Nothing outside the state dir is ever chmod-ed."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from tests.nethosts.netns import NetHostError

VENV_PYTHON = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python")


def blocking_dir(path: str, user: str) -> str | None:
    """The first directory on ``path`` that ``user`` cannot traverse (None if all are fine).

    Mode bits only (no ACLs), which is what this machine uses; the product's own check."""
    from machines.localusers import lookup, path_blocker

    return path_blocker(path, lookup(user))


def check_state_dir(state_dir: Path) -> None:
    """StrictModes: every dir above the per-host files must be root-owned, not g/o-writable,
    and traversable by the ssh user (sshd reads authorized_keys as that user)."""
    p = Path(os.path.abspath(state_dir))
    for d in [p, *p.parents]:
        if not d.exists():
            continue
        st = os.stat(d)
        if st.st_uid != 0 or st.st_mode & 0o022 or not st.st_mode & 0o001:
            raise NetHostError(
                f"state_dir {state_dir}: {d} is {stat.filemode(st.st_mode)} uid {st.st_uid}; "
                "sshd StrictModes needs every parent root-owned, not group/world-writable, and "
                "o+x so the ssh user can read authorized_keys (the default /run/nebulahub-nethosts "
                "works; /tmp does not)")


def ensure_user(ssh_user: str) -> None:
    """Create ``ssh_user`` if missing, unlock it for key logins, and check it reaches its home."""
    import pwd
    try:
        pw = pwd.getpwnam(ssh_user)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", ssh_user],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(ssh_user)
    pwhash = "!"
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.split(":")
            if fields[0] == ssh_user and len(fields) > 1:
                pwhash = fields[1]
    if pwhash.startswith("!") or pwhash == "":
        subprocess.run(["usermod", "-p", "*", ssh_user], check=True, capture_output=True)
    home = Path(pw.pw_dir)
    if not home.is_dir():
        home.mkdir(mode=0o755, parents=True)
        os.chown(home, pw.pw_uid, pw.pw_gid)
    bad = blocking_dir(str(home), ssh_user)
    if bad:
        raise NetHostError(f"user {ssh_user} cannot reach its home {home}: {bad} blocks it")


def check_user_can_run(ssh_user: str, executable: str = VENV_PYTHON, *args: str) -> None:
    """Raise NetHostError naming the blocking directory if ``ssh_user`` cannot run it."""
    args = args or (("-c", "1") if "python" in os.path.basename(executable) else ("--version",))
    res = subprocess.run(["runuser", "-u", ssh_user, "--", executable, *args],
                         capture_output=True, text=True, cwd="/")
    if res.returncode == 0:
        return
    bad = blocking_dir(executable, ssh_user)
    real = os.path.realpath(executable)
    where = f" (resolves to {real})" if real != executable else ""
    if bad:
        raise NetHostError(
            f"user {ssh_user} cannot run {executable}{where}: directory {bad} is not "
            f"traversable by it (mode {stat.filemode(os.stat(bad).st_mode)}). Fix the machine "
            f"(e.g. chmod o+x {bad}) or use an interpreter outside it.")
    raise NetHostError(f"user {ssh_user} cannot run {executable}{where}: "
                       f"rc {res.returncode}: {res.stderr.strip()}")

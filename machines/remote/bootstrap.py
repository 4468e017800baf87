"""NebulaHub bootstrap program: runs ON the target host, sent over the SSH channel (or a local pipe).

Nothing is preinstalled on the host beyond ``python3`` (3.8+). The hub starts this program with a
fixed loader in argv (no secrets), sends the program text, then one JSON request line on stdin.
The request may carry the API token; it is written to a 0600 file and never put into argv.

The program answers with lines ``NEBULAHUB-EVENT {json}`` (progress) and one final
``NEBULAHUB-RESULT {json}`` (``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``).

Actions:
  start   create the per-server work dir, store the token, find or create the Python environment,
          launch ``jupyterhub-singleuser`` on 127.0.0.1 detached from the session, wait until it listens
  status  is the server of this work dir still running?
  stop    stop it (TERM, then KILL) and remove the token
"""
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

EVENT = "NEBULAHUB-EVENT "
RESULT = "NEBULAHUB-RESULT "
SERVER_FILE = "server.json"
TOKEN_FILE = "token"
LOG_FILE = "server.log"

# Runs in the environment's python: reads the token file into the server's own environment (only
# this user can read it) and replaces itself with jupyterhub-singleuser, so argv stays clean.
LAUNCHER = (
    "import os,sys\n"
    "d=os.environ.pop('NEBULAHUB_TOKEN_FILE')\n"
    "t=open(d).read().strip()\n"
    "os.environ['JUPYTERHUB_API_TOKEN']=t\n"
    "os.environ['JPY_API_TOKEN']=t\n"
    "exe=sys.argv[1]\n"
    "os.execv(exe,[exe]+sys.argv[2:])\n"
)


def emit(prefix, payload):
    sys.stdout.write(prefix + json.dumps(payload) + "\n")
    sys.stdout.flush()


def progress(message, **extra):
    emit(EVENT, dict(extra, message=message))


class BootstrapError(Exception):
    """A failure with a sentence for the user; ``log`` holds the server log's last lines."""

    def __init__(self, message, log=""):
        Exception.__init__(self, message)
        self.log = log


def expand(path):
    return os.path.abspath(os.path.expanduser(os.path.expandvars(path)))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def read_server(workdir):
    try:
        with open(os.path.join(workdir, SERVER_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_private(path, text):
    """Write ``text`` to a new file only the owner can read (0600 from the first byte)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def find_singleuser(env_dir):
    exe = os.path.join(env_dir, "bin", "jupyterhub-singleuser")
    return exe if os.access(exe, os.X_OK) else None


def find_python(env_dir):
    exe = os.path.join(env_dir, "bin", "python")
    return exe if os.access(exe, os.X_OK) else None


def ensure_environment(req, find=find_singleuser, needs="jupyterhub-singleuser"):
    """Return (python, the program ``find`` looks for) from a prepared env, or build one."""
    prepared = req.get("python_env")
    if prepared:
        exe = find(expand(prepared))
        if exe:
            progress("Using the prepared Python environment", env=expand(prepared))
            return os.path.join(expand(prepared), "bin", "python"), exe
        if not req.get("create_env"):
            raise BootstrapError(
                "The prepared Python environment %s has no %s." % (prepared, needs)
            )
    env_dir = expand(req["create_env"])
    os.makedirs(os.path.dirname(env_dir), mode=0o700, exist_ok=True)
    # Two servers bootstrapping on one host share the environment: build it once, under a lock.
    with open(env_dir + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        exe = find(env_dir)
        if exe and os.path.exists(os.path.join(env_dir, ".nebulahub-complete")):
            progress("Using the Python environment built earlier", env=env_dir)
            return os.path.join(env_dir, "bin", "python"), exe
        progress("Creating a Python environment", env=env_dir)
        venv_args = [sys.executable, "-m", "venv"]
        if req.get("system_site_packages"):
            venv_args.append("--system-site-packages")
        run_checked(venv_args + [env_dir], "creating the Python environment")
        packages = req.get("packages") or ["jupyterhub", "jupyterlab"]
        progress("Installing %s" % ", ".join(packages), env=env_dir)
        pip = [os.path.join(env_dir, "bin", "python"), "-m", "pip", "install", "--quiet"]
        run_checked(pip + list(req.get("pip_args") or []) + packages, "installing packages")
        exe = find(env_dir)
        if not exe:
            raise BootstrapError("Installing %s gave no %s." % (packages, needs))
        open(os.path.join(env_dir, ".nebulahub-complete"), "w").close()
        return os.path.join(env_dir, "bin", "python"), exe


def run_checked(cmd, what):
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise BootstrapError("Failed while %s (exit %d):\n%s" % (what, proc.returncode, tail))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def cpu_seconds(pid):
    """CPU time a process has used so far (what a starting server shows as progress)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def log_size(workdir):
    try:
        return os.path.getsize(os.path.join(workdir, LOG_FILE))
    except OSError:
        return 0


def log_tail(workdir, lines=20):
    try:
        with open(os.path.join(workdir, LOG_FILE), errors="replace") as f:
            return "\n".join(f.read().splitlines()[-lines:])
    except OSError:
        return ""


def action_start(req):
    if os.geteuid() == 0:
        raise BootstrapError("NebulaHub never runs a server as root; the hub must log in (or "
                             "switch) to the user's own account.")
    workdir = expand(req["workdir"])
    os.makedirs(workdir, mode=0o700, exist_ok=True)
    os.chmod(workdir, 0o700)
    old = read_server(workdir)
    if old and pid_alive(old["pid"]):
        stop_pid(old["pid"])
    token_path = os.path.join(workdir, TOKEN_FILE)
    write_private(token_path, req.pop("token"))
    python, singleuser = ensure_environment(req)
    port = int(req.get("port") or 0) or free_port()
    env = dict(os.environ)
    env.update({k: str(v).replace("{NEBULAHUB_PORT}", str(port))
                for k, v in (req.get("env") or {}).items()})
    env["NEBULAHUB_TOKEN_FILE"] = token_path
    env["PATH"] = os.path.dirname(singleuser) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    cwd = expand(req.get("cwd") or "~")
    os.makedirs(cwd, exist_ok=True)
    args = [python, "-c", LAUNCHER, singleuser, "--ip=127.0.0.1", "--port=%d" % port]
    args += list(req.get("args") or [])
    progress("Starting the Jupyter server", port=port)
    with open(os.path.join(workdir, LOG_FILE), "ab") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd,
                                env=env, start_new_session=True, close_fds=True)
    with open(os.path.join(workdir, SERVER_FILE), "w") as f:
        json.dump({"pid": proc.pid, "port": port}, f)
    # Waited for while it makes progress (uses CPU or writes its log), so fifty servers
    # starting on shared CPUs all get there; given up after start_timeout without progress.
    quiet_limit = float(req.get("start_timeout", 60))
    hard_deadline = time.time() + float(req.get("start_timeout_max", 900))
    last_progress, seen = time.time(), (cpu_seconds(proc.pid), log_size(workdir))
    log_path = os.path.join(req["workdir"], LOG_FILE)
    while True:
        code = proc.poll()
        if code is not None:
            raise BootstrapError("The Jupyter server exited at start (code %s); its log is %s."
                                 % (code, log_path), log_tail(workdir))
        if listening(port):
            return {"port": port, "pid": proc.pid, "python": python, "workdir": workdir}
        now = time.time()
        current = (cpu_seconds(proc.pid), log_size(workdir))
        if current != seen:
            last_progress, seen = now, current
        if now - last_progress > quiet_limit or now > hard_deadline:
            stop_pid(proc.pid)
            raise BootstrapError("The Jupyter server did not start listening (no progress for "
                                 "%ds); its log is %s." % (now - last_progress, log_path),
                                 log_tail(workdir))
        time.sleep(0.1)


def stop_pid(pid, grace=5.0):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.time() + grace
        while time.time() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def action_status(req):
    workdir = expand(req["workdir"])
    server = read_server(workdir)
    running = bool(server) and pid_alive(server["pid"])
    return {"running": running, "port": server and server.get("port")}


def action_stop(req):
    workdir = expand(req["workdir"])
    server = read_server(workdir)
    was_running = bool(server) and pid_alive(server["pid"])
    if server:
        stop_pid(server["pid"])
    for name in (TOKEN_FILE, SERVER_FILE):
        try:
            os.unlink(os.path.join(workdir, name))
        except FileNotFoundError:
            pass
    return {"stopped": was_running}


def action_environment(req):
    """A Python environment with the given packages for a job worker (no server in it)."""
    if os.geteuid() == 0:
        raise BootstrapError("NebulaHub never runs a job as root.")
    python, _ = ensure_environment(req, find_python, "python")
    workdir = expand(req["workdir"])
    os.makedirs(workdir, mode=0o700, exist_ok=True)
    return {"python": python, "bin": os.path.dirname(python), "workdir": workdir,
            "home": os.path.expanduser("~")}


ACTIONS = {"start": action_start, "status": action_status, "stop": action_stop,
           "environment": action_environment}


def main():
    line = sys.stdin.readline()
    try:
        req = json.loads(line)
        result = ACTIONS[req["action"]](req)
        emit(RESULT, dict(result, ok=True))
    except BootstrapError as e:
        emit(RESULT, {"ok": False, "error": str(e), "log": e.log})
    except Exception as e:  # anything else still reaches the hub as a readable line
        emit(RESULT, {"ok": False, "error": "%s: %s" % (type(e).__name__, e)})


main()

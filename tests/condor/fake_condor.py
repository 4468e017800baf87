"""The fake HTCondor: ``condor_submit``, ``condor_q``, ``condor_history``, ``condor_rm``,
``condor_status`` (machine ads a test writes into ``machines/``).

See ``README`` in this folder for what it does and does not do. State lives in the folder named
by ``FAKE_CONDOR_STATE`` (one per test run); every change happens under one ``flock``.
Each job that starts gets a *shepherd* (this module run as ``_shepherd N``) that plays the
schedd and starter: it waits while the job is idle, runs it, enforces
``allowed_execute_duration`` (hold, code 47) and records how it ended.
"""
from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from syntax import (SyntaxProblem, parse_arguments, parse_environment,  # noqa: E402
                    v2_quoted_to_raw)

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# the attributes condor_q -json shows (our private bookkeeping keys start with "_")
IDLE, RUNNING, REMOVED, COMPLETED, HELD, SUSPENDED = 1, 2, 3, 4, 5, 7


class Fail(Exception):
    """A command refuses: message on stderr, exit code 1."""


# ---- state ---------------------------------------------------------------------------------
def state_dir() -> Path:
    path = os.environ.get("FAKE_CONDOR_STATE")
    if not path:
        raise Fail("ERROR: FAKE_CONDOR_STATE is not set (the fake HTCondor keeps its queue "
                   "there).")
    root = Path(path)
    for sub in ("queue", "history", "machines"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def locked():
    with open(state_dir() / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write(path: Path, ad: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ad))
    os.replace(tmp, path)


def load(where: str, cluster: int) -> dict | None:
    try:
        return json.loads((state_dir() / where / f"{cluster}.json").read_text())
    except FileNotFoundError:
        return None


def save(ad: dict) -> None:
    _write(state_dir() / "queue" / f"{ad['ClusterId']}.json", ad)


def retire(ad: dict) -> None:
    """Leave the queue for the history, as the schedd does when a job ends or is removed."""
    root = state_dir()
    _write(root / "history" / f"{ad['ClusterId']}.json", ad)
    with contextlib.suppress(FileNotFoundError):
        (root / "queue" / f"{ad['ClusterId']}.json").unlink()


def set_status(ad: dict, status: int, **attrs) -> None:
    ad.update(JobStatus=status, EnteredCurrentStatus=int(time.time()), **attrs)


def user_log(ad: dict, code: str, text: str) -> None:
    """One event in the job's user log, in HTCondor's layout."""
    if not ad.get("UserLog"):
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with contextlib.suppress(OSError), open(ad["UserLog"], "a") as log:
        log.write(f"{code} ({ad['ClusterId']:03d}.000.000) {stamp} {text}\n...\n")


def public(ad: dict, attributes: list[str] | None) -> dict:
    shown = {k: v for k, v in ad.items() if not k.startswith("_")}
    if attributes:
        shown = {k: v for k, v in shown.items() if k in attributes}
    return shown


def knob() -> dict:
    """``next_job.json``: how the next submitted job behaves (consumed by that submit).

    Called under ``locked()``: two submits at once (dask-jobqueue scaling to two workers) must
    not both read it, nor the second fail on the file the first removed."""
    path = state_dir() / "next_job.json"
    try:
        text = path.read_text()
        path.unlink()
    except FileNotFoundError:
        return {}
    return json.loads(text)


def record(command: str, argv: list[str]) -> None:
    with contextlib.suppress(OSError), open(state_dir() / "commands.log", "a") as log:
        log.write(json.dumps([command, *argv]) + "\n")


# ---- condor_submit -------------------------------------------------------------------------
VALUE_OPTIONS = {"-a", "-append", "-batch-name", "-name", "-pool", "-remote", "-addr"}


def submit(argv: list[str]) -> int:
    import htcondor2

    appended, batch_name, files, i = [], None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in VALUE_OPTIONS and i + 1 < len(argv):
            if arg in ("-a", "-append"):
                appended.append(argv[i + 1])
            elif arg == "-batch-name":
                batch_name = argv[i + 1]
            i += 2
            continue
        if arg.startswith("-") and arg != "-":
            i += 1  # flags such as -terse, -spool: accepted, not acted on
            continue
        files.append(arg)
        i += 1
    if len(files) > 1:
        raise Fail("ERROR: only one submit description file may be given")
    text = sys.stdin.read() if not files or files[0] == "-" else Path(files[0]).read_text()
    lines = text.splitlines()
    queue = [i for i, line in enumerate(lines) if line.strip().lower().startswith("queue")]
    if not queue:
        raise Fail("ERROR: the submit description has no queue statement")
    lines[queue[-1]:queue[-1]] = appended   # -a lines come before the queue statement
    text = "\n".join(lines) + "\n"
    try:
        description = htcondor2.Submit(text)
    except Exception as e:  # HTCondor's parser says what is wrong
        raise Fail(f"ERROR: {e}") from None
    keys = {k.lower(): k for k in description.keys()}

    def get(name: str, default: str | None = None) -> str | None:
        key = keys.get(name.lower())
        if key is None:
            return default
        with contextlib.suppress(KeyError):
            return description.expand(key)
        return default

    count = (description.getQArgs() or "1").split()[0]
    if count != "1":
        raise Fail("ERROR: the fake HTCondor submits one job at a time (queue 1)")
    if (get("universe", "vanilla") or "vanilla").lower() != "vanilla":
        raise Fail("ERROR: the fake HTCondor runs the vanilla universe only")
    executable = get("executable")
    if not executable:
        raise Fail("ERROR: Executable file not specified")
    iwd = get("initialdir") or os.getcwd()
    raw_arguments, raw_env = get("arguments", "") or "", get("environment", "") or ""
    try:
        arguments, env = parse_arguments(raw_arguments), parse_environment(raw_env)
        # the job ad keeps them in the new syntax without the outer quotes, as HTCondor does
        if raw_arguments.lstrip().startswith('"'):
            raw_arguments = v2_quoted_to_raw(raw_arguments)
        if raw_env.lstrip().startswith('"'):
            raw_env = v2_quoted_to_raw(raw_env)
    except SyntaxProblem as e:
        raise Fail(f"ERROR: {e}") from None

    def path(name: str, default: str) -> str:
        value = get(name) or default
        return value if value.startswith("/") else os.path.join(iwd, value)

    custom = {}
    for key in description.keys():
        name = key[3:] if key.upper().startswith("MY.") else key[1:] if key.startswith("+") \
            else None
        if name:
            custom[name] = _classad_value(description[key])
    with locked():
        setting = knob()
        counter = state_dir() / "counter"
        cluster = int(counter.read_text() or 0) + 1 if counter.exists() else 1
        counter.write_text(str(cluster))
        now = int(time.time())
        ad = {**custom, "ClusterId": cluster, "ProcId": 0, "Owner": getpass.getuser(),
              "Cmd": executable if executable.startswith("/") else os.path.join(iwd, executable),
              "Arguments": raw_arguments, "Environment": raw_env, "Iwd": iwd,
              "_argv": arguments, "_env": env,
              "Out": path("output", "/dev/null"), "Err": path("error", "/dev/null"),
              "UserLog": path("log", "") if get("log") else "",
              "RequestCpus": _number_or_expression(get("request_cpus", "1")),
              "RequestMemory": _number_or_expression(get("request_memory", "0")),
              "Requirements": get("requirements", "true"),
              "JobBatchName": batch_name or get("batch_name", "") or "",
              "AllowedExecuteDuration": int(get("allowed_execute_duration", "0") or 0),
              "QDate": now, "JobStatus": IDLE, "EnteredCurrentStatus": now,
              "_idle_seconds": float(setting.get("idle_seconds", 0)),
              "_suspend": bool(setting.get("suspend"))}
        user_log(ad, "000", "Job submitted from host: <127.0.0.1:9618?fake=1>")
        held = setting.get("hold") or (
            "submitted on hold at user's request"
            if (get("hold", "false") or "").lower() in ("true", "1") else None)
        if held:
            set_status(ad, HELD, HoldReason=held, HoldReasonCode=1 if "hold" in setting else 15)
            user_log(ad, "012", f"Job was held.\n\t{held}")
        save(ad)
    if not held:
        shepherd = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "_shepherd", str(cluster)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        with locked():
            ad = load("queue", cluster)
            if ad is not None:
                ad["_shepherd"] = shepherd.pid
                save(ad)
    print("Submitting job(s).")
    print(f"1 job(s) submitted to cluster {cluster}.")
    return 0


def _number_or_expression(text: str | None):
    """A number as a number; an expression (dask's ``MY.DaskWorkerCores``) as its text."""
    try:
        return int(float(text or 0))
    except ValueError:
        return text


def _classad_value(text: str):
    import classad2

    try:
        value = classad2.ExprTree(text).eval()
    except Exception:  # noqa: BLE001 - not an evaluable literal: keep the expression text
        return text
    return value if isinstance(value, (str, int, float, bool)) else text


# ---- machines: condor_status and matching --------------------------------------------------
def machine_ads() -> list[dict]:
    """The pool's slots: one JSON ad per file in ``machines/`` (a test's startd writes them)."""
    ads = []
    for path in sorted((state_dir() / "machines").glob("*.json")):
        with contextlib.suppress(FileNotFoundError, ValueError):  # a startd leaving mid-read
            ads.append(json.loads(path.read_text()))
    return ads


def _classad(ad: dict):
    """A ClassAd of a JSON ad; ``Requirements`` (text) becomes the expression it spells."""
    import classad2

    out = classad2.ClassAd()
    for key, value in ad.items():
        if key.startswith("_"):
            continue
        if key == "Requirements" and isinstance(value, str):
            value = classad2.ExprTree(value)
        if isinstance(value, (str, int, float, bool, classad2.ExprTree)):
            out[key] = value
    return out


def needs_machine(ad: dict) -> bool:
    """Whether the job's Requirements name a machine attribute (``TARGET.X``): only such jobs
    wait for a machine ad that matches; the others start as before (Requirements recorded)."""
    import classad2

    try:
        refs = _classad(ad).externalRefs(classad2.ExprTree(str(ad.get("Requirements", "true"))))
    except Exception:  # noqa: BLE001 - unparsable: recorded, never matched (as before)
        return False
    return any(r.upper().startswith("TARGET.") for r in refs)


def matching_machine(ad: dict) -> dict | None:
    """The first machine ad whose Requirements and the job's both hold (classad2's own
    symmetric match); a machine ad without Requirements takes any job."""
    job = _classad(ad)
    for machine in machine_ads():
        slot = _classad({"Requirements": "true", **machine})
        if job.symmetricMatch(slot):
            return machine
    return None


def status(argv: list[str]) -> int:
    import classad2

    as_json, attributes, constraint, i = False, None, None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-json":
            as_json = True
        elif arg in ("-attributes", "-attrs", "-af") and i + 1 < len(argv):
            attributes, i = argv[i + 1].split(","), i + 1
        elif arg == "-constraint" and i + 1 < len(argv):
            constraint, i = argv[i + 1], i + 1
        i += 1
    try:
        test = classad2.ExprTree(constraint) if constraint else None
    except Exception as e:  # noqa: BLE001 - HTCondor says the constraint does not parse
        raise Fail(f"Error: Parse error of: {constraint} ({e})") from None
    shown = [public(ad, attributes) for ad in machine_ads()
             if test is None or test.eval(_classad(ad)) is True]
    if as_json:
        if shown:   # nothing at all when no slot matches
            print("[\n" + ",\n".join(json.dumps(ad, indent=2) for ad in shown) + "\n]")
    else:
        print("Name                 OpSys      Arch   State     Activity")
        for ad in shown:
            print(f"{ad.get('Name', '')!s:20} {ad.get('OpSys', 'LINUX')!s:10} "
                  f"{ad.get('Arch', 'X86_64')!s:6} {ad.get('State', 'Unclaimed')!s:9} "
                  f"{ad.get('Activity', 'Idle')}")
    return 0


# ---- the shepherd: idle -> running -> ended (or held) -------------------------------------
def shepherd(cluster: int) -> int:
    ad = load("queue", cluster)
    if ad is None:
        return 0
    time.sleep(ad.get("_idle_seconds", 0))
    host = None
    if needs_machine(ad):   # idle until a slot of the pool matches (or the job is removed)
        while host is None:
            ad = load("queue", cluster)
            if ad is None or ad["JobStatus"] != IDLE:
                return 0
            host = matching_machine(ad)
            if host is None:
                time.sleep(0.2)
    with locked():
        ad = load("queue", cluster)
        if ad is None or ad["JobStatus"] != IDLE:
            return 0
        if host is not None:
            ad["RemoteHost"] = host.get("Name", "slot1@fake")
        env = {"PATH": DEFAULT_PATH, **ad["_env"]}
        try:
            out, err = open(ad["Out"], "wb"), open(ad["Err"], "wb")
            job = subprocess.Popen([ad["Cmd"], *ad["_argv"]], cwd=ad["Iwd"], env=env,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   start_new_session=True)
        except OSError as e:
            set_status(ad, HELD, HoldReasonCode=6, HoldReason=(
                f"Error from slot1@fake: Failed to execute '{ad['Cmd']}': {e.strerror}"))
            user_log(ad, "012", f"Job was held.\n\t{ad['HoldReason']}")
            save(ad)
            return 0
        out.close()
        err.close()
        set_status(ad, RUNNING, JobStartDate=int(time.time()), _job=job.pid)
        user_log(ad, "001", "Job executing on host: <127.0.0.1:9618?fake=1>")
        if ad["_suspend"]:
            os.killpg(job.pid, signal.SIGSTOP)
            set_status(ad, SUSPENDED)
        save(ad)
    started, limit = time.monotonic(), ad["AllowedExecuteDuration"]
    while job.poll() is None:
        if limit and time.monotonic() - started > limit:
            return _hold_for_duration(cluster, job, limit)
        time.sleep(0.1)
    with locked():
        ad = load("queue", cluster)
        if ad is None:
            return 0
        if ad["JobStatus"] == REMOVED:   # condor_rm ended it: the removal is its record
            retire(ad)
            return 0
        by_signal = job.returncode < 0
        set_status(ad, COMPLETED, CompletionDate=int(time.time()), ExitBySignal=by_signal,
                   **({"ExitSignal": -job.returncode} if by_signal
                      else {"ExitCode": job.returncode}))
        user_log(ad, "005", "Job terminated.\n\t(1) Normal termination (return value "
                 f"{job.returncode})" if not by_signal else
                 f"Job terminated.\n\t(0) Abnormal termination (signal {-job.returncode})")
        retire(ad)
    return 0


def _hold_for_duration(cluster: int, job: subprocess.Popen, limit: int) -> int:
    _stop(job.pid)
    job.wait()
    with locked():
        ad = load("queue", cluster)
        if ad is not None and ad["JobStatus"] in (RUNNING, SUSPENDED):
            spent = time.strftime("%H:%M:%S", time.gmtime(limit))
            ad.pop("_job", None)
            set_status(ad, HELD, HoldReasonCode=47, HoldReasonSubCode=0,
                       HoldReason=f"The job exceeded allowed execute duration of {spent}")
            user_log(ad, "012", f"Job was held.\n\t{ad['HoldReason']}\n\tCode 47 Subcode 0")
            save(ad)
    return 0


def _stop(pgid: int, grace: float = 2.0) -> None:
    """SIGCONT (a suspended job must see its SIGTERM), SIGTERM, then SIGKILL after ``grace``."""
    for sig in (signal.SIGCONT, signal.SIGTERM):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# ---- condor_rm ------------------------------------------------------------------------------
def rm(argv: list[str]) -> int:
    ids = [a for a in argv if not a.startswith("-")]
    if not ids:
        raise Fail("ERROR: condor_rm needs a cluster or cluster.proc id")
    failed = False
    for job_id in ids:
        cluster, _, proc = job_id.partition(".")
        ad = None
        with locked():
            ad = load("queue", int(cluster)) if cluster.isdigit() and proc in ("", "0") \
                else None
            if ad is not None and ad["JobStatus"] != REMOVED:
                set_status(ad, REMOVED, RemoveReason=f"via condor_rm (by user "
                                                     f"{getpass.getuser()})")
                user_log(ad, "009", f"Job was aborted.\n\t{ad['RemoveReason']}")
                if "_job" in ad:
                    save(ad)     # its shepherd retires it once the program is gone
                else:
                    retire(ad)
        if ad is None:
            print(f"Couldn't find/remove all jobs matching constraint (ClusterId=={cluster}"
                  f"{' && ProcId==' + proc if proc else ''})", file=sys.stderr)
            failed = True
            continue
        if "_job" in ad:
            _stop(ad["_job"])
        print(f"Job {cluster}.0 marked for removal" if proc else
              f"All jobs in cluster {cluster} have been marked for removal")
    return 1 if failed else 0


# ---- condor_q / condor_history ------------------------------------------------------------
def query(where: str, argv: list[str]) -> int:
    import classad2

    as_json, attributes, ids, limit, constraint, i = False, None, [], None, None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-json":
            as_json = True
        elif arg in ("-attributes", "-attrs") and i + 1 < len(argv):
            attributes, i = argv[i + 1].split(","), i + 1
        elif arg in ("-limit", "-match") and i + 1 < len(argv):
            limit, i = int(argv[i + 1]), i + 1
        elif arg == "-constraint" and i + 1 < len(argv):
            constraint, i = argv[i + 1], i + 1
        elif arg.startswith("-"):
            pass  # -allusers, -nobatch ...: the fake shows every job of the state folder
        else:
            ids.append(arg)
        i += 1
    with locked():
        ads = [json.loads(p.read_text()) for p in (state_dir() / where).glob("*.json")]
    ads.sort(key=lambda ad: ad["ClusterId"], reverse=where == "history")

    try:
        test = classad2.ExprTree(constraint) if constraint else None
    except Exception as e:  # noqa: BLE001 - HTCondor says the constraint does not parse
        raise Fail(f"Error: Parse error of: {constraint} ({e})") from None

    def wanted(ad: dict) -> bool:
        if test is not None and test.eval(_classad(ad)) is not True:
            return False
        return not ids or any(i in (str(ad["ClusterId"]), f"{ad['ClusterId']}.0") for i in ids)

    shown = [public(ad, attributes) for ad in ads if wanted(ad)][:limit]
    if as_json:
        if shown:   # HTCondor prints nothing at all when no job matches
            print("[\n" + ",\n".join(json.dumps(ad, indent=2) for ad in shown) + "\n]")
    else:
        letters = {IDLE: "I", RUNNING: "R", REMOVED: "X", COMPLETED: "C", HELD: "H",
                   SUSPENDED: "S"}
        print(" ID      OWNER            ST  CMD")
        for ad in shown:
            print(f" {ad.get('ClusterId')}.0  {ad.get('Owner', ''):16} "
                  f"{letters.get(ad.get('JobStatus'), '?')}   {ad.get('Cmd', '')}")
    return 0


COMMANDS = {"submit": submit, "q": lambda a: query("queue", a),
            "history": lambda a: query("history", a), "rm": rm, "status": status}


def main(command: str, argv: list[str]) -> int:
    try:
        if command == "_shepherd":
            return shepherd(int(argv[0]))
        record(command, argv)
        return COMMANDS[command](argv)
    except Fail as e:
        print(str(e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))

"""Users' Dask clusters with the embedded 'local' backend (worker processes inside the user's
server), run as the user's own account: the per-user limits hold over all of a user's clusters
(a notebook and the plotting app each have one) and a request beyond them gets a sentence; the
dashboard is reached through the user's Jupyter server (jupyter-server-proxy) with the server's
login and not without; the admin's settings are checked at start with sentences naming the
setting, and ``python -m dask_clusters`` documents every one of them."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.test_dask_support import DaskUser, dask_account, processes_of, wait_until

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parent.parent
LOCAL = dict(backend="local", worker_memory="256 MiB", worker_cores=1, user_max_workers=3,
             user_max_cores=8, user_max_memory="4 GiB")

HOLD_UNTIL_TOLD = """
    while not os.path.exists(os.path.expanduser("~/done")):   # the test says when the server stops
        time.sleep(0.1)
"""


@pytest.fixture
def user(local_accounts, shared_tmp):
    require_root()
    u = DaskUser(dask_account(local_accounts), shared_tmp, local_accounts.python_env)
    yield u
    u.remove()


def test_a_request_beyond_the_users_limits_is_refused_with_a_sentence(user):
    user.settings(**LOCAL)
    notebook = user.start("""
    from dask_clusters import LimitExceeded, get_cluster
    cluster = get_cluster(2)
    cluster.wait_for_workers(2, timeout=60)
    report(step="two", answer=cluster.client.submit(sum, [1, 2]).result())
    try:
        cluster.scale(4)
    except LimitExceeded as e:
        report(step="four refused", said=str(e), ready=cluster.manager.ready_workers())
    """ + HOLD_UNTIL_TOLD)
    try:
        assert notebook.expect("two", timeout=90)["answer"] == 3
        four = notebook.expect("four refused")
        assert four["said"].startswith("You asked for 4 workers, 4 cores and 1.00 GiB; your limit "
                                       "is 3 workers, 8 cores and 4.00 GiB at once."), four
        assert four["ready"] == 2, "a refused request changes nothing"
        # the plotting app of the same user, while the notebook's cluster holds two workers
        app = user.run("""
        from dask_clusters import LimitExceeded, get_cluster
        try:
            get_cluster(2)
        except LimitExceeded as e:
            report(step="refused", said=str(e))
        cluster = get_cluster(1)
        cluster.wait_for_workers(1, timeout=60)
        report(step="one", answer=cluster.client.submit(sum, [2, 3]).result())
        """, timeout=120)
        said = next(line["said"] for line in app if line["step"] == "refused")
        assert "Your other Dask clusters already hold 2 workers, 2 cores and 512.00 MiB." in said
        assert said.endswith("Ask for at most 1 worker, or close another cluster first."), said
        assert next(line["answer"] for line in app if line["step"] == "one") == 5
        user.write("done", "")
        notebook.wait(60)
    finally:
        notebook.kill()
    wait_until(lambda: not processes_of(user.account.name), 30,
               lambda: f"no worker is left running (left: {processes_of(user.account.name)})")
    assert not list((user.home / ".nebulahub/dask/clusters").glob("*.json")), "ledgers removed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=20) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except urllib.error.URLError as e:   # not listening yet
        return 0, str(e.reason)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect to the login page is the answer
        return None


def test_the_dashboard_is_reached_through_the_users_server_with_its_login_only(user):
    user.settings(**LOCAL)
    prefix = f"/user/{user.account.name}/"
    owner = user.start("""
    from dask_clusters import get_cluster
    cluster = get_cluster(1)
    cluster.wait_for_workers(1, timeout=60)
    report(step="link", link=cluster.dashboard_link, shown=cluster._repr_html_())
    """ + HOLD_UNTIL_TOLD, JUPYTERHUB_SERVICE_PREFIX=prefix)
    port, token = _free_port(), secrets.token_hex(16)
    env = {"HOME": str(user.home), "USER": user.account.name, "PATH": f"{user.python_env}/bin:/usr/bin:/bin",
           "JUPYTER_RUNTIME_DIR": str(user.home / ".jupyter-runtime"), "LANG": "C.UTF-8"}
    server = subprocess.Popen(
        [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user.account.name, "--", "/usr/bin/env",
         *(f"{k}={v}" for k, v in env.items()), f"{user.python_env}/bin/jupyter", "server", "--no-browser",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--ServerApp.base_url={prefix}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={user.home}"],
        cwd=str(user.home), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        link = owner.expect("link", timeout=90)
        assert link["link"].startswith(f"{prefix}proxy/") and link["link"].endswith("/status"), link
        assert f"href='{link['link']}'" in link["shown"], "the notebook's view links it"
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(f"{base}{prefix}api/status", token)[0] == 200, 60, "the user's server answers")
        status, page = _get(base + link["link"], token)
        assert status == 200 and "Dask" in page, (status, page[:500])
        status, listing = _get(base + link["link"].replace("/status", "/individual-plots.json"), token)
        assert status == 200 and "Individual Task Stream" in json.loads(listing), listing[:300]
        for who in (None, secrets.token_hex(16)):   # nobody else: no login, or another's token
            status, _ = _get(base + link["link"], who)
            assert status in (302, 403), status
        user.write("done", "")
        owner.wait(60)
    finally:
        owner.kill()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(5)


def test_the_admins_settings_are_checked_at_start_with_the_setting_named(user):
    user.settings(backend="slurm", scheduler_interface="nh-nosuch0")
    broken = user.write("broken-settings.py", "c.DaskClusters.worker_cores = (\n")
    lines = user.run(f"""
    from dask_clusters import ClusterError, get_cluster, load_config
    for name, kw in (("interface", None),   # the admin's file as it is
                     ("contact", dict(scheduler_interface="", scheduler_host="127.0.0.1",
                                      scheduler_contact_address="login1.example.org")),
                     ("walltime", dict(worker_walltime="90 minutes")),
                     ("memory", dict(worker_memory="lots")),
                     ("too big", dict(worker_cores=16, user_max_cores=8)),
                     ("broken file", dict(path={str(broken)!r}))):
        try:
            get_cluster(settings=load_config(**kw) if kw is not None else None)
        except ClusterError as e:
            report(step=name, said=type(e).__name__ + ": " + str(e))
        else:
            report(step=name, said="started")
    """, timeout=60)
    said = {line["step"]: line["said"] for line in lines}
    assert said["interface"].startswith("ConfigProblem: The network interface 'nh-nosuch0' "
                                        "(DaskClusters.scheduler_interface) does not exist on this "
                                        "machine; it has: "), said
    assert " lo" in said["interface"]
    assert "DaskClusters.worker_walltime = '90 minutes' is not a wall time" in said["walltime"]
    assert "scheduler_contact_address = 'login1.example.org' must be 'host:port'" in said["contact"]
    assert "DaskClusters.worker_memory = 'lots' is not an amount of memory" in said["memory"]
    assert "One worker has 16 cores (DaskClusters.worker_cores), more than a user may hold" in said["too big"]
    assert said["broken file"].startswith(f"ConfigProblem: The Dask settings file {broken} is broken"), said
    assert not processes_of(user.account.name), "nothing was started"


def test_every_setting_is_documented_and_the_values_in_force_are_shown(tmp_path):
    settings = tmp_path / "dask.py"
    settings.write_text("c.DaskClusters.backend = 'htcondor'\nc.DaskClusters.user_max_workers = 6\n")
    env = dict(os.environ, NEBULAHUB_DASK_CONFIG=str(settings), PYTHONPATH=str(PROJECT))
    helped = subprocess.run([sys.executable, "-m", "dask_clusters", "--help-all"], capture_output=True,
                            text=True, env=env, timeout=60, check=True).stdout
    from dask_clusters import DaskClusters

    for name, trait in DaskClusters.class_own_traits(config=True).items():
        assert f"--DaskClusters.{name}=" in helped and trait.help, name
    assert "Workers one user may have at once, over all" in helped
    shown = subprocess.run([sys.executable, "-m", "dask_clusters", "show-config"], capture_output=True,
                           text=True, env=env, timeout=60, check=True).stdout
    assert f"# from {settings}" in shown
    assert "c.DaskClusters.backend = 'htcondor'" in shown and "c.DaskClusters.user_max_workers = 6" in shown
    assert "c.DaskClusters.adapt_cooldown = 60.0" in shown


def readme_example() -> str:
    """The notebook example of the README (the python block after its marker)."""
    text = (PROJECT / "README.md").read_text()
    after = text.split("<!-- dask-notebook-example", 1)[1]
    block = after.split("```python\n", 1)[1].split("```", 1)[0]
    return "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())


def test_the_readmes_notebook_example_runs_on_the_cluster(user):
    user.settings(**LOCAL, adapt_interval=0.5)
    user.write("example.py", readme_example())
    prefix = f"/user/{user.account.name}/"
    lines = user.run("""
    import contextlib, io
    import dask
    from dask.callbacks import Callback

    class Local(Callback):   # dask's own schedulers call it; the cluster's never does
        runs = 0
        def _start(self, dsk):
            Local.runs += 1

    out, names = io.StringIO(), {}
    with Local(), contextlib.redirect_stdout(out):
        exec(compile(open(os.path.expanduser("~/example.py")).read(), "README", "exec"), names)
        on_cluster = Local.runs
        after = names["x"].sum().compute()   # closed: back to dask's own scheduler
    report(step="ran", out=out.getvalue().splitlines(), on_cluster=on_cluster, after_close=Local.runs,
           closed=names["cluster"].manager.closed_because)
    """, timeout=120, JUPYTERHUB_SERVICE_PREFIX=prefix)
    ran = next(line for line in lines if line["step"] == "ran")
    out = ran["out"]
    assert out[0].startswith(f"{prefix}proxy/") and out[0].endswith("/status"), out
    assert out[1] == "0.5", out
    assert out[2].startswith("Dask cluster on processes in your server: 2 of 2 workers ready"), out
    assert any(line.startswith("Dashboard: " + prefix) for line in out), out
    assert ran["on_cluster"] == 0, "the example's .compute() ran on the cluster, not in the kernel"
    assert ran["after_close"] == 1 and ran["closed"] == "you closed it"
    wait_until(lambda: not processes_of(user.account.name), 30,
               lambda: f"no worker is left running (left: {processes_of(user.account.name)})")


def test_an_idle_cluster_closes_by_itself_and_leaves_no_worker(user):
    user.settings(**LOCAL, idle_timeout=3.0, poll_interval=0.5)
    lines = user.run("""
    from dask_clusters import ClusterUnavailable, get_cluster
    cluster = get_cluster(1)
    cluster.wait_for_workers(1, timeout=60)
    answer = cluster.client.submit(sum, [4, 5]).result()
    started = time.monotonic()
    while cluster.running and time.monotonic() - started < 30:
        time.sleep(0.2)
    try:
        cluster.scale(1)
    except ClusterUnavailable as e:
        said = str(e)
    report(step="idle", answer=answer, after=time.monotonic() - started, said=said,
           again=get_cluster(1).running)   # a later request starts a new one
    """, timeout=90)
    idle = next(line for line in lines if line["step"] == "idle")
    assert idle["answer"] == 9 and 3.0 <= idle["after"] < 10, idle
    assert idle["said"] == "The cluster was closed (nothing was computed for 3 seconds).", idle
    assert idle["again"] is True
    wait_until(lambda: not processes_of(user.account.name), 30,
               lambda: f"no worker is left running (left: {processes_of(user.account.name)})")

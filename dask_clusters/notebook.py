"""The notebook API: the admin-configured, limit-respecting cluster of this server in one line.

::

    from dask_clusters import get_cluster
    cluster = get_cluster()          # adaptive between the admin's bounds, within your limits
    client = cluster.client          # a distributed.Client (TLS when the admin keeps it on);
                                     # from then on .compute() runs on the cluster
    cluster                          # shows workers, the dashboard link, what happened to jobs
    cluster.scale(2)                 # or hold two workers; beyond your limits: a sentence
    cluster.close()                  # or let it close when idle / when your server stops

One cluster per process (kernel): calling :func:`get_cluster` again gives the same one while it
runs, rescaled if asked.
"""
from __future__ import annotations

import html
import threading
import time

from .config import DaskClusters

_CURRENT = None
_LOCK = threading.Lock()


class NebulaCluster:
    """What :func:`get_cluster` returns: the cluster, its client and its dashboard."""

    def __init__(self, manager):
        self.manager = manager

    @property
    def client(self):
        """The cluster's ``distributed.Client``; from the first use on, ``.compute()`` of any dask
        collection in this kernel runs on the cluster (until it closes)."""
        # the process's default client (a notebook kernel's; the plotting app uses the manager's)
        self.manager.client_is_default = True
        return self.manager.client

    @property
    def dashboard_link(self) -> str:
        return self.manager.dashboard_link

    @property
    def backend(self) -> str:
        return self.manager.name

    def scale(self, n: int) -> None:
        """Hold ``n`` workers."""
        self.manager.scale(n)

    def adapt(self, minimum: int | None = None, maximum: int | None = None) -> tuple[int, int]:
        """Grow and shrink with the work between ``minimum`` and ``maximum`` workers."""
        return self.manager.adapt(minimum, maximum)

    def wait_for_workers(self, n: int = 1, timeout: float | None = None) -> None:
        """Block until ``n`` workers are ready (a sentence if they cannot start)."""
        self.manager.wait_for_workers(n, timeout)

    def close(self) -> None:
        self.manager.close("you closed it")   # its client stops being the default

    @property
    def running(self) -> bool:
        return self.manager.closed_because is None and self.manager.failure is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _lines(self) -> list[str]:
        st = self.manager.status()
        where = {"local": "processes in your server", "slurm": "SLURM jobs",
                 "htcondor": "HTCondor jobs"}.get(st.backend, st.backend)
        lines = [f"Dask cluster on {where}: {st.ready} of {st.requested} workers ready"
                 + (f", adaptive {st.adaptive[0]}..{st.adaptive[1]}" if st.adaptive else "")]
        if st.closed:
            lines.append(f"Closed: {st.closed}.")
        elif st.failure:
            lines.append(f"Unavailable: {st.failure}")
        lines.append(f"Scheduler: {st.scheduler}")
        return lines

    def __repr__(self) -> str:
        st = self.manager.status()
        text = self._lines() + [f"Dashboard: {st.dashboard_link}"]
        text += [f"  {time.strftime('%H:%M:%S', time.localtime(e.when))} {e.text}"
                 for e in st.events[-5:]]
        return "\n".join(text)

    def _repr_html_(self) -> str:
        st = self.manager.status()
        rows = "".join(f"<div>{html.escape(line)}</div>" for line in self._lines())
        link = html.escape(st.dashboard_link, quote=True)
        events = "".join(
            f"<li>{time.strftime('%H:%M:%S', time.localtime(e.when))} {html.escape(e.text)}</li>"
            for e in st.events[-5:])
        return (f"<div class='nebulahub-dask'>{rows}<div>Dashboard: <a href='{link}' "
                f"target='_blank'>{link}</a></div><ul>{events}</ul></div>")


def get_cluster(workers: int | None = None, *, minimum: int | None = None,
                maximum: int | None = None, settings: DaskClusters | None = None
                ) -> NebulaCluster:
    """This server's cluster, started if needed: ``workers`` fixed, else adaptive between
    ``minimum`` and ``maximum`` (default: the admin's bounds). Sentences, never tracebacks, for
    what the user can fix: :class:`~dask_clusters.errors.LimitExceeded`,
    :class:`~dask_clusters.errors.ConfigProblem`, :class:`~dask_clusters.errors.ClusterUnavailable`."""
    global _CURRENT
    from .managers import manager_for

    with _LOCK:
        handle = _CURRENT
        if handle is None or not handle.running:
            handle = NebulaCluster(manager_for(settings).start())
            _CURRENT = handle
            fresh = True
        else:
            fresh = False
        try:
            if workers is not None:
                handle.scale(workers)
            elif fresh or minimum is not None or maximum is not None:
                handle.adapt(minimum, maximum)
        except BaseException:
            if fresh:
                handle.close()
                _CURRENT = None
            raise
        return handle

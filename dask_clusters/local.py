"""Workers as processes inside the user's server: distributed's ``LocalCluster``.

The embedded default: nothing to submit, nothing to wait for. The workers share the server's
cores and memory, so the user's limits apply to them as to batch workers.
"""
from __future__ import annotations

from .base import ClusterManager


class LocalManager(ClusterManager):
    name = "local"
    label = "this server"
    runs_jobs = False

    def make_cluster(self, common: dict):
        from distributed import LocalCluster

        options = common["scheduler_options"]
        return LocalCluster(
            n_workers=0, processes=True, threads_per_worker=self.settings.worker_cores,
            memory_limit=self.settings.worker_memory_bytes, host=options["host"],
            scheduler_port=options["port"], dashboard_address=options["dashboard_address"],
            protocol=options["protocol"], security=common["security"],
            death_timeout=common["death_timeout"], silence_logs=False,
            local_directory=self.settings.worker_local_directory or None)

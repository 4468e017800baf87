"""Per-user limits on workers, cores and memory, over all of a user's clusters.

dask-jobqueue has no notion of a user's share (dask-gateway has, with a central server); here
each cluster records how many workers it may grow to (:mod:`dask_clusters.ledger`) and a new
request is measured against the admin's limits minus what the user's other live clusters
(another notebook, the plotting app) have claimed. A request beyond them is refused with a
sentence giving both; an adaptive maximum is lowered to what is left, and said so.

These limits keep NebulaHub's own clusters within the admin's share. They are not a security
boundary (a user with a terminal can run sbatch): hard limits belong to the batch system (SLURM
QOS and association limits, HTCondor group quotas).
"""
from __future__ import annotations

from dataclasses import dataclass

from dask.utils import format_bytes

from .config import DaskClusters, parse_memory
from .errors import LimitExceeded
from .ledger import live_records


@dataclass(frozen=True)
class Usage:
    """Workers, cores and bytes of memory."""

    workers: int = 0
    cores: int = 0
    memory: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.workers + other.workers, self.cores + other.cores,
                     self.memory + other.memory)

    def describe(self) -> str:
        return (f"{self.workers} worker{'s' if self.workers != 1 else ''}, {self.cores} "
                f"core{'s' if self.cores != 1 else ''} and {format_bytes(self.memory)}")


@dataclass(frozen=True)
class UserLimits:
    """The admin's per-user limits and the size of one worker."""

    max_workers: int
    max_cores: int
    max_memory: int
    worker_cores: int
    worker_memory: int

    @classmethod
    def of(cls, settings: DaskClusters) -> "UserLimits":
        return cls(settings.user_max_workers, settings.user_max_cores,
                   parse_memory(settings.user_max_memory, "DaskClusters.user_max_memory"),
                   settings.worker_cores, settings.worker_memory_bytes)

    def usage(self, workers: int) -> Usage:
        return Usage(workers, workers * self.worker_cores, workers * self.worker_memory)

    @property
    def total(self) -> Usage:
        return Usage(self.max_workers, self.max_cores, self.max_memory)

    def elsewhere(self, cluster_id: str | None) -> Usage:
        """What the user's other live clusters have claimed."""
        used = Usage()
        for record in live_records(skip=cluster_id):
            claim = record.get("claim", {})
            used = used + Usage(int(claim.get("workers", 0)), int(claim.get("cores", 0)),
                                int(claim.get("memory", 0)))
        return used

    def most_workers(self, cluster_id: str | None = None) -> int:
        """The most workers one more cluster (or ``cluster_id``) may have now."""
        other = self.elsewhere(cluster_id)
        return max(0, min(self.max_workers - other.workers,
                          (self.max_cores - other.cores) // self.worker_cores,
                          (self.max_memory - other.memory) // self.worker_memory))

    def check(self, workers: int, cluster_id: str | None = None) -> None:
        """:class:`LimitExceeded` if ``workers`` workers do not fit the user's limits."""
        if workers <= self.most_workers(cluster_id):
            return
        asked, other = self.usage(workers), self.elsewhere(cluster_id)
        busy = (f" Your other Dask clusters already hold {other.describe()}."
                if other.workers else "")
        room = self.most_workers(cluster_id)
        raise LimitExceeded(f"You asked for {asked.describe()}; your limit is "
                            f"{self.total.describe()} at once.{busy} Ask for at most "
                            f"{room} worker{'s' if room != 1 else ''}"
                            f"{', or close another cluster first' if other.workers else ''}.")

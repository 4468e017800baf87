"""``python -m dask_clusters --help-all`` (every setting with its help) and
``python -m dask_clusters show-config`` (the values a server would use now)."""
from __future__ import annotations

import sys

from traitlets.config import Application

from .config import DaskClusters, config_file, load_config
from .errors import ClusterError


class DaskClustersApp(Application):
    name = "dask_clusters"
    description = ("Users' Dask clusters. Settings live in /etc/nebulahub/dask.py or the file "
                   "named by $NEBULAHUB_DASK_CONFIG, as c.DaskClusters.<setting> = value.")
    classes = [DaskClusters]

    def start(self):
        if self.extra_args[:1] == ["show-config"]:
            try:
                settings = load_config()
            except ClusterError as e:
                print(e, file=sys.stderr)
                self.exit(1)
            print(f"# from {config_file() or 'defaults (no settings file)'}")
            for name in sorted(settings.class_own_traits(config=True)):
                print(f"c.DaskClusters.{name} = {getattr(settings, name)!r}")
            return
        self.print_help()


if __name__ == "__main__":
    DaskClustersApp.launch_instance()

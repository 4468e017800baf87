"""jupyter-server-proxy registration of the plot app (entry point ``nebulahub-plot`` in setup.cfg).

The app then lives at ``/user/<name>/nebulahub-plot/`` behind the single-user server's login and
shows as "Plot data" in the JupyterLab launcher. A profile can make it the landing page by setting
the spawner's ``default_url`` to ``/nebulahub-plot/`` (e.g. for a "Student" profile).
The Panel server listens on a Unix socket jupyter-server-proxy makes in a private folder, never on
a TCP port: only the user's authenticated server can reach it (see :mod:`panel_apps.launcher`).
Admin knobs reach the app as environment variables, see :mod:`panel_apps.config`.
"""
from __future__ import annotations

import sys
from pathlib import Path

ICON = Path(__file__).with_name("plot-icon.svg")


def setup_plot_app() -> dict:
    """The server process description jupyter-server-proxy expects."""
    return {
        "command": [sys.executable, "-m", "panel_apps.launcher", "--unix-socket", "{unix_socket}",
                    "--prefix", "{base_url}nebulahub-plot"],
        "unix_socket": True,
        # keep the prefix in forwarded paths: the Panel server is started with the same --prefix
        "absolute_url": True,
        "timeout": 60,
        "new_browser_tab": True,
        "launcher_entry": {"enabled": True, "title": "Plot data", "icon_path": str(ICON), "category": "Notebook"},
    }

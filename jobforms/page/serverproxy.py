"""jupyter-server-proxy registration of the Jobs page (entry point ``nebulahub-jobs`` in setup.cfg).

The page then lives at ``/user/<name>/nebulahub-jobs/`` behind the single-user server's login and
shows as "Jobs" in the JupyterLab launcher; the hub's home page links to it, and the jobs
service's own address (``/services/nebulahub-jobs/``, in the hub's Services menu) redirects to it.
The Panel server listens on a Unix socket in a private folder (see :mod:`.launcher`).
"""
from __future__ import annotations

import sys
from pathlib import Path

ICON = Path(__file__).with_name("jobs-icon.svg")
PATH = "nebulahub-jobs"


def setup_jobs_page() -> dict:
    """The server process description jupyter-server-proxy expects."""
    return {
        "command": [sys.executable, "-m", "jobforms.page.launcher", "--unix-socket", "{unix_socket}",
                    "--prefix", "{base_url}" + PATH],
        "unix_socket": True,
        # keep the prefix in forwarded paths: the Panel server is started with the same --prefix
        "absolute_url": True,
        "timeout": 60,
        "new_browser_tab": True,
        "launcher_entry": {"enabled": True, "title": "Jobs", "icon_path": str(ICON),
                           "category": "Notebook"},
    }

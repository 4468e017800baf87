"""Start the Jobs page's Panel server: ``python -m jobforms.page.launcher --unix-socket PATH
--prefix /user/x/nebulahub-jobs``.

As for the plotting app (:mod:`panel_apps.launcher`), jupyter-server-proxy runs this with a Unix
socket in a private folder and forwards requests with their full prefix; the page is reachable only
through the user's authenticated server: no TCP port, websockets only from the hub's public origins
(``$NEBULAHUB_PUBLIC_ORIGINS``), signed Bokeh session ids with a secret made for this launch.
"""
from __future__ import annotations

import sys

from panel_apps.launcher import serve_private


def main(argv: list[str] | None = None) -> int:
    from .app import create_page

    return serve_private(create_page, argv, prog="python -m jobforms.page.launcher", title="Jobs",
                         example_prefix="/user/alice/nebulahub-jobs")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

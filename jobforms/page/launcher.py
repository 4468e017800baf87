"""Start the Jobs page's Panel server: ``python -m jobforms.page.launcher --unix-socket PATH
--prefix /user/x/nebulahub-jobs``.

As for the plotting app (:mod:`panel_apps.launcher`), jupyter-server-proxy runs this with a Unix
socket in a private folder and forwards requests with their full prefix; the page is reachable only
through the user's authenticated server: no TCP port, websockets only from the hub's public origins
(``$NEBULAHUB_PUBLIC_ORIGINS``), signed Bokeh session ids with a secret made for this launch.
"""
from __future__ import annotations

import argparse
import logging
import secrets
import sys

import panel as pn

from panel_apps.launcher import allowed_origins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobforms.page.launcher")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix-socket", help="listen on this Unix socket (what the hub uses)")
    where.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT (development only)")
    parser.add_argument("--prefix", default="", help="URL prefix, e.g. /user/alice/nebulahub-jobs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .app import create_page
    prefix = "/" + args.prefix.strip("/") if args.prefix.strip("/") else ""
    listen = ({"unix_socket": args.unix_socket} if args.unix_socket
              else {"port": args.port, "address": "127.0.0.1"})
    origins = allowed_origins() or ([f"127.0.0.1:{args.port}", f"localhost:{args.port}"] if args.port else [])
    if args.unix_socket and not origins:
        logging.getLogger(__name__).warning(
            "No public origin of the hub is known (NEBULAHUB_PUBLIC_ORIGINS): browsers cannot "
            "open the page's websocket. Set JupyterHub.public_url.")
    pn.serve({"/": create_page}, prefix=prefix, websocket_origin=origins, show=False, start=True,
             title="Jobs", sign_sessions=True, secret_key=secrets.token_urlsafe(32), **listen)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

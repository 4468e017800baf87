"""Start the plot app's Panel server: ``python -m panel_apps.launcher --port N --prefix /user/x/nebulahub-plot``.

jupyter-server-proxy runs this (see :mod:`panel_apps.serverproxy`) with the port it picked and
the full URL prefix, and forwards requests *without* stripping the prefix (``absolute_url``), so
Bokeh's static files and websocket live under the same ``/user/<name>/nebulahub-plot/`` path the
browser uses. Listening only on 127.0.0.1 keeps the app behind the Jupyter server's login; that
is also why any websocket origin may be accepted (the public host name is not known here).
Numba kernels are compiled in a background thread right after start-up, so the page appears
immediately and the first rasterized plot does not pay the compile time.
"""
from __future__ import annotations

import argparse
import logging
import sys

import panel as pn


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m panel_apps.launcher")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--prefix", default="", help="URL prefix, e.g. /user/alice/nebulahub-plot")
    parser.add_argument("--no-warm", action="store_true", help="skip the numba warm-up (tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .app import create_app
    from .render import start_warm_up

    if not args.no_warm:
        start_warm_up()
    prefix = "/" + args.prefix.strip("/") if args.prefix.strip("/") else ""
    pn.serve({"/": create_app}, port=args.port, address=args.address, prefix=prefix,
             websocket_origin="*", show=False, start=True, title="Plot data",
             websocket_max_message_size=64 * 1024 * 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

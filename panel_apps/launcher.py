"""Start the plot app's Panel server: ``python -m panel_apps.launcher --unix-socket PATH --prefix /user/x/nebulahub-plot``.

jupyter-server-proxy runs this (see :mod:`panel_apps.serverproxy`) with a Unix socket in a
private temporary folder and the full URL prefix, and forwards requests *without* stripping the
prefix (``absolute_url``), so Bokeh's static files and websocket live under the same
``/user/<name>/nebulahub-plot/`` path the browser uses.

The app is reachable only through the user's authenticated single-user server: the socket is
0600 in a 0700 folder (no other account can connect), there is no TCP port any local process
could reach, websockets are accepted only from the hub's public origins
(``$NEBULAHUB_PUBLIC_ORIGINS``, set by the spawner), and Bokeh session ids are signed with a
secret made for this launch, so a self-made session token is refused.
Nothing is compiled at start-up and nothing heavy is imported before the page shows: the first
rasterized frame is aggregated without JIT (see :mod:`panel_apps.aggregate`), and Datashader's
kernels are compiled in the background after it, for the frames that follow.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import secrets
import sys

import panel as pn


def allowed_origins() -> list[str]:
    """``host:port`` origins the browser may open the app's websocket from."""
    return [o for o in os.environ.get("NEBULAHUB_PUBLIC_ORIGINS", "").split() if o]


def serve_private(create, argv: list[str] | None, *, prog: str, title: str, example_prefix: str,
                  configure=None, **serve_options) -> int:
    """Serve the page ``create`` makes the way every NebulaHub page in a user's server is served:
    on the Unix socket jupyter-server-proxy gives (``--port`` for development only), under the
    full prefix, websockets only from the hub's public origins, session ids signed with a secret
    made for this launch. ``configure(parser)`` adds a page's own arguments."""
    parser = argparse.ArgumentParser(prog=prog)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix-socket", help="listen on this Unix socket (what the hub uses)")
    where.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT (development only)")
    parser.add_argument("--prefix", default="", help=f"URL prefix, e.g. {example_prefix}")
    if configure is not None:
        configure(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    prefix = "/" + args.prefix.strip("/") if args.prefix.strip("/") else ""
    listen = ({"unix_socket": args.unix_socket} if args.unix_socket
              else {"port": args.port, "address": "127.0.0.1"})
    origins = allowed_origins() or ([f"127.0.0.1:{args.port}", f"localhost:{args.port}"] if args.port else [])
    if args.unix_socket and not origins:
        logging.getLogger(__name__).warning(
            "No public origin of the hub is known (NEBULAHUB_PUBLIC_ORIGINS): browsers cannot "
            "open the page's websocket. Set JupyterHub.public_url.")
    # signed session ids (a secret made for this launch): only sessions this server made can
    # open a websocket
    pn.serve({"/": create}, prefix=prefix, websocket_origin=origins, show=False, start=True,
             title=title, sign_sessions=True, secret_key=secrets.token_urlsafe(32),
             **serve_options, **listen)
    return 0


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = 64 << 20  # freed heap memory a plot server keeps for the next frame
MMAP_FROM_BYTES = 16 << 20  # blocks from this size are mapped apart (and unmapped when freed)


def keep_freed_memory() -> bool:
    """Let glibc keep up to :data:`KEEP_FREED_BYTES` of freed memory for the next allocations.

    Every zoom allocates and frees a few MB-sized arrays (counts, colours, hover numbers). By
    default glibc hands such blocks back to the kernel as soon as ~2x the largest recently freed
    block is free, so the next frame faults every page in again: on this machine's VMs that was
    ~1 ms per 2 MB array and 10-20 ms of a zoom. Blocks under :data:`MMAP_FROM_BYTES` now come from
    the heap, which is trimmed only above :data:`KEEP_FREED_BYTES`; a big table's columns are
    memory-mapped files and not affected. False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_FROM_BYTES)
                    and libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until stopped."""
    from . import gcsettle
    from .app import create_app

    keep_freed_memory()
    gcsettle.freeze_start_up()  # the imports' objects: no full collection walks them again

    def no_warm(parser):
        parser.add_argument("--no-warm", action="store_true",
                            help="accepted for compatibility: nothing is compiled at start-up any more")

    return serve_private(create_app, argv, prog="python -m panel_apps.launcher", title="Plot data",
                         example_prefix="/user/alice/nebulahub-plot", configure=no_warm,
                         websocket_max_message_size=64 * 1024 * 1024)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

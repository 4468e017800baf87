"""jupyter-server-proxy registration of the plot app (entry point ``nebulahub-plot`` in setup.cfg).

The app then lives at ``/user/<name>/nebulahub-plot/`` behind the single-user server's login and
shows as "Plot data" in the JupyterLab launcher. A profile can make it the landing page by setting
the spawner's ``default_url`` to ``/nebulahub-plot/`` (e.g. for a "Student" profile).
The Panel server listens on a Unix socket jupyter-server-proxy makes in a private folder, never on
a TCP port: only the user's authenticated server can reach it (see :mod:`panel_apps.launcher`).
Admin knobs reach the app as environment variables, see :mod:`panel_apps.config`.

Closing a browser tab must not print a traceback in the server's log: jupyter-server-proxy
relays every message the app still sends to the tab's websocket without asking whether the tab
has gone, and tornado raises (and logs) ``WebSocketClosedError`` for each. Registering the app
makes the proxy drop such messages quietly (:func:`drop_messages_for_closed_tabs`).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

ICON = Path(__file__).with_name("plot-icon.svg")


def setup_plot_app() -> dict:
    """The server process description jupyter-server-proxy expects (called in the user's server)."""
    drop_messages_for_closed_tabs()
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


def drop_messages_for_closed_tabs() -> None:
    """Make jupyter-server-proxy drop, without a traceback, what a proxied app sends to a closed tab.

    Its relay calls ``write_message`` (and ``ping``) on the browser's websocket for every message
    from the app, also after the browser has closed it; tornado then raises
    ``WebSocketClosedError`` inside a callback (logged as "Uncaught exception") or fails the write's
    future nobody awaits ("Task exception was never retrieved"). Such a message has no reader:
    dropping it is all there is to do. Idempotent; a no-op where jupyter-server-proxy is absent.
    """
    try:
        from jupyter_server_proxy.handlers import ProxyHandler
    except ImportError:
        return
    if getattr(ProxyHandler, "_nebulahub_drops_closed", False):
        return
    from tornado.websocket import WebSocketClosedError
    write_message, ping = ProxyHandler.write_message, ProxyHandler.ping

    def closed(handler) -> bool:
        return handler.ws_connection is None or handler.ws_connection.is_closing()

    def write_to_open_tab(self, message, binary=False):
        if closed(self):
            return _done()
        future = write_message(self, message, binary=binary)
        future.add_done_callback(_ignore_closed)  # the tab may close while the message is being written
        return future

    def ping_open_tab(self, data=b""):
        if not closed(self):
            try:
                ping(self, data)
            except WebSocketClosedError:
                pass

    ProxyHandler.write_message, ProxyHandler.ping = write_to_open_tab, ping_open_tab
    ProxyHandler._nebulahub_drops_closed = True


def _done():
    from tornado.concurrent import Future
    future = Future()
    future.set_result(None)
    return future


def _ignore_closed(future) -> None:
    """Retrieve the write's outcome: a closed tab is no error, anything else is logged."""
    from tornado.iostream import StreamClosedError
    from tornado.websocket import WebSocketClosedError
    error = None if future.cancelled() else future.exception()
    if error is not None and not isinstance(error, (WebSocketClosedError, StreamClosedError)):
        logging.getLogger(__name__).error("Relaying a message of the plot app failed", exc_info=error)

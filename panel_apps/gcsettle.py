"""Keep the garbage collector's full passes out of a student's zooms.

CPython's collection of its oldest generation walks every object the process tracks. Once Panel,
Bokeh, pandas, HoloViews, Datashader and numba are imported that is a great many objects, and
such a pass took 180-300 ms in the plot server, now and then in the middle of a zoom (measured
with ``gc.callbacks`` through the hub: the two slowest zooms of a run were two of them).

What imports and the warm-up make lives as long as the process, so it is moved out of the
collector's sight (:func:`gc.freeze`) twice: before the server starts serving, and once the first
warm-up (Datashader's imports and kernels) is done. Later objects are collected as before, so a
replaced plot's reference cycles are still freed; what the first plot's session held at that
moment stays frozen (once per process, bounded).

The user's Jupyter server, which relays every message of the app (jupyter-server-proxy), had the
same pauses (176 ms in the middle of a zoom): this module is also a Jupyter server extension that
freezes the server's start-up objects once its loop runs (``jupyter-config/nebulahub-gc.json``).
"""
from __future__ import annotations

import gc
import threading

_LOCK = threading.Lock()
_AFTER_WARM_UP = False


def freeze_start_up() -> None:
    """Collect what start-up left behind, then freeze what lives on."""
    gc.collect()
    gc.freeze()


def freeze_after_warm_up() -> None:
    """The same, once per process, after the first warm-up (later calls do nothing)."""
    global _AFTER_WARM_UP
    with _LOCK:
        if _AFTER_WARM_UP:
            return
        _AFTER_WARM_UP = True
    gc.collect()
    gc.freeze()


# ---- the Jupyter server extension ---------------------------------------------------------------
def _jupyter_server_extension_points():
    return [{"module": "panel_apps.gcsettle"}]


def _load_jupyter_server_extension(serverapp) -> None:
    serverapp.io_loop.add_callback(freeze_start_up)  # once every extension is loaded

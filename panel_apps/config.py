"""Admin knobs of the plotting app, one home for all of them.

The app runs inside each user's single-user server, started by jupyter-server-proxy, so the
knobs arrive as environment variables set by the spawner (per profile). Each traitlet below reads
its default from the variable named in its help text; a JupyterHub/traitlets config file can set
them too (``c.PlotAppConfig.rasterize_threshold = 200_000``). Making the app a profile's landing
page is the spawner's ``default_url: "/nebulahub-plot/"`` in that profile, not a knob here.

=================================  ==============================================================
NEBULAHUB_DATA_ROOTS               extra folders users may open, ``os.pathsep``-separated
                                   (the home directory is always allowed)
NEBULAHUB_RASTERIZE_THRESHOLD      rows above which "auto" mode rasterizes (default 100000)
NEBULAHUB_STANDARD_MAX_ROWS        rows above which standard mode is refused (default 1000000)
NEBULAHUB_CACHE_DIR                columnar cache (default ~/.cache/nebulahub/plot); may be shared,
                                   each user converts into a private 0700 subfolder named after them
NEBULAHUB_FORMULA_TIMEOUT          seconds a plot may take to prepare (default 20)
NEBULAHUB_MAX_READ_BYTES           memory one session may fill with columns (default 1/4 of RAM)
NEBULAHUB_CLUSTER_ROWS             rows from which "Automatic" draws on the user's Dask cluster
                                   (default 50000000; 0: only when the student picks it)
=================================  ==============================================================
"""
from __future__ import annotations

import os
import pwd
from pathlib import Path

from traitlets import Float, Integer, List, Unicode, default
from traitlets.config import Configurable


def _env_int(name: str, fallback: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw.replace("_", "")) if raw else fallback
    except ValueError:
        return fallback


def _env_float(name: str, fallback: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else fallback
    except ValueError:
        return fallback


class PlotAppConfig(Configurable):
    """Configuration of the no-code plotting app (see the module docstring for the variables)."""

    data_roots = List(
        Unicode(),
        help="Folders besides the user's home that the file picker may open "
        "(env NEBULAHUB_DATA_ROOTS, os.pathsep-separated). Symlinks leading out of them are refused.",
    ).tag(config=True)

    rasterize_threshold = Integer(
        help="In 'auto' mode, scatter and line plots with more rows than this are rasterized on the "
        "server with Datashader (env NEBULAHUB_RASTERIZE_THRESHOLD, default 100000).",
    ).tag(config=True)

    standard_max_rows = Integer(
        help="Standard mode sends every point to the browser; above this many rows it is refused with "
        "a message instead of freezing the tab (env NEBULAHUB_STANDARD_MAX_ROWS, default 1000000).",
    ).tag(config=True)

    cache_dir = Unicode(
        help="Where text files are converted to Parquet once (env NEBULAHUB_CACHE_DIR, "
        "default ~/.cache/nebulahub/plot). It may be shared by several users: each one gets a private "
        "subfolder named after them (created 0700; a subfolder owned by someone else is refused).",
    ).tag(config=True)

    home = Unicode(help="The user's home; always an allowed root (default: $HOME).").tag(config=True)

    formula_timeout = Float(
        help="Seconds preparing a plot (reading its columns, computing derived columns and filters) may "
        "take before the student gets a message instead. The work runs in a worker thread, so the page "
        "and other sessions stay responsive meanwhile (env NEBULAHUB_FORMULA_TIMEOUT, default 20).",
    ).tag(config=True)

    cluster_rows = Integer(
        help="Rows from which a rasterized scatter plot or 2-D histogram of a converted file is aggregated on "
        "the user's Dask cluster (dask_clusters: the admin's backend, limits and settings in "
        "/etc/nebulahub/dask.py) when 'Compute on' is 'Automatic'; students may also pick 'Dask cluster' "
        "for any size. 0: only when picked (env NEBULAHUB_CLUSTER_ROWS, default 50000000).",
    ).tag(config=True)

    @default("cluster_rows")
    def _default_cluster_rows(self):
        return _env_int("NEBULAHUB_CLUSTER_ROWS", 50_000_000)

    @default("data_roots")
    def _default_roots(self):
        raw = os.environ.get("NEBULAHUB_DATA_ROOTS", "")
        return [r for r in raw.split(os.pathsep) if r.strip()]

    @default("rasterize_threshold")
    def _default_threshold(self):
        return _env_int("NEBULAHUB_RASTERIZE_THRESHOLD", 100_000)

    @default("standard_max_rows")
    def _default_standard_max(self):
        return _env_int("NEBULAHUB_STANDARD_MAX_ROWS", 1_000_000)

    @default("cache_dir")
    def _default_cache(self):
        return os.environ.get("NEBULAHUB_CACHE_DIR") or str(Path(self.home) / ".cache" / "nebulahub" / "plot")

    max_read_bytes = Integer(
        help="Bytes of memory the columns one plot reads may take, checked from the file's metadata (Parquet "
        "row counts, HDF5 shapes, ROOT entries) before anything is read: a few megabytes of compressed data "
        "can expand to gigabytes. Above it the student is told the size and the limit "
        "(env NEBULAHUB_MAX_READ_BYTES, default a quarter of the physical memory).",
    ).tag(config=True)

    @default("max_read_bytes")
    def _default_max_read_bytes(self):
        return _env_int("NEBULAHUB_MAX_READ_BYTES", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4)

    @default("formula_timeout")
    def _default_formula_timeout(self):
        return _env_float("NEBULAHUB_FORMULA_TIMEOUT", 20.0)

    @default("home")
    def _default_home(self):
        return os.environ.get("HOME") or str(Path.home())

    def user_cache_dir(self) -> Path:
        """This user's own folder inside :attr:`cache_dir` (made private when first used)."""
        uid = os.geteuid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:  # a uid without a passwd entry (some containers)
            user = f"uid-{uid}"
        return Path(self.cache_dir).expanduser() / user

    def all_roots(self) -> list[Path]:
        """Home first, then the admin's data folders, without duplicates."""
        seen, roots = set(), []
        for r in [self.home, *self.data_roots]:
            p = Path(r).expanduser()
            if str(p) not in seen:
                seen.add(str(p))
                roots.append(p)
        return roots

"""``python -m panel_apps.prepare``: ready a Python environment for fast first plots; run it once
when the environment is built (VM image, the servers' environment), after installing NebulaHub.

What a fresh server would otherwise do on a student's first click is done here, and then checked:

1. the app's modules and the plotting stack are byte-compiled (``compileall``), so the first
   import reads ``.pyc`` files even where the installer skipped them or the environment is
   read-only for the students;
2. a first rasterized frame is drawn in a fresh Python process from a small converted file,
   exactly as a freshly started app draws it, and that process must neither compile a numba
   kernel nor import Datashader (:mod:`panel_apps.aggregate` explains why none is needed:
   Datashader's kernels are generated at run time and cannot be cached on disk, so the first
   frames are aggregated without JIT and Datashader compiles in the background afterwards).

Exit status 0 when the check passed; the line printed says how long the first frame took.
"""
from __future__ import annotations

import argparse
import compileall
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("panel_apps", "panel", "bokeh", "param", "pandas", "pyarrow", "numpy")

_FIRST_FRAME = """
import json, sys, time
start = time.perf_counter()
from panel_apps.dataset import DataSource
from panel_apps.render import RasterFigure
from panel_apps.settings import RASTERIZED, plot_settings
from panel_apps.spec import PlotSpec
source = DataSource(sys.argv[1])
source.prepare(sys.argv[2])
spec = PlotSpec()
spec.set_columns(source.available_columns(spec))
view = RasterFigure(source.table(spec), plot_settings(spec, RASTERIZED))
print(json.dumps({"seconds": time.perf_counter() - start, "rows": view.last.rows_in_view,
                  "numba": "numba" in sys.modules, "datashader": "datashader" in sys.modules}))
"""


def byte_compile(packages=PACKAGES) -> None:
    """Byte-compile the installed packages (quietly; unwritable folders are skipped)."""
    import importlib.util
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                compileall.compile_dir(folder, quiet=2, workers=0)


def first_frame_check(rows: int = 200_000) -> dict:
    """Draw a first frame in a fresh process; its report (seconds, rows, modules it loaded)."""
    from panel_apps.sample_data import write_josephson_text
    with tempfile.TemporaryDirectory(prefix="nebulahub-prepare-") as folder:
        data = write_josephson_text(Path(folder) / "check.txt", rows)
        done = subprocess.run([sys.executable, "-c", _FIRST_FRAME, str(data), str(Path(folder) / "cache")],
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m panel_apps.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("--skip-compile", action="store_true", help="only run the first-frame check")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not args.skip_compile:
        byte_compile()
    report = first_frame_check()
    ok = not report["numba"] and not report["datashader"]
    print(f"plot app prepared in {time.perf_counter() - start:.1f} s; a fresh process drew its first frame of "
          f"{report['rows']:,} rows in {report['seconds']:.2f} s "
          + ("without compiling anything" if ok else "BUT it loaded numba or Datashader: first clicks would wait"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

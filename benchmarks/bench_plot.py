"""Plot app benchmark on the seed-size file (3,310,331 rows x 12 numbers, whitespace text).

Prints, in one run on this machine:
  * ingest (text -> Parquet cache) next to ``pandas.read_csv`` of the same file, and the ratio
    (each run twice, interleaved; the faster run of each counts: the machine may be shared);
  * time to the first rasterized frame from the cache, server side: read two columns from Parquet,
    aggregate with Datashader, put the image in the Bokeh document and serialize the document patch
    the server would send (``PATCH-DOC`` with its binary buffers);
  * zoom re-aggregation p50/p95 over 20 zooms (aggregate + patch serialization);
  * peak memory (max RSS) of the ingest and of the plot server's work, each in its own process;
  * the ratio to the reference service's "< 6 s" rasterized first view.
Targets: first frame <= 1.0 s, zoom p95 <= 150 ms, ingest <= 1.2 x pandas.

The text file and nothing else is cached in /tmp/nebulahub-bench/ (override with NEBULAHUB_BENCH_DIR);
the Parquet cache is rebuilt every run so the ingest figure is real.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
from bokeh.document import Document  # noqa: E402
from bokeh.protocol import Protocol  # noqa: E402

from panel_apps import render  # noqa: E402
from panel_apps.dataset import DataSource  # noqa: E402
from panel_apps.loaders import TextOptions  # noqa: E402
from panel_apps.sample_data import SEED_ROWS, main as sample_data  # noqa: E402
from panel_apps.spec import PlotSpec  # noqa: E402

SEED_RASTERIZED_SECONDS = 6.0
BENCH_DIR = Path(os.environ.get("NEBULAHUB_BENCH_DIR", "/tmp/nebulahub-bench"))


class PatchRecorder:
    """Collects document change events and serializes them as the Bokeh server would."""

    def __init__(self, doc: Document):
        self.doc, self.events = doc, []
        doc.on_change(lambda event: self.events.append(event))

    def serialize(self) -> int:
        msg = Protocol().create("PATCH-DOC", self.events)
        self.events = []
        size = len(msg.header_json) + len(msg.content_json) + sum(len(b.to_bytes()) for b in msg.buffers)
        return size


def _time_pandas(text: Path, opts: TextOptions) -> float:
    t = time.perf_counter()
    plain = pd.read_csv(text, **opts.pandas_kwargs())
    elapsed = time.perf_counter() - t
    assert len(plain) == SEED_ROWS, len(plain)
    return elapsed


def phase_ingest(text: Path, cache: Path) -> dict:
    """Convert the text file to the Parquet cache (a fresh process, so its peak memory is its own)."""
    source = DataSource(text)
    t = time.perf_counter()
    source.prepare(cache)
    return {"seconds": time.perf_counter() - t, "peak_mb": _peak_mb()}


def phase_plot(text: Path, cache: Path) -> dict:
    """A plot server's work: warm-up, first rasterized frame from the cache, then 20 zooms."""
    t = time.perf_counter()
    render.warm_up()
    warm = time.perf_counter() - t
    source = DataSource(text)
    source.prepare(cache)  # a cache hit: only checks the key
    spec = PlotSpec()
    spec.set_columns(source.available_columns(spec))
    spec.param.update(x="t", y="q1", size=1)
    doc = Document()
    recorder = PatchRecorder(doc)
    t = time.perf_counter()
    frame = source.table(spec)  # reads two columns from Parquet
    view = render.RasterFigure(frame, spec)
    doc.add_root(view.figure)
    first_bytes = recorder.serialize()
    first = time.perf_counter() - t
    assert view.last.rows_in_view == SEED_ROWS, view.last.rows_in_view
    # The browser colours the raw aggregate (so hover shows values); what the same eq_hist colour
    # mapping costs on the server (as for the PNG) is measured separately and added.
    t = time.perf_counter()
    render.shade_image(view.last.image, spec)
    shade = time.perf_counter() - t

    (x0, x1), (y0, y1) = view.last.x_range, view.last.y_range
    zooms, rows = [], []
    for i in range(20):
        f = 0.8 ** (i + 1)  # zoom in around a moving centre, like a student exploring
        cx, cy = x0 + (x1 - x0) * (0.3 + 0.02 * i), (y0 + y1) / 2
        t = time.perf_counter()
        view.render((cx - (x1 - x0) * f / 2, cx + (x1 - x0) * f / 2), (cy - (y1 - y0) * f / 2, cy + (y1 - y0) * f / 2))
        recorder.serialize()
        zooms.append(time.perf_counter() - t)
        rows.append(view.last.rows_in_view)
    assert rows == sorted(rows, reverse=True) and rows[-1] < SEED_ROWS  # each zoom re-aggregated
    return {"warm": warm, "first": first, "shade": shade, "first_bytes": first_bytes, "zooms": zooms,
            "peak_mb": _peak_mb()}


def _peak_mb() -> float:
    """Peak resident memory of this process image (VmHWM; ru_maxrss would include the parent's
    size at fork time, which Linux carries across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(phase: str, text: Path, cache: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", phase, str(text), str(cache)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    text = BENCH_DIR / "josephson-seed.txt"
    if not text.exists():
        print(f"writing the seed-size file to {text} …", flush=True)
        t = time.perf_counter()
        sample_data(["--out", str(text), "--seed-size"])
        print(f"  written in {time.perf_counter() - t:.1f} s")
    cache = BENCH_DIR / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    size_mb = text.stat().st_size / 1e6
    opts = TextOptions.from_dict(DataSource(text).options)

    # pandas and ingest interleaved, twice, so page-cache warmth and a neighbour's load favour
    # neither; each is represented by its faster run
    pandas_runs, ingests = [], []
    for _ in range(2):
        pandas_runs.append(_time_pandas(text, opts))
        shutil.rmtree(cache, ignore_errors=True)
        ingests.append(_child("ingest", text, cache))
    ingest = min(ingests, key=lambda r: r["seconds"])
    t_pandas, t_ingest = min(pandas_runs), ingest["seconds"]
    plot = _child("plot", text, cache)
    t_first, zooms = plot["first"], sorted(plot["zooms"])
    p50 = statistics.median(zooms)
    p95 = zooms[int(round(0.95 * (len(zooms) - 1)))]

    print(f"file: {text} ({SEED_ROWS:,} rows x 12, {size_mb:.0f} MB)")
    print(f"pandas.read_csv (same file, same run):  {t_pandas:6.2f} s   (runs: "
          + ", ".join(f"{r:.2f}" for r in pandas_runs) + " s)")
    print(f"ingest to Parquet cache (streaming):    {t_ingest:6.2f} s   (runs: "
          + ", ".join(f"{r['seconds']:.2f}" for r in ingests) + f" s)  ratio {t_ingest / t_pandas:.2f}x pandas"
          f"   [target <= 1.2x: {'OK' if t_ingest <= 1.2 * t_pandas else 'MISSED'}]")
    print(f"numba warm-up at server start:          {plot['warm']:6.2f} s   (background thread, before any plot)")
    print(f"first rasterized frame from the cache:  {t_first:6.3f} s   ({plot['first_bytes'] / 1e6:.1f} MB patch)"
          f"   [target <= 1.0 s: {'OK' if t_first <= 1.0 else 'MISSED'}]")
    print(f"  + eq_hist colour mapping on the server: {t_first + plot['shade']:6.3f} s   "
          f"(colouring alone {plot['shade'] * 1e3:.0f} ms; the app colours in the browser)")
    print(f"zoom re-aggregation over 20 zooms:      p50 {p50 * 1e3:5.1f} ms, p95 {p95 * 1e3:5.1f} ms"
          f"   [target p95 <= 150 ms: {'OK' if p95 <= 0.150 else 'MISSED'}]")
    print(f"peak memory (max RSS):                  ingest {ingest['peak_mb']:.0f} MB, "
          f"plot server {plot['peak_mb']:.0f} MB, pandas.read_csv process {_peak_mb():.0f} MB")
    print(f"vs the reference service's < 6 s rasterized view: first frame {SEED_RASTERIZED_SECONDS / t_first:.0f}x faster"
          f" ({t_first / SEED_RASTERIZED_SECONDS:.1%} of 6 s)")
    ok = t_ingest <= 1.2 * t_pandas and t_first <= 1.0 and p95 <= 0.150
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--phase":
        phase = {"ingest": phase_ingest, "plot": phase_plot}[sys.argv[2]]
        print(json.dumps(phase(Path(sys.argv[3]), Path(sys.argv[4]))))
        sys.exit(0)
    sys.exit(main())

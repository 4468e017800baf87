"""The plot server's process keeps freed memory for the next frame (zoom latency, see
``benchmarks/bench_plot_browser.py``)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "kept":
    from panel_apps.launcher import keep_freed_memory
    assert keep_freed_memory()

def faults():  # pages the kernel had to hand in again while frames of a 640 x 440 plot come and go
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        counts = np.ones((440, 640)); spread = np.ones((440, 640)); image = counts + spread
        del counts, spread, image
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
print(faults())
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _FAULTS, mode], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_a_frame_s_arrays_reuse_freed_memory_instead_of_faulting_pages_in_again():
    """By default glibc gives a few MB freed back to the kernel at once, and every zoom's arrays
    were faulted in anew (10-20 ms of a zoom here); the launcher keeps up to 64 MB of it."""
    by_default, kept = _faults("default"), _faults("kept")
    assert by_default > 10_000  # ~540 pages per array, every frame
    assert kept < by_default / 20


_FROZEN = """
import gc
import panel_apps.app  # what the plot server imports before serving
from panel_apps import gcsettle
tracked = len(gc.get_objects())
gcsettle.freeze_start_up()
after_start = gc.get_freeze_count()
import datashader  # what the first warm-up imports
gcsettle.freeze_after_warm_up()
after_warm_up = gc.get_freeze_count()
gcsettle.freeze_after_warm_up()  # once per process
print(tracked, after_start, after_warm_up, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_a_full_collection_walks_only_what_was_made_after_start_up_and_warm_up():
    """The imports' objects are frozen before serving and after the first warm-up: a full pass of
    the collector (180-300 ms in the plot server, sometimes in the middle of a zoom) no longer
    walks them."""
    done = subprocess.run([sys.executable, "-c", _FROZEN], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    tracked, after_start, after_warm_up, again, left = map(int, done.stdout.split())
    assert tracked > 100_000 and after_start > 0.8 * tracked
    assert after_warm_up > after_start and again == after_warm_up
    assert left < 0.02 * after_warm_up  # what a full collection still walks


def test_every_user_server_freezes_its_start_up_objects_too():
    """The Jupyter server relays every message of the app (jupyter-server-proxy); its full
    collections (176 ms, in the middle of a zoom) are kept out the same way: the extension is
    installed, enabled and valid in the environment user servers run from."""
    import os
    import types

    from panel_apps import gcsettle
    scheduled = []
    gcsettle._load_jupyter_server_extension(types.SimpleNamespace(io_loop=types.SimpleNamespace(add_callback=scheduled.append)))
    assert scheduled == [gcsettle.freeze_start_up]
    if os.geteuid() == 0:
        from machines.serverenv import ensure_server_env
        env = ensure_server_env()
    else:
        env = sys.prefix
    listed = subprocess.run([f"{env}/bin/jupyter", "server", "extension", "list"], capture_output=True, text=True,
                            timeout=300)
    lines = (listed.stdout + listed.stderr).splitlines()
    assert any("panel_apps.gcsettle" in line and "enabled" in line for line in lines), lines
    assert any("panel_apps.gcsettle" in line and "OK" in line for line in lines), lines

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

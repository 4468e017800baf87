"""What the benchmarks share to print their figures."""
from __future__ import annotations


def pct(values, q):
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated; NaN when there are none."""
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)

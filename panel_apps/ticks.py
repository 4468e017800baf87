"""Tick values and labels for axes and colour bars: "nice" steps (1, 2 or 5 times a power of ten),
powers of ten on log axes, short labels; and where a value sits on an equal-histogram colour bar.

Shared by the PNG figure (:mod:`panel_apps.png_figure`) and the colour bar of the plot on screen
(:mod:`panel_apps.shading`). Imports nothing beyond numpy.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def eq_hist_fraction(values: np.ndarray, value: float) -> float:
    """Where ``value`` sits on an equalised colour bar of the sorted finite ``values``."""
    if values.size == 0 or values[0] == values[-1]:
        return 0.5
    below = np.searchsorted(values, value, side="right") - 1
    return float(max(0, below)) / (values.size - 1)


def nice_ticks(lo: float, hi: float, log: bool = False, max_ticks: int = 8) -> list[float]:
    """Tick values inside [lo, hi]: 1-2-5 steps, or powers of ten on a log axis."""
    lo, hi = min(lo, hi), max(lo, hi)
    max_ticks = max(2, int(max_ticks))
    if log and lo > 0:
        first, last = math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9)
        if last - first >= 1:
            every = math.ceil((last - first + 1) / max_ticks)
            return [10.0 ** k for k in range(first, last + 1) if k % every == 0]
        within = [m * 10.0 ** k for k in range(first - 1, last + 1) for m in (1, 2, 5)
                  if lo <= m * 10.0 ** k * (1 + 1e-12) and m * 10.0 ** k <= hi * (1 + 1e-12)]
        if len(within) >= 2:
            return within
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi == lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max_ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    start = math.ceil(lo / step - 1e-9)
    digits = max(0, -math.floor(math.log10(step))) + 1
    return [round(i * step, digits) + 0.0 for i in range(start, math.floor(hi / step + 1e-9) + 1)]


def tick_label(value: float, step: float | None = None) -> str:
    """``value`` as a short label: decimals as many as ``step`` needs in a readable range, else ``2.5e6``."""
    if value == 0:
        return "0"
    if step and 1e-3 <= abs(value) < 1e5:
        decimals = max(0, -math.floor(math.log10(abs(step)) + 1e-9))
        return f"{value:.{min(decimals, 6)}f}"
    shown = f"{value:.6g}" if 1e-3 <= abs(value) < 1e5 else f"{value:.3g}"
    if "e" not in shown:
        return shown
    mantissa, exponent = shown.split("e")
    return f"{mantissa}e{int(exponent)}"


def labels(ticks: list[float], log: bool) -> list[str]:
    step = None if log or len(ticks) < 2 else ticks[1] - ticks[0]
    return [tick_label(t, step) for t in ticks]


def spaced(ticks: list[float], position: Callable[[float], float], gap: float) -> list[float]:
    """The ticks (lowest first) whose positions are at least ``gap`` apart."""
    kept: list[float] = []
    for t in ticks:
        if not kept or position(t) - position(kept[-1]) >= gap:
            kept.append(t)
    return kept

"""The colours of a rasterized frame, chosen on the server: equal-histogram shading in numpy.

The browser receives one byte per pixel, the palette entry of its colour (0: no row there,
transparent), and maps it with a plain ``LinearColorMapper``. Colouring the raw numbers in the
browser with BokehJS's ``EqHistColorMapper`` cost ~90 ms of JavaScript per zoom of a 640 x 440
frame in Chromium (binning, interpolation, checks), most of what a student waited for after the
wheel, and an RGBA picture is four times the bytes through the hub's proxies; here the shading
takes a few milliseconds.

``eq_hist`` means a pixel's colour follows the rank of its value among the frame's pixels that
hold a value: the colours are spread evenly over the pixels, as Datashader's and Bokeh's
``eq_hist`` do. The rank is the one the PNG's colour bar uses
(:func:`panel_apps.ticks.eq_hist_fraction`): exact for counts, within 1/65536 of the value range
for means. The colour bar's ticks are nice values placed at their ranks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ticks import labels, nice_ticks, spaced

COLOURS = 255  # palette entries 1..255 in the picture; 0 is "no row here"
BINS = 1 << 16  # rank resolution for non-integer values (Bokeh's and Datashader's eq_hist use as many)
EXACT_COUNTS = 1 << 22  # integer values up to this are ranked exactly (a bincount of that length)


@dataclass(frozen=True)
class Shaded:
    """A frame's colours: ``index`` (uint8: 0 where no row falls, else the pixel's entry 1..255 of
    the palette) and its colour bar: tick positions from 0 (lowest value) to 1 (highest) with
    their labels."""

    index: np.ndarray
    ticks: list[float]
    labels: list[str]


class _Ranks:
    """Where values sit on the equalised scale of one frame's values (0 lowest .. 1 highest)."""

    def __init__(self, values: np.ndarray):
        self.size = values.size
        self.lo, self.hi = float(values.min()), float(values.max())
        whole = values.astype(np.int64)
        self.exact = self.lo >= 0 and self.hi < EXACT_COUNTS and np.array_equal(whole, values)
        if self.exact:  # counts: how many pixels hold at most each count
            self.cdf = np.cumsum(np.bincount(whole))
        else:
            self.scale = (BINS - 1) / (self.hi - self.lo) if self.hi > self.lo else 0.0
            self.cdf = np.cumsum(np.bincount(self._bins(values), minlength=BINS))

    def _bins(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.lo) * self.scale).astype(np.intp)

    def index(self, values: np.ndarray) -> np.ndarray:
        """Each value's entry in :meth:`table` (its count, or its slice of the value range)."""
        index = values.astype(np.intp) if self.exact else self._bins(values)
        return np.clip(index, 0, len(self.cdf) - 1, out=index)

    def table(self) -> np.ndarray:
        """The rank of each entry: the fraction of the frame's values below or at it."""
        if self.size < 2 or self.hi == self.lo:
            return np.full(len(self.cdf), 0.5)
        return (self.cdf - 1) / (self.size - 1)

    def of(self, values: np.ndarray) -> np.ndarray:
        return self.table()[self.index(values)]


def shade(image: np.ndarray, bar_pixels: int = 400, label_pixels: int = 14) -> Shaded:
    """``image`` (counts or means, NaN where no row falls) as palette entries by rank, and its
    colour bar's ticks, at least ``label_pixels`` apart on a bar ``bar_pixels`` high."""
    index = np.zeros(image.shape, dtype=np.uint8)
    holds = np.isfinite(image)
    values = image[holds]
    if values.size == 0:
        return Shaded(index, [], [])
    ranks = _Ranks(values)
    # one entry per count (or per slice of the value range), then one lookup per pixel
    table = (1 + np.minimum((ranks.table() * COLOURS).astype(np.intp), COLOURS - 1)).astype(np.uint8)
    index[holds] = table[ranks.index(values)]
    lo, hi = ranks.lo, ranks.hi
    candidates = nice_ticks(lo, hi, bool(lo > 0 and hi > 20 * lo), 40)
    if ranks.exact:  # a count bar: whole numbers only
        candidates = [t for t in candidates if t == int(t)] or candidates
    position = {t: float(ranks.of(np.array([t]))[0]) for t in candidates}
    ticks = spaced(candidates, lambda t: position[t] * bar_pixels, label_pixels + 4)
    return Shaded(index, [position[t] for t in ticks], labels(ticks, True))

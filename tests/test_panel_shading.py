"""The frame's colours chosen on the server (panel_apps.shading): equal-histogram by rank, the
same rank the PNG's colour bar uses, one byte per pixel (0 where no row falls), and a colour bar
whose ticks sit where their values' colours are."""
from __future__ import annotations

import numpy as np
import pytest

from panel_apps import shading
from panel_apps.ticks import eq_hist_fraction

ENTRIES = shading.COLOURS


def test_counts_are_coloured_by_their_exact_rank_and_empty_pixels_are_transparent():
    rng = np.random.default_rng(3)
    image = rng.poisson(4, (60, 80)).astype(np.float32)
    image[image == 0] = np.nan
    image[:5, :5] = 70_000  # a few crowded pixels far above the rest
    shaded = shading.shade(image)
    assert shaded.index.dtype == np.uint8 and shaded.index.shape == image.shape
    assert (shaded.index[np.isnan(image)] == 0).all()  # transparent
    assert (shaded.index[np.isfinite(image)] >= 1).all()
    values = np.sort(image[np.isfinite(image)])
    for value in np.unique(values):
        expected = 1 + min(ENTRIES - 1, int(eq_hist_fraction(values, value) * ENTRIES))
        assert (shaded.index[image == value] == expected).all(), value
    assert shaded.index[0, 0] == ENTRIES  # the largest count takes the last colour


def test_continuous_values_spread_the_colours_evenly_over_the_pixels():
    image = np.random.default_rng(4).lognormal(size=(200, 300))  # skewed: a linear map would be dark
    per_colour = np.bincount(shading.shade(image).index.ravel(), minlength=ENTRIES + 1)[1:]
    share = image.size / ENTRIES
    assert per_colour.min() > 0.8 * share and per_colour.max() < 1.2 * share


def test_the_colour_bar_ticks_sit_where_their_values_colours_are():
    image = np.arange(1, 10_001, dtype=np.float64).reshape(100, 100) ** 2
    shaded = shading.shade(image, bar_pixels=400, label_pixels=14)
    assert 3 <= len(shaded.ticks) == len(shaded.labels)
    assert shaded.ticks == sorted(shaded.ticks) and all(0 <= t <= 1 for t in shaded.ticks)
    assert min(np.diff(shaded.ticks)) * 400 >= 18  # labels never overlap
    values = np.sort(image.ravel())
    slice_ = (values[-1] - values[0]) / (shading.BINS - 1)  # not whole counts: ranked within a slice
    for position, label in zip(shaded.ticks, shaded.labels):
        value = float(label)
        assert eq_hist_fraction(values, value - slice_) <= position <= eq_hist_fraction(values, value + slice_)


@pytest.mark.parametrize("image", [np.full((4, 4), np.nan), np.full((4, 4), 7.0)])
def test_an_empty_or_flat_frame_is_shaded_without_error(image):
    shaded = shading.shade(image)
    if np.isnan(image).all():
        assert (shaded.index == 0).all() and shaded.ticks == []
    else:
        assert len(set(shaded.index.ravel().tolist())) == 1 and shaded.labels == ["7"]

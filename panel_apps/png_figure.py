"""A finished figure for a lab report, drawn with Pillow: the plot's picture framed by axes.

:func:`draw_figure` lays out a white canvas of exactly the plot's width x height: the title on
top, the plot area framed by a dark box, ticks pointing out of the left and bottom axes with their
values, the axis labels, and (for images whose colours stand for numbers) a colour bar with its
label on the right. Tick values are "nice": steps of 1, 2 or 5 times a power of ten on linear
axes, powers of ten on log axes (1-2-5 within a decade when the axis spans less than two).

The picture inside the plot area is made by the caller for the area's pixel size, so one pixel of
the aggregate is one pixel of the PNG (:mod:`panel_apps.export`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .ticks import eq_hist_fraction, nice_ticks
from .ticks import labels as _labels
from .ticks import spaced as _spaced

INK = (0, 0, 0)
TICK = 5  # tick length in pixels, outside the plot area
BAR_WIDTH = 14
GAP = 4
_ZERO_WIDTH_SPACE = "\u200b"  # what panel_apps.text.canvas adds against TeX; Pillow typesets nothing


@dataclass(frozen=True)
class Axis:
    """One axis of the figure: its range and whether it is logarithmic."""

    lo: float
    hi: float
    log: bool = False

    def fraction(self, value: float) -> float:
        """Where ``value`` lies along the axis, 0 at ``lo`` and 1 at ``hi``."""
        f = math.log10 if self.log else float
        return (f(value) - f(self.lo)) / ((f(self.hi) - f(self.lo)) or 1.0)

    def ticks(self, max_ticks: int) -> list[float]:
        """Nice tick values; a log axis's labels (0.01, 1e5) are short: it takes twice as many."""
        return nice_ticks(self.lo, self.hi, self.log, max_ticks * 2 if self.log else max_ticks)


@dataclass(frozen=True)
class ColourBar:
    """The colour bar of an image whose colours stand for numbers.

    ``ramp(width, height)`` is the bar's picture, lowest value at the bottom, coloured as the plot
    (its ``eq_hist`` mapping spreads the colours evenly over the pixels, so a value sits at the
    fraction of pixels holding at most that value: see :func:`eq_hist_fraction`).
    """

    label: str
    ramp: Callable[[int, int], Image.Image]


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _clean(label) -> str:
    return str(label or "").replace(_ZERO_WIDTH_SPACE, "")


def _text_size(font, label: str) -> tuple[int, int]:
    if not label:
        return 0, 0
    left, top, right, bottom = font.getbbox(label)
    return right - left, bottom - top


def _rotated(font, label: str) -> Image.Image:
    """``label`` written upwards (a y axis's or colour bar's label), black on transparent."""
    w, h = _text_size(font, label)
    img = Image.new("RGBA", (w + 4, h + 6), (255, 255, 255, 0))
    ImageDraw.Draw(img).text((2 - font.getbbox(label)[0], 3 - font.getbbox(label)[1]), label, fill=INK, font=font)
    return img.rotate(90, expand=True)


def draw_figure(width: int, height: int, x: Axis, y: Axis, plot: Callable, title: str = "", xlabel: str = "",
                ylabel: str = "", colour_bar: ColourBar | None = None) -> Image.Image:
    """The whole figure, ``width`` x ``height`` pixels on white.

    ``plot(w, h)`` returns the picture of the plot area (an RGB image of ``w`` x ``h`` pixels,
    bottom-left at ``(x.lo, y.lo)``) and the numbers its colours stand for (an array, for the
    colour bar; None without one).
    """
    font, title_font = _font(12), _font(15)
    title, xlabel, ylabel = _clean(title), _clean(xlabel), _clean(ylabel)
    line_h = _text_size(font, "0123456789")[1]
    top = (GAP * 2 + _text_size(title_font, title)[1] + GAP) if title else GAP * 3
    bottom = TICK + GAP + line_h + (GAP * 2 + line_h if xlabel else 0) + GAP * 2
    plot_h = max(20, height - top - bottom)

    y_ticks = y.ticks(max(2, plot_h // 45))
    y_labels = _labels(y_ticks, y.log)
    left = GAP * 2 + (line_h + GAP * 2 if ylabel else 0) + max((_text_size(font, t)[0] for t in y_labels), default=0) \
        + GAP + TICK
    right = GAP * 4
    if colour_bar is not None:  # room for labels like '2000' or '1.5e6', whatever the values turn out to be
        right += BAR_WIDTH + TICK + GAP + _text_size(font, "-0.0005")[0] + \
            (GAP * 2 + line_h if colour_bar.label else 0) + GAP
    plot_w = max(20, width - left - right)
    x_ticks = x.ticks(max(2, plot_w // 90))
    x_labels = _labels(x_ticks, x.log)

    picture, values = plot(plot_w, plot_h)
    img = Image.new("RGB", (width, height), "white")
    img.paste(picture.convert("RGB").resize((plot_w, plot_h)), (left, top))
    draw = ImageDraw.Draw(img)
    draw.rectangle([left - 1, top - 1, left + plot_w, top + plot_h], outline=INK)
    x_base, y_base = top + plot_h, left - 1
    for value, label in zip(x_ticks, x_labels):
        px = left + round(x.fraction(value) * (plot_w - 1))
        draw.line([(px, x_base), (px, x_base + TICK)], fill=INK)
        draw.text((px, x_base + TICK + GAP), label, fill=INK, font=font, anchor="mt")
    for value, label in zip(y_ticks, y_labels):
        py = top + plot_h - 1 - round(y.fraction(value) * (plot_h - 1))
        draw.line([(y_base - TICK, py), (y_base, py)], fill=INK)
        draw.text((y_base - TICK - GAP, py), label, fill=INK, font=font, anchor="rm")
    if xlabel:
        draw.text((left + plot_w / 2, x_base + TICK + GAP + line_h + GAP * 2), xlabel, fill=INK, font=font, anchor="mt")
    if ylabel:
        label = _rotated(font, ylabel)
        img.paste(label, (GAP * 2, top + plot_h // 2 - label.height // 2), label)
    if title:
        draw.text((left + plot_w / 2, GAP * 2), title, fill=INK, font=title_font, anchor="mt")
    if colour_bar is not None:
        values = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)], axis=None)
        _colour_bar(img, draw, font, colour_bar, values, left + plot_w + GAP * 4, top, plot_h, line_h)
    return img


def _colour_bar(img, draw, font, bar: ColourBar, values: np.ndarray, x0: int, top: int, h: int, line_h: int) -> None:
    img.paste(bar.ramp(BAR_WIDTH, h).convert("RGB").resize((BAR_WIDTH, h)), (x0, top))
    draw.rectangle([x0 - 1, top - 1, x0 + BAR_WIDTH, top + h], outline=INK)
    ticks: list[float] = []
    if values.size:
        lo, hi = float(values[0]), float(values[-1])
        candidates = nice_ticks(lo, hi, bool(lo > 0 and hi > 20 * lo), 40)
        ticks = _spaced(candidates, lambda v: eq_hist_fraction(values, v) * h, line_h + 4)
    labels = _labels(ticks, True)
    for value, label in zip(ticks, labels):
        py = top + h - 1 - round(eq_hist_fraction(values, value) * (h - 1))
        draw.line([(x0 + BAR_WIDTH, py), (x0 + BAR_WIDTH + TICK, py)], fill=INK)
        draw.text((x0 + BAR_WIDTH + TICK + GAP, py), label, fill=INK, font=font, anchor="lm")
    if bar.label:
        text_w = max([_text_size(font, "-0.0005")[0]] + [_text_size(font, t)[0] for t in labels])
        label = _rotated(font, _clean(bar.label))
        img.paste(label, (min(img.width - label.width, x0 + BAR_WIDTH + TICK + GAP + text_w + GAP * 2),
                          top + h // 2 - label.height // 2), label)

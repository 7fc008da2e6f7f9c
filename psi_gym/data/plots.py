"""Line plots as PNG files, drawn with Pillow (a core dependency: no matplotlib needed).

`plot_panels` draws one or more panels side by side; each panel has its own axes (linear, or
logarithmic x), a title, axis labels and a legend, one coloured line with markers per series::

    plot_panels("runs/eval/eval-w0.png", [
        Panel("PSNR per open-loop step", "step", "dB", {"W0": (steps, psnr), "copy last": (steps, held)}),
    ])

Used by ``psi-gym eval-w0``, ``bench`` and ``bench-w0`` (a picture beside their JSON summary) and
for the training loss curves. Files are written atomically (`write_file_atomic`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from psi_gym.data.atomic import write_file_atomic

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]
PANEL_SIZE = (560, 400)
MARGIN = {"left": 78, "right": 20, "top": 44, "bottom": 58}


@dataclass
class Panel:
    """One plot: ``series`` maps a legend name to ``(xs, ys)``; non-finite points are skipped."""

    title: str
    xlabel: str
    ylabel: str
    series: dict[str, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    log_x: bool = False
    y_from_zero: bool = False
    """start the y axis at 0 (rates, throughputs) instead of at the smallest value."""


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round numbers covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-6:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _whole_ticks(ticks: list[float]) -> list[float]:
    """The whole numbers among ``ticks`` (an axis of counts: iterations, steps), or ``ticks`` if none is."""
    return [t for t in ticks if float(t).is_integer()] or ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:g}" if abs(value) >= 1 else f"{value:.3g}"


def _draw_panel(image: Image.Image, origin: tuple[int, int], panel: Panel) -> None:
    draw = ImageDraw.Draw(image)
    title_font, font = _font(16), _font(12)
    ox, oy = origin
    width, height = PANEL_SIZE
    left, top = ox + MARGIN["left"], oy + MARGIN["top"]
    right, bottom = ox + width - MARGIN["right"], oy + height - MARGIN["bottom"]
    draw.text((ox + width / 2, oy + 12), panel.title, fill="black", font=title_font, anchor="mt")

    points = {name: [(float(x), float(y)) for x, y in zip(xs, ys)
                     if math.isfinite(float(x)) and math.isfinite(float(y)) and (not panel.log_x or float(x) > 0)]
              for name, (xs, ys) in panel.series.items()}
    every = [p for series in points.values() for p in series]
    if not every:
        draw.text(((left + right) / 2, (top + bottom) / 2), "no data", fill="gray", font=font, anchor="mm")
        return

    def fx(x: float) -> float:
        return math.log10(x) if panel.log_x else x

    xs = [fx(x) for x, _ in every]
    ys = [y for _, y in every]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = (min(0.0, min(ys)) if panel.y_from_zero else min(ys)), max(ys)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    if y_high == y_low:
        y_low, y_high = y_low - (abs(y_low) or 1) * 0.1, y_high + (abs(y_high) or 1) * 0.1
    x_pad = 0.03 * (x_high - x_low)
    x_low, x_high = x_low - x_pad, x_high + x_pad
    pad = 0.05 * (y_high - y_low)
    legend_room = (16 * len(points) + 16) / (bottom - top) * (y_high - y_low)  # the legend sits above the data
    y_low, y_high = (y_low if panel.y_from_zero and y_low == 0 else y_low - pad), y_high + pad + legend_room

    def px(x: float) -> float:
        return left + (fx(x) - x_low) / (x_high - x_low) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y_low) / (y_high - y_low) * (bottom - top)

    # grid, ticks, labels
    if panel.log_x:
        x_ticks = [10**e for e in range(math.floor(x_low), math.ceil(x_high) + 1)]
        x_ticks += sorted({x for x, _ in every})
        x_ticks = sorted({t for t in x_ticks if x_low - 1e-9 <= math.log10(t) <= x_high + 1e-9})
    else:
        x_ticks = _ticks(x_low, x_high)
        if all(float(x).is_integer() for x, _ in every):  # counts: no tick at iteration 1.5
            x_ticks = _whole_ticks(x_ticks)
    for tick in x_ticks:
        x = px(tick)
        draw.line([(x, top), (x, bottom)], fill=(230, 230, 230))
        draw.text((x, bottom + 6), _label(tick), fill="black", font=font, anchor="mt")
    for tick in _ticks(y_low, y_high):
        y = py(tick)
        draw.line([(left, y), (right, y)], fill=(230, 230, 230))
        draw.text((left - 6, y), _label(tick), fill="black", font=font, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) / 2, bottom + 26), panel.xlabel + (" (log scale)" if panel.log_x else ""),
              fill="black", font=font, anchor="mt")
    label = Image.new("RGBA", (bottom - top, 18), (255, 255, 255, 0))
    ImageDraw.Draw(label).text(((bottom - top) / 2, 9), panel.ylabel, fill="black", font=font, anchor="mm")
    label = label.rotate(90, expand=True)
    image.paste(label, (ox + 8, top), label)

    # lines, then the legend on a white box in the top right corner
    for number, series in enumerate(points.values()):
        colour = COLOURS[number % len(COLOURS)]
        coords = [(px(x), py(y)) for x, y in sorted(series)]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=2)
        if len(coords) <= 60:
            for x, y in coords:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    text_width = max(draw.textlength(name, font=font) for name in points)
    legend_left = right - text_width - 44
    draw.rectangle([legend_left, top + 4, right - 4, top + 12 + 16 * len(points)], fill="white", outline=(200, 200, 200))
    for number, name in enumerate(points):
        colour = COLOURS[number % len(COLOURS)]
        legend_y = top + 16 + 16 * number
        draw.line([(legend_left + 6, legend_y), (legend_left + 28, legend_y)], fill=colour, width=3)
        draw.text((legend_left + 34, legend_y), name, fill="black", font=font, anchor="lm")


def plot_panels(path: str | os.PathLike, panels: Sequence[Panel], columns: int | None = None) -> Path:
    """Draw ``panels`` in a grid (``columns`` per row, default all in one row) into a PNG at ``path``."""
    if not panels:
        raise ValueError("plot_panels needs at least one panel")
    columns = columns or len(panels)
    rows = math.ceil(len(panels) / columns)
    image = Image.new("RGB", (PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), "white")
    for number, panel in enumerate(panels):
        _draw_panel(image, ((number % columns) * PANEL_SIZE[0], (number // columns) * PANEL_SIZE[1]), panel)
    return write_file_atomic(path, lambda file: image.save(file, format="PNG"))


__all__ = ["Panel", "plot_panels"]

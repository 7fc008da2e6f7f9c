"""The PNG plots (`psi_gym.data.plots`): a grid of panels, whole-number ticks on count axes."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from psi_gym.data.plots import PANEL_SIZE, Panel, _ticks, _whole_ticks, plot_panels


def test_a_grid_of_panels_is_written_as_one_png(tmp_path):
    panels = [Panel("a", "iteration", "rate", {"robot": ([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])}, y_from_zero=True),
              Panel("b", "iteration", "rate", {"robot": ([1, 3], [1.0, math.nan])}),
              Panel("c", "steps", "ms", {"x": ([1, 10, 100], [3.0, 2.0, 1.0])}, log_x=True)]
    path = plot_panels(tmp_path / "plot.png", panels, columns=2)
    with Image.open(path) as image:
        assert image.size == (PANEL_SIZE[0] * 2, PANEL_SIZE[1] * 2)
    with pytest.raises(ValueError, match="at least one panel"):
        plot_panels(tmp_path / "none.png", [])


def test_an_axis_of_counts_gets_whole_number_ticks():
    ticks = _ticks(0.94, 3.06)  # iterations 1 .. 3 with the axis' padding
    assert 1.5 in ticks and _whole_ticks(ticks) == [1.0, 2.0, 3.0]
    assert _whole_ticks([0.25, 0.5]) == [0.25, 0.5]  # no whole number among them: kept as they are

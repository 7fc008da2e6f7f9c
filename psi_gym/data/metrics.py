"""Training metrics through accelerate's trackers: TensorBoard when it is installed, else a CSV file.

Both trainers (``psi-gym train-w0``, ``train-estimator``) hand `make_trackers` to
``Accelerator(log_with=...)`` and log with ``accelerator.log(values, step=step)``:

=============== =======================================================================
``log_with``    what is written under ``logging_dir/<run name>/``
=============== =======================================================================
``tensorboard`` TensorBoard event files (needs the ``tensorboard`` package)
``csv``         ``metrics.csv`` (``step,name,value`` rows, one per value logged),
                ``config.json`` (the run's hyper-parameters) and, when the run ends,
                ``loss.png``, the curves drawn with `psi_gym.data.plots`; no dependency
``auto``        ``tensorboard`` if it is installed, else ``csv``
``none``        nothing
=============== =======================================================================

A resumed run passes ``resume_step``: the CSV keeps the rows up to that step and drops the ones
logged after it (the steps the resumed run does again), so the curves have no doubled stretch.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker

from psi_gym.data.atomic import write_bytes_atomic, write_file_atomic

LOG_WITH = ("auto", "csv", "tensorboard", "none")


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def resolve_log_with(log_with: str) -> str:
    """``auto`` -> ``tensorboard`` or ``csv``; checks the choice (ValueError: unknown; ImportError:
    ``tensorboard`` asked for but not installed)."""
    if log_with not in LOG_WITH:
        raise ValueError(f"log_with must be one of {LOG_WITH}, got {log_with!r}")
    if log_with == "auto":
        return "tensorboard" if tensorboard_available() else "csv"
    if log_with == "tensorboard" and not tensorboard_available():
        raise ImportError("log_with='tensorboard' needs the tensorboard package (pip install tensorboard); "
                          "log_with='csv' needs nothing")
    return log_with


class CSVTracker(GeneralTracker):
    """An accelerate tracker that appends ``step,name,value`` rows to ``metrics.csv``."""

    name = "csv"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike, resume_step: int | None = None):
        super().__init__()
        self.run_name = run_name
        self.folder = Path(logging_dir) / run_name
        self.path = self.folder / "metrics.csv"
        self.resume_step = resume_step
        self._file = None

    @property
    def tracker(self) -> Path:
        return self.path

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        kept = [row for row in read_metrics(self.path) if self.resume_step is not None and row[0] <= self.resume_step]
        # rewrite what is kept (atomically), then append from there
        write_file_atomic(self.path, lambda file: file.write(_csv_bytes(kept)))
        self._file = open(self.path, "a", newline="", encoding="utf-8")

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        write_bytes_atomic(self.folder / "config.json", json.dumps(values, indent=1, default=str).encode())

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        if self._file is None:
            self.start()
        writer = csv.writer(self._file)
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.writerow([step if step is not None else "", name, repr(float(value))])
        self._file.flush()

    def finish(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        plot_metrics(self.path, self.folder / "loss.png", title=self.run_name)


def _csv_bytes(rows: list[tuple[int, str, float]]) -> bytes:
    lines = ["step,name,value"] + [f"{step},{name},{value!r}" for step, name, value in rows]
    return ("\n".join(lines) + "\n").encode()


def read_metrics(path: str | os.PathLike) -> list[tuple[int, str, float]]:
    """The ``(step, name, value)`` rows of a ``metrics.csv`` (none if it does not exist; a torn last
    line of a killed run is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as file:
        for record in csv.reader(file):
            try:
                rows.append((int(record[0]), record[1], float(record[2])))
            except (ValueError, IndexError):
                continue  # the header, or a line cut short
    return rows


def plot_metrics(csv_path: str | os.PathLike, png_path: str | os.PathLike, title: str = "") -> Path | None:
    """Draw every metric of a ``metrics.csv`` against the step: the training loss parts in one panel,
    held-out metrics in a second, the learning rate in a third. None if there is nothing to draw."""
    from psi_gym.data.plots import Panel, plot_panels

    series: dict[str, tuple[list[int], list[float]]] = {}
    for step, name, value in read_metrics(csv_path):
        steps, values = series.setdefault(name, ([], []))
        steps.append(step)
        values.append(value)
    if not series:
        return None
    # evaluation metrics (held_out_*, eval_*) apart from the training loss parts
    others = {name: s for name, s in series.items() if name.startswith(("held_out", "eval"))}
    losses = {name: s for name, s in series.items() if name not in others and name != "learning_rate"}
    panels = [Panel(f"{title} losses".strip(), "step", "loss", losses or series)]
    if others and losses:
        panels.append(Panel(f"{title} other metrics".strip(), "step", "value", others))
    if "learning_rate" in series:
        panels.append(Panel("learning rate", "step", "lr", {"learning rate": series["learning_rate"]}, y_from_zero=True))
    return plot_panels(png_path, panels)


def make_trackers(log_with: str, logging_dir: str | os.PathLike, run_name: str,
                  resume_step: int | None = None) -> list[GeneralTracker]:
    """The tracker instances for ``Accelerator(log_with=...)``: one, or none for ``"none"``."""
    kind = resolve_log_with(log_with)
    if kind == "none":
        return []
    if kind == "csv":
        return [CSVTracker(run_name, logging_dir, resume_step)]
    from accelerate.tracking import TensorBoardTracker

    return [TensorBoardTracker(run_name, str(logging_dir))]


def flat_config(values: Any, prefix: str = "") -> dict[str, bool | int | float | str | None]:
    """A nested config as the flat ``{"model.num_layers": 4, ...}`` of plain values trackers take."""
    flat: dict[str, bool | int | float | str | None] = {}
    if isinstance(values, dict):
        for key, value in values.items():
            flat.update(flat_config(value, f"{prefix}{key}."))
        return flat
    key = prefix.rstrip(".")
    if values is None or isinstance(values, (bool, int, str)):
        flat[key] = values
    elif isinstance(values, float):
        flat[key] = values if math.isfinite(values) else str(values)
    else:
        flat[key] = json.dumps(values, default=str)
    return flat


__all__ = ["LOG_WITH", "CSVTracker", "flat_config", "make_trackers", "plot_metrics", "read_metrics",
           "resolve_log_with", "tensorboard_available"]

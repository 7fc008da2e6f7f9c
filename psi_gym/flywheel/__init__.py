"""The data flywheel: refined trajectories filtered back into the training of R2 and W0.

* ``buffer.py``: `FlywheelBuffer`, a TorchRL replay buffer on memory-mapped storage, trajectory
  slices, crash-safe commits, provenance on every trajectory, episodes and LeRobot datasets out;
* ``filters.py``: the filter interface (`Candidate`, ``filter(candidates) -> keep``) and the filters:
  W0's verdict, its calibrated success, W0 self-consistency, demo data quality, dedupe; `FilterChain`;
* ``quality.py``: a human demo's data quality scored with W0;
* ``variation.py``: scene variation inside W0 (object appearance, first frame; a renderer seed);
* ``rollouts.py``: whole episodes out of the W0 env or the robot;
* ``robot.py``: the robot budget (the simulator in its robot role), R2 deployed;
* ``judge.py``: the simulator as judge — filter precision/recall, W0's ranking test, R2's held-out
  success; for the report only;
* ``writeback.py``: LeRobot export, R2 behaviour cloning, W0 fine-tuning;
* ``loop.py``: the loop (``psi-gym flywheel``); ``commands.py``: the part's subcommand.

Names are imported lazily so that ``import psi_gym.flywheel`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FlywheelBuffer": "psi_gym.flywheel.buffer",
    "Provenance": "psi_gym.flywheel.buffer",
    "TrajectoryRecord": "psi_gym.flywheel.buffer",
    "SOURCES": "psi_gym.flywheel.buffer",
    "Candidate": "psi_gym.flywheel.filters",
    "CalibratedSuccessFilter": "psi_gym.flywheel.filters",
    "ConsistencyFilter": "psi_gym.flywheel.filters",
    "DedupeFilter": "psi_gym.flywheel.filters",
    "DemoQualityFilter": "psi_gym.flywheel.filters",
    "FilterChain": "psi_gym.flywheel.filters",
    "SuccessFilter": "psi_gym.flywheel.filters",
    "FlywheelConfig": "psi_gym.flywheel.loop",
    "run_flywheel": "psi_gym.flywheel.loop",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)

"""The state-tracking reward with a calibrated success: the bonus paid in proportion to how likely the simulator confirms it.

`StateTrackingReward` pays ``success_bonus`` when the world model's last object state meets the
task's rule. A search that maximises that return finds plans the world model over-rates: a grasp
that closes only where the world model put the object, a box that stops on the mark only in its
prediction. This reward reads the whole object path the world model predicted
(`RewardInput.object_path`) and pays, on the episode's last step, ``success_bonus`` times the
probability that the simulator calls the episode a success, from a `Calibrator` trained on
candidate plans replayed in the simulator (``psi-gym train-calibrator``;
`psi_gym.rewards.success_calibration`). Per env row at step t:

* every step: the tracking reward ``exp(-|p - q| / sigma)`` of `StateTrackingReward` (``p`` the
  world model's object centre, ``q`` the human demo's after as many steps);
* on the last step (``batch.last``): + ``success_bonus * P`` with ``P`` the calibrated probability
  of the row's path (`path_features`); the verdict (`RewardOutput.success`) is the task's rule on
  the last state **and** ``P >= success_threshold``.

``info`` per step: ``object_distance`` (m) and ``success_probability`` (``P`` on last steps, NaN
elsewhere). Measured as the objective of CEM inside the shipped W0 (README, "Measured figures"):
sim success of the refined plans and W0's ranking of candidates against the simulator's.

The shipped calibrator (``"default"``) was trained on the shipped W0's paths: with another world
model, train one on that model's paths (``psi-gym train-calibrator --world-model DIR``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psi_gym.rewards.base import RewardInput, RewardOutput
from psi_gym.rewards.state_tracking import state_tracking_reward

DEFAULT_CALIBRATOR = Path(__file__).resolve().parents[1] / "assets" / "calibrator-default" / "calibrator.safetensors"


@dataclass
class CalibratedStateRewardConfig:
    """Numbers of `CalibratedStateReward`."""

    sigma: float = 0.02
    """distance scale of the tracking reward ``exp(-d / sigma)``, metres."""
    success_bonus: float = 20.0
    """paid times the calibrated probability on the last step. In W0's dynamics search 20 gained
    more than 10 (README); the tracking reward of a whole episode is at most its length (40)."""
    success_threshold: float = 0.5
    """the verdict needs the task's rule on the last state and a probability at least this."""

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0 metres, got {self.sigma}")
        if not (np.isfinite(self.success_bonus) and self.success_bonus >= 0):
            raise ValueError(f"success_bonus must be a finite number >= 0, got {self.success_bonus}")
        if not 0.0 <= self.success_threshold <= 1.0:
            raise ValueError(f"success_threshold must be a probability in [0, 1], got {self.success_threshold}")


def resolve_calibrator(calibrator: Any) -> Any:
    """``"default"`` (the shipped one), a file `Calibrator.save` wrote, or a `Calibrator` -> a `Calibrator`."""
    # torch is imported here, on first use, so that `import psi_gym.rewards` stays light
    from psi_gym.rewards.success_calibration import PATH_FEATURES, Calibrator, load_calibrator

    if isinstance(calibrator, Calibrator):
        if calibrator.features != PATH_FEATURES:
            raise ValueError(f"the calibrator reads {list(calibrator.features)}, not the path features {list(PATH_FEATURES)}")
        return calibrator
    path = DEFAULT_CALIBRATOR if str(calibrator) == "default" else Path(calibrator)
    return load_calibrator(path, features=PATH_FEATURES)


class CalibratedStateReward:
    """`StateTrackingReward`'s tracking, + ``success_bonus`` x the calibrated probability of success at the end (see the module doc).

    Args:
        calibrator: ``"default"`` (shipped, for the shipped W0), a calibrator file, or a `Calibrator`.
        config: `CalibratedStateRewardConfig`.
    """

    def __init__(self, calibrator: Any = "default",
                 config: CalibratedStateRewardConfig | None = None) -> None:
        self.calibrator = resolve_calibrator(calibrator)
        self.config = config or CalibratedStateRewardConfig()

    def __call__(self, batch: RewardInput) -> RewardOutput:
        from psi_gym.rewards.success_calibration import PATH_FEATURES, path_features

        config = self.config
        _, distance, reward = state_tracking_reward(batch, config.sigma, "calibrated_state")
        last = np.asarray(batch.last, bool)
        probability = np.full(len(batch), np.nan)
        success = np.zeros(len(batch), bool)
        rows = np.flatnonzero(last)
        if len(rows):
            if batch.object_path is None:
                raise ValueError("the calibrated_state reward reads the episode's object path (RewardInput.object_path, "
                                 "(N, L+1, 3) metres), which this env does not hand over")
            features = np.stack([path_features(np.asarray(batch.object_path[i, : int(batch.step[i]) + 1], np.float64),
                                               batch.episodes[i].task, batch.episodes[i].scene,
                                               batch.episodes[i].human_object_pose, config.sigma) for i in rows])
            probability[rows] = self.calibrator.probability(features)
            verdict = features[:, PATH_FEATURES.index("verdict")] > 0.5
            success[rows] = verdict & (probability[rows] >= config.success_threshold)
            reward[rows] += config.success_bonus * probability[rows]
        return RewardOutput(reward=reward.astype(np.float32), success=success,
                            info={"object_distance": distance.astype(np.float32),
                                  "success_probability": probability.astype(np.float32)})

    def __repr__(self) -> str:
        return f"CalibratedStateReward({self.config})"

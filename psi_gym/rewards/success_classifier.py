"""Reward from a learned success classifier on predicted frames (the estimator's success head).

Per env row: ``p`` = the `ObjectStateEstimator`'s probability that the predicted frame shows the
row's task done (the simulator's success condition, `psi_gym.sim.tasks.Task.is_success`, read off
the frame). Success is judged at the end of the episode: on its last step (``batch.last``), when
``p > threshold``. Reward: sparse, ``1`` on the last step of a successful episode and ``0``
otherwise; or with ``dense=True``, ``p`` every step (a shaping signal; the verdict is the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from psi_gym.rewards.base import RewardInput, RewardOutput

if TYPE_CHECKING:
    from psi_gym.rewards.object_state import ObjectStateEstimator


@dataclass
class SuccessClassifierRewardConfig:
    """Numbers of `SuccessClassifierReward`."""

    threshold: float = 0.5
    """success when the success probability of the final frame exceeds this."""
    dense: bool = False
    """reward the probability every step instead of 1 on the last step of a success."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1], got {self.threshold}")


class SuccessClassifierReward:
    """Success probability of the predicted frame, from the estimator's success head.

    Args:
        estimator: an `ObjectStateEstimator`, ``"default"``, a checkpoint folder, or ``"random"``.
        config: threshold and sparse/dense.

    ``success`` is the verdict on rows at their last step (False elsewhere). ``info`` per step:
    ``success_probability``.
    """

    def __init__(self, estimator: ObjectStateEstimator | str = "default",
                 config: SuccessClassifierRewardConfig | None = None) -> None:
        from psi_gym.rewards.object_state import load_estimator

        self.estimator = load_estimator(estimator)
        self.config = config or SuccessClassifierRewardConfig()

    def __call__(self, batch: RewardInput) -> RewardOutput:
        tasks = [episode.task for episode in batch.episodes]
        probability = self.estimator.success_probability(batch.frames, tasks).cpu().numpy().astype(np.float32)
        success = np.asarray(batch.last, bool) & (probability > self.config.threshold)
        reward = probability if self.config.dense else success.astype(np.float32)
        return RewardOutput(reward=reward, success=success, info={"success_probability": probability})

    def __repr__(self) -> str:
        return f"SuccessClassifierReward({self.config})"

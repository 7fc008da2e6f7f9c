"""Object-centric reward: track the human demo's object trajectory, read off predicted frames.

A world model predicts pixels, not simulator state, so the object's position is read off each
predicted frame by the learned `ObjectStateEstimator` (`psi_gym.rewards.object_state`). The
human demonstration already moved the object the way the task wants; the robot should move it
the same way, whatever its hand does (the report's "object-centric" refinement).

Notation, per env row at step t (the frame is t+1):

* ``p``  estimated object centre in the predicted frame (m);
* ``q``  the human demo's object centre after the same number of steps, ``q = pose[min(t+1, T)][:3]``;
* ``d = |p - q|``;  tracking reward ``exp(-d / sigma)`` in (0, 1];
* success when the estimator's success probability for the row's task exceeds the threshold:
  the env terminates the episode, and the step pays ``1 x (T - (t+1))`` (the most tracking
  reward the ended episode forgoes, so finishing early never loses) plus ``success_bonus``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from psi_gym.rewards.base import RewardInput, RewardOutput

if TYPE_CHECKING:
    from psi_gym.rewards.object_state import ObjectStateEstimator


@dataclass
class ObjectTrackingRewardConfig:
    """Numbers of `ObjectTrackingReward`."""

    sigma: float = 0.02
    """distance scale of the tracking reward ``exp(-d / sigma)``, metres."""
    success_threshold: float = 0.5
    """success when the estimator's success probability exceeds this."""
    success_bonus: float = 1.0
    """paid once, on the successful step, on top of the forgone tracking reward."""
    failure_distance: float | None = None
    """if set, end the episode (``terminated``, not a success) when ``d`` exceeds it (m): the
    object went somewhere the demo never did. Off by default: estimates on predicted frames are
    noisy."""

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0 metres, got {self.sigma}")
        if not 0.0 <= self.success_threshold <= 1.0:
            raise ValueError(f"success_threshold must be a probability in [0, 1], got {self.success_threshold}")
        if self.failure_distance is not None and not self.failure_distance > 0:
            raise ValueError(f"failure_distance must be > 0 metres or None, got {self.failure_distance}")


class ObjectTrackingReward:
    """Dense tracking of the human demo's object trajectory + success bonus (see the module doc).

    Args:
        estimator: an `ObjectStateEstimator`, ``"default"`` (the shipped one), a checkpoint folder,
            or ``"random"`` (untrained, for speed checks and smoke tests).
        config: the reward's numbers.

    ``info`` per step: ``object_distance`` (m) and ``success_probability``.
    """

    def __init__(self, estimator: ObjectStateEstimator | str = "default",
                 config: ObjectTrackingRewardConfig | None = None) -> None:
        from psi_gym.rewards.object_state import load_estimator

        self.estimator = load_estimator(estimator)
        self.config = config or ObjectTrackingRewardConfig()

    def __call__(self, batch: RewardInput) -> RewardOutput:
        config = self.config
        tasks = [episode.task for episode in batch.episodes]
        output = self.estimator.predict(batch.frames)
        position = output.position.cpu().numpy()
        index = self.estimator.task_indices(tasks, len(batch)).to(output.success_logits.device)
        probability = output.success_logits.gather(1, index[:, None])[:, 0].sigmoid().cpu().numpy()

        goal = np.stack([
            episode.human_object_pose[min(int(step), episode.num_steps), :3]
            for episode, step in zip(batch.episodes, batch.step)
        ])
        distance = np.linalg.norm(position - goal, axis=-1)
        reward = np.exp(-distance / config.sigma)
        success = probability > config.success_threshold
        remaining = np.array([max(e.num_steps - int(s), 0) for e, s in zip(batch.episodes, batch.step)], dtype=np.float32)
        reward = np.where(success, reward + remaining + config.success_bonus, reward)
        failed = np.zeros_like(success) if config.failure_distance is None else (distance > config.failure_distance) & ~success
        return RewardOutput(
            reward=reward.astype(np.float32),
            success=success,
            terminated=failed,
            info={"object_distance": distance.astype(np.float32), "success_probability": probability.astype(np.float32)},
        )

    def __repr__(self) -> str:
        return f"ObjectTrackingReward({self.config})"

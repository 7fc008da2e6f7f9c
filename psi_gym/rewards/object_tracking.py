"""Object-centric reward: track the human demo's object trajectory, read off predicted frames.

A world model predicts pixels, not simulator state, so the object's position is read off each
predicted frame by the learned `ObjectStateEstimator` (`psi_gym.rewards.object_state`). The
human demonstration already moved the object the way the task wants; the robot should move it
the same way, whatever its hand does (the report's "object-centric" refinement).

Notation, per env row at step t (the frame is t+1; ``T`` the demo's length):

* ``p``  estimated object centre in the predicted frame (m);
* ``q``  the human demo's object centre after the same number of steps, ``q = pose[min(t+1, T)][:3]``;
* ``d = |p - q|``;  tracking reward ``exp(-d / sigma)`` in (0, 1], every step;
* on the episode's last step (``batch.last``, the env's fixed horizon): the verdict. Success when
  the estimator's success probability for the row's task, on that final predicted frame, exceeds
  the threshold (the estimator reads the simulator's one success definition,
  `psi_gym.sim.tasks.Task.is_success`, off a frame); a success pays ``success_bonus`` on top.

Success is judged at the end only: a box sliding over the mark on its way past it is no success.
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
    """success when the estimator's success probability on the final frame exceeds this."""
    success_bonus: float = 10.0
    """paid on the last step of a successful episode, on top of that step's tracking reward (the
    tracking reward of a whole episode is at most its length, 40 for the shipped demos)."""
    failure_distance: float | None = None
    """if set, end the episode (``terminated``, not a success) when ``d`` exceeds it (m): the
    object went somewhere the demo never did. Off by default: estimates on predicted frames are
    noisy."""

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0 metres, got {self.sigma}")
        if not 0.0 <= self.success_threshold <= 1.0:
            raise ValueError(f"success_threshold must be a probability in [0, 1], got {self.success_threshold}")
        if not (np.isfinite(self.success_bonus) and self.success_bonus >= 0):
            raise ValueError(f"success_bonus must be a finite number >= 0, got {self.success_bonus}")
        if self.failure_distance is not None and not self.failure_distance > 0:
            raise ValueError(f"failure_distance must be > 0 metres or None, got {self.failure_distance}")


def demo_object_goal(batch: RewardInput) -> np.ndarray:
    """(N, 3) ``q``: the human demo's object centre after each row's number of steps (m)."""
    return np.stack([episode.human_object_pose[min(int(step), episode.num_steps), :3]
                     for episode, step in zip(batch.episodes, batch.step)])


class ObjectTrackingReward:
    """Dense tracking of the human demo's object trajectory + a success bonus at the end of the
    episode (see the module doc).

    Args:
        estimator: an `ObjectStateEstimator`, ``"default"`` (the shipped one), a checkpoint folder,
            or ``"random"`` (untrained, for speed checks and smoke tests).
        config: the reward's numbers.

    ``success`` is the verdict on rows at their last step (False elsewhere). ``info`` per step:
    ``object_distance`` (m) and ``success_probability`` (of the predicted frame).
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

        distance = np.linalg.norm(position - demo_object_goal(batch), axis=-1)
        reward = np.exp(-distance / config.sigma)
        failed = np.zeros(len(batch), bool) if config.failure_distance is None else distance > config.failure_distance
        success = np.asarray(batch.last, bool) & (probability > config.success_threshold) & ~failed
        reward = np.where(success, reward + config.success_bonus, reward)
        return RewardOutput(
            reward=reward.astype(np.float32),
            success=success,
            terminated=failed,
            info={"object_distance": distance.astype(np.float32), "success_probability": probability.astype(np.float32)},
        )

    def __repr__(self) -> str:
        return f"ObjectTrackingReward({self.config})"

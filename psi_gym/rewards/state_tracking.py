"""Object-centric reward read off the stepper's object state instead of its frames.

A state-grounded world model (the shipped Psi-W0) predicts the object's position at every step
and draws the frame from it (`psi_gym.world_model.dynamics`); the simulator knows it exactly.
This reward reads that position (`RewardInput.object_position`) directly, so no estimator stands
between the prediction and the reward: the same tracking reward and success rule as
`ObjectTrackingReward`, with the estimator's reading replaced by the state. In PsiW0-Retarget it
is W0's own tracked state (``reward_model="state_tracking"``); in PsiSim-Retarget the true one (its
default). Notation, per env row at step t (``T`` the demo's
length):

* ``p``  the object centre after the step, as the world model (or the simulator) has it (m);
* ``q``  the human demo's object centre after the same number of steps, ``q = pose[min(t+1, T)][:3]``;
* ``d = |p - q|``;  tracking reward ``exp(-d / sigma)`` in (0, 1], every step;
* on the episode's last step (``batch.last``): the verdict, `psi_gym.sim.tasks.Task.is_success`
  (the one success definition) applied to ``p`` with the row's scene; a success pays
  ``success_bonus`` on top.

It needs a world model that predicts the object's position: the env hands NaN where the world
model predicts none (a frame-only video model), and this reward then raises a ValueError that
says to use ``object_tracking``. It loads no network: a step costs microseconds.
"""

from __future__ import annotations

import numpy as np

from psi_gym.rewards.base import RewardInput, RewardOutput
from psi_gym.rewards.object_tracking import ObjectTrackingRewardConfig, demo_object_goal
from psi_gym.sim.tasks import get_task


def state_tracking_reward(batch: RewardInput, sigma: float, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(p, d, exp(-d / sigma))`` of every row (see the module doc), float64; a ValueError that says
    to use ``object_tracking`` where the world model predicts no object position (``name``: the
    reward model's, for the message)."""
    position = np.asarray(batch.object_position, dtype=np.float64)
    if position.shape != (len(batch), 3) or not np.isfinite(position).all():
        raise ValueError(
            f"the {name} reward reads the world model's object position (RewardInput.object_position, "
            f"(N, 3) finite metres), got shape {position.shape} with non-finite values or the wrong shape: this "
            "world model predicts no object state; use reward_model='object_tracking' (reads the frames)")
    distance = np.linalg.norm(position - demo_object_goal(batch), axis=-1)
    return position, distance, np.exp(-distance / sigma)


class StateTrackingReward:
    """Dense tracking of the human demo's object trajectory by the stepper's object position, + the task's success rule on it at the end of the episode (see the module doc).

    Args:
        config: the numbers of `ObjectTrackingReward` (``success_threshold`` is not used: the
            verdict is the task's rule itself, not a probability).

    ``info`` per step: ``object_distance`` (m).
    """

    def __init__(self, config: ObjectTrackingRewardConfig | None = None) -> None:
        self.config = config or ObjectTrackingRewardConfig()

    def __call__(self, batch: RewardInput) -> RewardOutput:
        config = self.config
        position, distance, reward = state_tracking_reward(batch, config.sigma, "state_tracking")
        failed = np.zeros(len(batch), bool) if config.failure_distance is None else distance > config.failure_distance
        last = np.asarray(batch.last, bool)
        success = np.array([bool(last[i]) and not failed[i] and get_task(episode.task).is_success(episode.scene, position[i])
                            for i, episode in enumerate(batch.episodes)], dtype=bool)
        reward = np.where(success, reward + config.success_bonus, reward)
        return RewardOutput(reward=reward.astype(np.float32), success=success, terminated=failed,
                            info={"object_distance": distance.astype(np.float32)})

    def __repr__(self) -> str:
        return f"StateTrackingReward({self.config})"

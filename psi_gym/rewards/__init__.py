"""Reward models: judge the world model's predicted steps, in batches.

Interface (``base.py``): ``reward_model(batch: RewardInput) -> RewardOutput``. Built-ins:
`ObjectTrackingReward` (track the human demo's object trajectory, read off predicted frames by
the learned object-state estimator, + success bonus), `SuccessClassifierReward` (the
estimator's success head), `StateTrackingReward` (the same tracking and success rule on the
world model's own object state, no estimator), `CalibratedStateReward` (that tracking, the success
bonus times a calibrated probability that the simulator confirms it: ``success_calibration.py``,
trained by ``psi-gym train-calibrator``), `CallableReward` (a user's function). `resolve_reward_model` turns
what ``gym.make(..., reward_model=...)`` accepts into one. The estimator itself is in
``object_state.py`` (`load_estimator`: a name or folder -> an estimator, once per weights), its
training in ``estimator_training.py``, the ``psi-gym train-estimator`` command in ``commands.py``.
"""

from typing import Any

from psi_gym.rewards.base import (
    EpisodeContext,
    RewardInput,
    RewardModel,
    RewardOutput,
    as_reward_output,
)
from psi_gym.rewards.object_tracking import (
    ObjectTrackingReward,
    ObjectTrackingRewardConfig,
)
from psi_gym.rewards.resolve import REWARD_MODELS, resolve_reward_model
from psi_gym.rewards.success_classifier import (
    SuccessClassifierReward,
    SuccessClassifierRewardConfig,
)
from psi_gym.rewards.user_function import CallableReward
from psi_gym.rewards.state_tracking import StateTrackingReward
from psi_gym.rewards.calibrated_state import CalibratedStateReward, CalibratedStateRewardConfig

__all__ = [
    "REWARD_MODELS",
    "CalibratedStateReward",
    "CalibratedStateRewardConfig",
    "CallableReward",
    "EpisodeContext",
    "ObjectTrackingReward",
    "ObjectTrackingRewardConfig",
    "RewardInput",
    "RewardModel",
    "RewardOutput",
    "SuccessClassifierReward",
    "SuccessClassifierRewardConfig",
    "StateTrackingReward",
    "as_reward_output",
    "load_estimator",
    "resolve_reward_model",
]


def __getattr__(name: str) -> Any:
    # the estimator needs torch and diffusers: imported on first use, so that the CLI and
    # `from psi_gym.rewards import RewardInput` stay light
    if name == "load_estimator":
        from psi_gym.rewards.object_state import load_estimator

        return load_estimator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

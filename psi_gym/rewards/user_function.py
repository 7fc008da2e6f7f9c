"""A reward model made from a user's function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psi_gym.rewards.base import RewardInput, RewardOutput, as_reward_output


class CallableReward:
    """Wrap ``fn(batch: RewardInput)`` returning ``N`` rewards (array-like) or a `RewardOutput`.

    Example::

        def lift_wrist(batch):
            return batch.state[:, 2]            # reward the wrist height (m)

        env = gym.make("PsiW0-Retarget-v0", reward_model=lift_wrist)   # wrapped for you

    Plain rewards give no verdict (``info["success"]`` stays False). For one, return a
    `RewardOutput` whose ``success`` says, for the rows on their last step (``batch.last``),
    whether the task is done at the end of the episode.
    """

    def __init__(self, fn: Callable[[RewardInput], Any]) -> None:
        if not callable(fn):
            raise TypeError(f"CallableReward needs a callable, got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, batch: RewardInput) -> RewardOutput:
        return as_reward_output(self.fn(batch), len(batch), source=f"reward function {self.name}")

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", None) or type(self.fn).__name__

    def __repr__(self) -> str:
        return f"CallableReward({self.name})"

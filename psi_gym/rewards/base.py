"""The reward-model interface: what an env hands a reward model each step, and what it gets back.

A reward model judges a *batch* of predicted steps (one row per environment): the world model
predicted frame t+1 and joint state t+1 after the policy's action at step t. It is any callable

    reward_model(batch: RewardInput) -> RewardOutput

(`RewardModel`). A plain function that returns an array of N rewards works too (wrap it in
`psi_gym.rewards.CallableReward`, or pass it to ``gym.make(..., reward_model=fn)``).

Units and shapes (``N`` rows, ``H = W`` image size, 22 robot joints):

=================== ======================= ===============================================
RewardInput field   shape, dtype            meaning
=================== ======================= ===============================================
frames              (N, H, W, 3) uint8      predicted camera frame t+1
state               (N, 22) float32         predicted joint positions t+1 (m, rad)
action              (N, 22) float32         the policy's action at t, in [-1, 1]
target              (N, 22) float32         the absolute joint targets it was mapped to
step                (N,) int64              t+1: steps taken in the episode, this one included
object_position     (N, 3) float32          the world model's own object position (m); NaN
                                            where the world model predicts none
episodes            N `EpisodeContext`      what each row's episode is about (demo, task...)
last                (N,) bool               this is the row's last step: its episode ends here
                                            (the env's fixed horizon), the verdict step
object_path         (N, L+1, 3) float32     the world model's object position after 0 .. L
                    or None                 steps of each row's episode (row s: after s
                                            steps; row 0 its reading of the first frame;
                                            rows past ``step``, and where it predicts no
                                            object, NaN); None where the env keeps none
=================== ======================= ===============================================

Success is judged at the END of the episode (`psi_gym.sim.tasks.Task.is_success`, the one
definition): an episode lasts its full horizon, and on its last step (``last``) the reward model
says whether the task is done (`RewardOutput.success`; the env reads it only where ``last`` is
True). It may end an episode early with ``terminated`` (an irrecoverable failure), which is never
a success.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from psi_gym.sim.scene import SceneParams


@dataclass(frozen=True)
class EpisodeContext:
    """What one environment's episode is about; fixed from reset to the episode's end.

    Args:
        task: task name (`psi_gym.sim.tasks.TASKS`).
        instruction: the task's instruction text.
        scene: the demo's scene (object size, start pose, mark...).
        reference: (T+1, 22) float32 retargeted robot joint targets of the demo, as retargeted
            (not clipped to the joint ranges; the robot clips them when it executes them).
        human_object_pose: (T+1, 7) float32 the human demo's object trajectory (position in m,
            quaternion w, x, y, z); row ``t`` is the pose after ``t`` steps.
        demo_id: a stable name of the demo (the human demo's id where known).
        demo_index: the demo's position in its dataset (-1 for a demo passed as an `Episode`).
    """

    task: str
    instruction: str
    scene: SceneParams
    reference: np.ndarray
    human_object_pose: np.ndarray
    demo_id: str
    demo_index: int = -1

    @property
    def num_steps(self) -> int:
        """T: the demo's length in control steps."""
        return int(self.reference.shape[0]) - 1


@dataclass
class RewardInput:
    """One batched env step, as the reward model sees it (see the module doc for the table)."""

    frames: np.ndarray
    state: np.ndarray
    action: np.ndarray
    target: np.ndarray
    step: np.ndarray
    object_position: np.ndarray
    episodes: Sequence[EpisodeContext]
    last: np.ndarray | None = None
    """(N,) bool, the rows on their episode's last step; None (built by hand) means none is."""
    object_path: np.ndarray | None = None
    """(N, L+1, 3) float32, the object's path so far (see the module doc); None: not kept."""

    def __post_init__(self) -> None:
        if self.last is None:
            self.last = np.zeros(len(self), bool)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class RewardOutput:
    """What a reward model returns for ``N`` rows.

    Args:
        reward: (N,) float32 rewards.
        success: (N,) bool, the task is done at the end of the episode, or None. Only meaningful
            for rows on their last step (``batch.last``): the env's verdict; ignored elsewhere.
        terminated: (N,) bool, end the episode now (an irrecoverable failure: never a success),
            or None.
        info: extra (N,) arrays the env copies into each step's ``info`` (diagnostics).
    """

    reward: np.ndarray
    success: np.ndarray | None = None
    terminated: np.ndarray | None = None
    info: dict[str, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class RewardModel(Protocol):
    """Anything that maps a `RewardInput` batch to a `RewardOutput`."""

    def __call__(self, batch: RewardInput) -> RewardOutput: ...


def as_reward_output(value: Any, num_rows: int, source: str = "the reward model") -> RewardOutput:
    """Check (and normalise) what a reward model returned for ``num_rows`` rows.

    Accepts a `RewardOutput` or anything array-like of ``num_rows`` rewards.

    Raises:
        ValueError: None, wrong shape, NaN/inf rewards, non-boolean flags, saying which.
    """
    if value is None:
        raise ValueError(
            f"{source} returned None; expected a RewardOutput or {num_rows} rewards (one per env) "
            "- does it end with a `return`?"
        )
    if not isinstance(value, RewardOutput):
        try:
            reward = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{source} returned {type(value).__name__}; expected a RewardOutput or {num_rows} rewards ({error})"
            ) from None
        value = RewardOutput(reward=reward)
    if value.reward is None:
        raise ValueError(f"{source} returned a RewardOutput with reward=None; expected {num_rows} rewards (one per env)")
    try:
        reward = np.asarray(value.reward, dtype=np.float32).reshape(-1) if np.ndim(value.reward) <= 1 else None
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source} returned a RewardOutput whose reward is {type(value.reward).__name__}; "
                         f"expected {num_rows} float rewards ({error})") from None
    if reward is None or reward.shape != (num_rows,):
        raise ValueError(f"{source} must return {num_rows} rewards (one per env), got shape {np.shape(value.reward)}")
    if not np.isfinite(reward).all():
        raise ValueError(f"{source} returned NaN or inf rewards: {reward}")
    flags = {}
    for name in ("success", "terminated"):
        flag = getattr(value, name)
        if flag is None:
            flags[name] = None
            continue
        flag = np.asarray(flag)
        if flag.dtype != np.bool_ or flag.shape != (num_rows,):
            raise ValueError(f"{source} must return {name} as ({num_rows},) bool or None, got {flag.dtype} {flag.shape}")
        flags[name] = flag.copy()
    info = {}
    for key, array in dict(value.info).items():
        array = np.asarray(array)
        if array.shape[:1] != (num_rows,):
            raise ValueError(f"{source} info[{key!r}] must have {num_rows} rows, got shape {array.shape}")
        info[key] = array
    return RewardOutput(reward=reward.copy(), success=flags["success"], terminated=flags["terminated"], info=info)


__all__ = ["EpisodeContext", "RewardInput", "RewardModel", "RewardOutput", "as_reward_output"]

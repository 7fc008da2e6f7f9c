"""Verify a robot trajectory in the ground-truth world: replay its joint targets, judge the end.

This is the oracle every headline number rests on. A trajectory made anywhere (refined inside
Psi-W0, output by a policy, retargeted raw) counts as a success only if the simulator, replaying
its *absolute joint targets* open loop from the same scene and start joints, ends with the task
done by the task's own definition (`psi_gym.sim.tasks.Task.is_success`, judged on the object's
pose after the last step).

* `replay_verdict(scene, start_qpos, joint_targets)`: the verdict of one run of targets;
* `verify(episode)`: the same for anything shaped like an `Episode` (``scene`` dict, ``state``
  (T+1, 22) whose row 0 is the start, ``action`` (T, 22) absolute targets): the sim does not
  import the data part, so the episode is duck-typed;
* `horizon_targets(reference, actions, ...)`: the env's own rule mapping residual actions on a
  reference to the joint targets it applies (PsiW0-Retarget-v0's ``action_mode="residual"``),
  for trajectories that were never stepped through an env (controls, searches scored here).

Notation (``T`` = the demo's length in steps, ``H`` = the episode's length, ``t`` = step):

* ``ref``  (T+1, 22) the retargeted reference, clipped to the joint ranges, held at ``ref[T]``;
* ``a_t``  (22,) residual action in [-1, 1] (``a = 0``: the raw retarget);
* target ``q*_t = clip(ref[min(t+1, T)] + gain * s * a_t)`` for ``t < H``
  (`psi_gym.sim.hands.residual_joint_targets`, ``s`` = `residual_scale`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from psi_gym.sim.hands import hand_spec, residual_joint_targets, residual_scale
from psi_gym.sim.replay import Recording, replay_targets
from psi_gym.sim.scene import SceneParams
from psi_gym.sim.tasks import get_task
from psi_gym.sim.world import SimulationUnstable, get_world


@dataclass
class Verdict:
    """The simulator's judgement of one trajectory.

    Args:
        success: the task's success on the final state (False when the run went unstable).
        object_pose: (7,) float32 object position (m) and quaternion (w, x, y, z) after the last
            step (the last pose reached when unstable).
        num_steps: joint targets replayed.
        unstable: MuJoCo went unstable (a target rammed a finger into the table): no success.
        recording: the per-frame record of the replay (frames only when rendered), None when unstable.
    """

    success: bool
    object_pose: np.ndarray
    num_steps: int
    unstable: bool = False
    recording: Recording | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"success": bool(self.success), "object_pose": self.object_pose.tolist(),
                "num_steps": int(self.num_steps), "unstable": bool(self.unstable)}


def replay_verdict(scene: SceneParams | dict[str, Any], start_qpos: np.ndarray, joint_targets: np.ndarray,
                   render: bool = False, hand: str = "robot", image_size: int = 64) -> Verdict:
    """Replay absolute ``joint_targets`` (T, J) from ``start_qpos`` (J,) in ``scene``; judge the end.

    Raises:
        ValueError: targets that are not (T >= 1, J) finite numbers, or a start of the wrong size.
    """
    scene = scene if isinstance(scene, SceneParams) else SceneParams.from_dict(dict(scene))
    get_task(scene.task)  # an unknown task fails here, with the list of known ones
    spec = hand_spec(hand)
    targets = np.asarray(joint_targets, dtype=np.float64)
    start = np.asarray(start_qpos, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[0] < 1 or targets.shape[1] != spec.num_joints:
        raise ValueError(f"joint_targets must be (T >= 1, {spec.num_joints}) absolute joint targets, got {targets.shape}")
    if start.shape != (spec.num_joints,):
        raise ValueError(f"start_qpos must be ({spec.num_joints},), got {start.shape}")
    if not (np.isfinite(targets).all() and np.isfinite(start).all()):
        raise ValueError("joint_targets / start_qpos contain NaN or inf")
    world = get_world(hand, scene.object_kind, image_size)
    try:
        recording = replay_targets(world, scene, targets, start_qpos=start, render=render)
    except SimulationUnstable:
        return Verdict(False, world.object_pose().copy(), len(targets), unstable=True)
    # Task.is_success on the final object pose: what World.is_success (and so the recording) says
    return Verdict(bool(recording.success), recording.object_pose[-1].copy(), len(targets), recording=recording)


def verify(episode: Any, render: bool = False) -> Verdict:
    """The simulator's verdict on an episode's trajectory (duck-typed `psi_gym.data.Episode`):
    its ``action`` (absolute joint targets) replayed open loop from ``state[0]`` in ``scene``.

    Raises:
        ValueError: an episode without a scene, a start state or actions of the robot's size.
    """
    missing = [name for name in ("scene", "state", "action") if getattr(episode, name, None) is None]
    if missing:
        raise ValueError(f"verify needs an episode with scene, state and action; missing {missing}")
    hand = getattr(episode, "embodiment", "robot") or "robot"
    state = np.asarray(episode.state)
    if state.ndim != 2 or len(state) < 1:
        raise ValueError(f"episode.state must be (T+1, J), got {state.shape}")
    return replay_verdict(episode.scene, state[0], episode.action, render=render, hand=hand)


def horizon_targets(reference: np.ndarray, actions: np.ndarray | None = None, num_steps: int | None = None,
                    gain: float = 1.0) -> np.ndarray:
    """The joint targets the env applies for residual ``actions`` (H, 22) on ``reference`` (T+1, 22).

    ``actions=None`` is the raw retarget (``a = 0``) over ``num_steps`` steps (default ``T``). See the
    module doc for the rule; it is PsiW0-Retarget-v0's ``action_mode="residual"`` (a test holds the two
    together).
    """
    # float32 throughout, as the env computes them: the same numbers to the bit
    spec = hand_spec("robot")
    ranges = spec.joint_ranges().astype(np.float32)
    reference = np.clip(np.asarray(reference, dtype=np.float32), ranges[:, 0], ranges[:, 1])
    if reference.ndim != 2 or reference.shape[0] < 2 or reference.shape[1] != spec.num_joints:
        raise ValueError(f"reference must be (T+1 >= 2, {spec.num_joints}), got {reference.shape}")
    demo_steps = reference.shape[0] - 1
    if actions is None:
        actions = np.zeros((num_steps or demo_steps, spec.num_joints), np.float32)
    actions = np.clip(np.asarray(actions, dtype=np.float32), -1.0, 1.0)
    if actions.ndim != 2 or actions.shape[1] != spec.num_joints:
        raise ValueError(f"actions must be (H, {spec.num_joints}) in [-1, 1], got {actions.shape}")
    index = np.minimum(np.arange(len(actions)) + 1, demo_steps)
    scale = (residual_scale(spec) * gain).astype(np.float32)
    return residual_joint_targets(reference[index], actions, scale, ranges).astype(np.float32)


__all__ = ["Verdict", "horizon_targets", "replay_verdict", "verify"]

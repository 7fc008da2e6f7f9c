"""Tasks of the ground-truth world: instruction, object, scene sampling, and success.

`Task.is_success` is THE success definition: decided from simulator state only (the object's
pose), never from pixels, and judged at the END of the episode. The simulator's verdict
(`psi_gym.sim.world.World.is_success`, `psi_gym.sim.replay.replay_targets`), the reward models
(their estimator is trained on it, frame by frame) and the env (its verdict on the last step of
a fixed-horizon episode) all mean this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psi_gym.sim.scene import SceneParams

LIFT_HEIGHT = 0.06  # m above the resting height that counts as lifted
PUSH_TOLERANCE = 0.02  # m between the box centre and the mark centre
EPISODE_SLACK = 8  # steps an episode lasts past its demo's length: the hand holds its last pose, the object settles
PUSH_REST_TOLERANCE = 0.02  # m above the resting height a pushed box may be and still rest on the table
# The workspace (m, world frame; table top at z = 0): an object outside it was flung or fell
# off the table (an apple at z = 4.6 m once counted as "lifted"), which is never a success.
WORKSPACE_LOW = np.array([-0.3, -0.3, -0.01])
WORKSPACE_HIGH = np.array([0.3, 0.3, 0.4])


def in_workspace(position: np.ndarray) -> bool:
    """Is the object centre ``position`` (3,) (m) finite and inside the workspace
    (|x| <= 0.3, |y| <= 0.3, -0.01 <= z <= 0.4)?"""
    position = np.asarray(position, dtype=np.float64)
    return bool(np.isfinite(position).all() and (position >= WORKSPACE_LOW).all() and (position <= WORKSPACE_HIGH).all())


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str
    object_kind: str
    num_steps: int  # control steps of a demonstration (10 Hz)

    @property
    def has_mark(self) -> bool:
        return self.name.startswith("push")

    def sample_scene(self, rng: np.random.Generator) -> SceneParams:
        """Randomise object size, mass, friction and initial pose, the mark, the hand's start."""
        kind = self.object_kind
        if kind == "apple":
            size = [rng.uniform(0.036, 0.044)]
            mass = rng.uniform(0.08, 0.14)
            friction = rng.uniform(0.7, 1.2)
        elif kind == "can":
            size = [rng.uniform(0.029, 0.034), rng.uniform(0.045, 0.055)]
            mass = rng.uniform(0.08, 0.15)
            friction = rng.uniform(0.7, 1.2)
        else:
            size = [rng.uniform(0.030, 0.038), rng.uniform(0.030, 0.038), rng.uniform(0.025, 0.032)]
            mass = rng.uniform(0.15, 0.30)
            friction = rng.uniform(0.4, 0.8)
        object_xy = rng.uniform(-0.04, 0.04, size=2)
        object_yaw = rng.uniform(-0.4, 0.4) if kind in ("box", "can") else rng.uniform(-np.pi, np.pi)
        mark_xy = [0.0, 0.0]
        if self.has_mark:
            # Push towards +x (across the camera's view), within +-0.35 rad.
            angle = rng.uniform(-0.35, 0.35)
            distance = rng.uniform(0.08, 0.12)
            mark_xy = list(object_xy + distance * np.array([np.cos(angle), np.sin(angle)]))
            object_xy = object_xy - np.array([0.04, 0.0])
            mark_xy[0] -= 0.04
        hand_start = [rng.uniform(-0.14, -0.10), rng.uniform(-0.03, 0.03), rng.uniform(0.17, 0.21), rng.uniform(-0.2, 0.2)]
        return SceneParams(
            task=self.name,
            object_kind=kind,
            object_size=[float(v) for v in size],
            object_mass=float(mass),
            object_friction=float(friction),
            object_xy=[float(v) for v in object_xy],
            object_yaw=float(object_yaw),
            mark_xy=[float(v) for v in mark_xy],
            hand_start=[float(v) for v in hand_start],
        )

    def is_success(self, scene: SceneParams, object_pose: np.ndarray) -> bool:
        """THE success definition, applied to the object's pose at the END of the episode.

        ``object_pose``: position (m) + quaternion (w, x, y, z), or just the position. Success
        needs the object inside the workspace (`in_workspace`: a flung object is a failure), and:

        * lift tasks: raised more than ``LIFT_HEIGHT`` (6 cm) above its resting height;
        * push: its centre within ``PUSH_TOLERANCE`` (2 cm) of the mark's, resting on the table
          (less than ``PUSH_REST_TOLERANCE`` above its resting height).

        Judged at the end of the episode by the simulator's verdict (`World.is_success`,
        `replay_targets`), by the reward models (on the last predicted frame) and by the env (its
        verdict on the last step): a box sliding over the mark and stopping beyond it fails.
        """
        position = np.asarray(object_pose, dtype=np.float64).reshape(-1)[:3]
        if not in_workspace(position):
            return False
        if self.name.startswith("lift"):
            return bool(position[2] > scene.object_rest_z + LIFT_HEIGHT)
        near_mark = np.linalg.norm(position[:2] - np.asarray(scene.mark_xy)) < PUSH_TOLERANCE
        return bool(near_mark and position[2] < scene.object_rest_z + PUSH_REST_TOLERANCE)


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("lift_apple", "lift the apple", "apple", 32),
        Task("lift_can", "lift the can", "can", 32),
        Task("push_box", "push the box to the mark", "box", 32),
    )
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: expected one of {sorted(TASKS)}")
    return TASKS[name]

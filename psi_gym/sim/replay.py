"""Run a sequence of joint targets in a `World` and record what happened."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psi_gym.sim.scene import SceneParams
from psi_gym.sim.world import World


@dataclass
class Recording:
    """Per-frame records of one run (``T`` steps -> ``T + 1`` frames)."""

    frames: np.ndarray  # (T+1, H, W, 3) uint8, empty (0, ...) when not rendered
    state: np.ndarray  # (T+1, J) float32 joint positions
    action: np.ndarray  # (T, J) float32 joint targets
    object_pose: np.ndarray  # (T+1, 7) float32
    tactile: np.ndarray  # (T+1, F) float32
    wrist_pose: np.ndarray  # (T+1, 7) float32
    keypoints: np.ndarray | None  # (T+1, 21, 3) float32, human hand only
    success: bool


def replay_targets(
    world: World,
    scene: SceneParams,
    targets: np.ndarray,
    start_qpos: np.ndarray | None = None,
    render: bool = True,
) -> Recording:
    """Reset `world` to `scene` (hand at `start_qpos`), apply each row of `targets`, record."""
    targets = np.asarray(targets, dtype=np.float64)
    world.reset(scene, start_qpos)
    frames, state, object_pose, tactile, wrist, keypoints = [], [], [], [], [], []
    human = world.spec.keypoint_sites

    def observe() -> None:
        if render:
            frames.append(world.render())
        state.append(world.joint_positions())
        object_pose.append(world.object_pose())
        tactile.append(world.tactile())
        wrist.append(world.wrist_pose())
        if human:
            keypoints.append(world.keypoints())

    observe()
    for target in targets:
        world.step(target)
        observe()
    size = world.image_size
    return Recording(
        frames=np.stack(frames) if render else np.zeros((0, size, size, 3), np.uint8),
        state=np.stack(state),
        action=targets.astype(np.float32),
        object_pose=np.stack(object_pose),
        tactile=np.stack(tactile),
        wrist_pose=np.stack(wrist),
        keypoints=np.stack(keypoints) if human else None,
        success=world.is_success(),
    )

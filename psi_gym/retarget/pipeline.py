"""Retarget a human demonstration and replay it on the robot in the ground-truth world."""

from __future__ import annotations

import numpy as np

from psi_gym.data.episode import Episode, EpisodeError
from psi_gym.retarget.retargeter import Retargeter
from psi_gym.sim.replay import replay_targets
from psi_gym.sim.scene import SceneParams
from psi_gym.sim.tasks import get_task
from psi_gym.sim.world import get_world


def reference_from_demo(demo: Episode, retargeter: Retargeter | None = None) -> np.ndarray:
    """Robot joint reference (T+1, 22): the retargeted pose of every human frame."""
    if demo.embodiment != "human" or demo.keypoints is None or demo.wrist_pose is None:
        raise EpisodeError("retargeting needs a human episode with keypoints and wrist_pose")
    return (retargeter or Retargeter()).retarget(demo.wrist_pose, demo.keypoints)


def replay_reference(scene: SceneParams, reference: np.ndarray, image_size: int = 64, render: bool = True):
    """Run a robot reference open loop: start at reference[0], target reference[t + 1] at step t."""
    world = get_world("robot", scene.object_kind, image_size)
    return replay_targets(world, scene, reference[1:], start_qpos=reference[0], render=render)


def retarget_episode(demo: Episode, retargeter: Retargeter | None = None, image_size: int | None = None) -> Episode:
    """The robot episode of a human demo's raw retargeted replay (source ``"retarget"``)."""
    reference = reference_from_demo(demo, retargeter)
    scene = SceneParams.from_dict(demo.scene)
    recording = replay_reference(scene, reference, image_size or demo.image_size[0])
    # What an env needs to start from this demo without the human data: the robot reference
    # and the human's object trajectory (the object-centric reward tracks it).
    return Episode.from_recording(
        recording, get_task(demo.task), scene, "robot", seed=demo.seed, source="retarget", tier=demo.tier,
        parent=str(demo.metadata.get("id", "")),
        metadata={
            "reference": reference.tolist(),
            "human_object_pose": demo.object_pose.tolist(),
            "human_success": bool(demo.success),
        },
    )

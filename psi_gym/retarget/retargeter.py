"""Kinematic retargeting: human wrist pose + 21 hand keypoints -> robot joint targets.

Notation (per frame):
  p_h, R_h   human wrist position and rotation (columns = hand x, y, z axes), world frame
  k_h^i      human keypoint i (MANO order), world frame; tips are i = 4, 8, 12, 16, 20
  c_h, c_r   palm centres of the human and robot hands in their own hand frames
  beta       scale of the robot hand over the human hand (wrist-to-middle-tip lengths)
  q_r        robot joints: wrist (x, y, z, yaw, pitch, roll), then 4 per finger

1. Wrist transfer, aligning palm centres: the robot's hand frame takes the human's rotation,
     R_r = R_h,   p_r = p_h + R_h (c_h - c_r),
   and (yaw, pitch, roll) are read off R_r = Rz(yaw) Ry(pitch) Rx(roll).
2. Fingertip position retargeting, scaled (as in dex-retargeting's "position" mode): the goal of
   robot tip j (thumb, index, middle, ring <- human thumb, index, middle, ring; the pinky has no
   robot counterpart) is
     g_j = p_r + beta R_h R_h^T (k_h^tip(j) - p_h),
   solved for the robot's finger joints by damped least squares on MuJoCo's kinematics,
   warm-started from the previous frame's solution (deterministic, temporally smooth).

The mapping is purely kinematic: it cannot know how hard the human squeezed (the keypoints sit
on the object's surface) nor that the robot's fingers are thicker and jointed differently.
That, not any injected error, is why a raw replay on the robot often fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psi_gym.sim.hands import hand_spec
from psi_gym.sim.kinematics import get_kinematics
from psi_gym.sim.rotations import matrix_to_yaw_pitch_roll, quat_to_matrix

HUMAN_TIPS = {"thumb": 4, "index": 8, "middle": 12, "ring": 16, "pinky": 20}


@dataclass
class RetargetConfig:
    scale: float | None = 1.0  # beta: fingertip goals at the human's own tip positions
    align_palm_centres: bool = True
    iterations: int = 30  # damped least-squares iterations per frame
    damping: float = 1e-4


class Retargeter:
    """Maps human hand frames onto the robot hand, frame by frame."""

    def __init__(self, config: RetargetConfig | None = None):
        self.config = config or RetargetConfig()
        self.human = hand_spec("human")
        self.robot = hand_spec("robot")
        self.kinematics = get_kinematics("robot")
        self.scale = self.config.scale if self.config.scale is not None else self.robot.length() / self.human.length()
        offset = np.asarray(self.human.palm_center) - np.asarray(self.robot.palm_center)
        self._palm_offset = offset if self.config.align_palm_centres else np.zeros(3)
        self._tip_index = [HUMAN_TIPS[f.name] for f in self.robot.fingers]

    def rest_qpos(self) -> np.ndarray:
        """Initial guess of the finger solve: mildly flexed fingers."""
        q = np.zeros(self.robot.num_joints)
        q[6:] = np.tile([0.0, 0.3, 0.3, 0.2], len(self.robot.fingers))
        return q

    def retarget_frame(self, wrist_pose: np.ndarray, keypoints: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """Robot joint positions (22,) for one human frame."""
        wrist_pose = np.asarray(wrist_pose, dtype=np.float64)
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if wrist_pose.shape != (7,) or keypoints.shape != (21, 3):
            raise ValueError(f"expected wrist_pose (7,) and keypoints (21, 3), got {wrist_pose.shape} and {keypoints.shape}")
        if not (np.isfinite(wrist_pose).all() and np.isfinite(keypoints).all()):
            raise ValueError("wrist pose or keypoints contain NaN or inf")
        p_h, rotation = wrist_pose[:3], quat_to_matrix(wrist_pose[3:])
        p_r = p_h + rotation @ self._palm_offset
        q = (self.rest_qpos() if previous is None else np.array(previous, dtype=np.float64)).copy()
        q[:3] = p_r
        q[3:6] = matrix_to_yaw_pitch_roll(rotation)
        goals = p_r + self.scale * (keypoints[self._tip_index] - p_h)
        return self.kinematics.solve_fingertips(q, goals, iterations=self.config.iterations, damping=self.config.damping)

    def retarget(self, wrist_poses: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Robot joint positions (T, 22) for a sequence of human frames (T, 7), (T, 21, 3)."""
        wrist_poses = np.asarray(wrist_poses)
        keypoints = np.asarray(keypoints)
        if wrist_poses.ndim != 2 or keypoints.ndim != 3 or len(wrist_poses) != len(keypoints):
            raise ValueError(f"expected (T, 7) wrist poses and (T, 21, 3) keypoints, got {wrist_poses.shape} and {keypoints.shape}")
        out = np.zeros((len(wrist_poses), self.robot.num_joints))
        previous = None
        for t in range(len(wrist_poses)):
            previous = out[t] = self.retarget_frame(wrist_poses[t], keypoints[t], previous)
        return out.astype(np.float32)

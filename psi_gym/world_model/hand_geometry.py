"""Where the robot hand's parts and the object are, in the world and in the image, in torch.

The robot's kinematics (its MJCF) and the fixed scene camera are known to any robot that runs
this world model, so W0 uses them as an inductive bias: a joint state becomes the positions of
the palm and finger links (`HandKinematics`, batched and differentiable forward kinematics), and
3-D points become pixels (`Camera`). Both are checked against MuJoCo in the tests.

Notation (MuJoCo's): a body ``b`` with parent ``p`` sits at ``x_b = x_p + R_p o_b`` with
orientation ``R_b = R_p Q_b`` (``o_b``, ``Q_b`` its offset and rotation in the parent); each of its
joints then acts in order: a slide joint moves ``x_b += R_b a q``, a hinge turns
``R_b <- R_b exp([a]_x q)`` about its axis ``a`` through the body origin.
"""

from __future__ import annotations

import mujoco
import numpy as np
import torch
from torch import nn

from psi_gym.sim.hands import hand_spec
from psi_gym.sim.kinematics import HandKinematics as SimHandKinematics
from psi_gym.sim.scene import CAMERA_FOVY, CAMERA_POS, CAMERA_XYAXES

HAND_POINTS = ("palm",) + tuple(f"{finger.name}_{part}" for finger in hand_spec("robot").fingers
                                for part in ("base", "mid", "dist", "tip"))
"""The points `HandKinematics` returns: the palm centre, then per finger (thumb, index, middle,
ring) its base, middle and distal joints and its fingertip."""
NUM_HAND_POINTS = len(HAND_POINTS)


def _quat_matrix(quat: np.ndarray) -> np.ndarray:
    matrix = np.zeros(9)
    mujoco.mju_quat2Mat(matrix, np.asarray(quat, dtype=np.float64))
    return matrix.reshape(3, 3)


def axis_angle_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: unit ``axis`` (3,) and ``angle`` (B,) -> rotation matrices (B, 3, 3)."""
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero]).reshape(3, 3).to(angle.dtype)
    sin, cos = angle.sin()[:, None, None], angle.cos()[:, None, None]
    eye = torch.eye(3, dtype=angle.dtype, device=angle.device)
    return eye + sin * skew + (1 - cos) * (skew @ skew)


class HandKinematics(nn.Module):
    """Batched forward kinematics of the robot hand.

    ``forward(q)``: joint positions (B, 22), `psi_gym.sim.hands.HandSpec` order -> points
    (B, `NUM_HAND_POINTS`, 3) in world coordinates (m, see `HAND_POINTS`) and the palm's rotation
    (B, 3, 3) (columns: the hand's x, y, z axes)."""

    def __init__(self) -> None:
        super().__init__()
        kinematics = SimHandKinematics("robot")
        model = kinematics.model
        joint_names = kinematics.spec.joint_names
        self.num_bodies = int(model.nbody)
        self.bodies: list[tuple[int, int, list[tuple[bool, int]]]] = []
        axes = []
        for body in range(1, model.nbody):
            joints = []
            for joint in range(model.body_jntadr[body], model.body_jntadr[body] + model.body_jntnum[body]):
                if not np.allclose(model.jnt_pos[joint], 0.0):
                    raise ValueError("HandKinematics assumes joints at their body's origin")
                name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint)
                joints.append((int(model.jnt_type[joint]) == int(mujoco.mjtJoint.mjJNT_SLIDE), joint_names.index(name), len(axes)))
                axes.append(model.jnt_axis[joint])
            self.bodies.append((body, int(model.body_parentid[body]), joints))
        self.register_buffer("axes", torch.tensor(np.asarray(axes), dtype=torch.float32), persistent=False)
        self.register_buffer("body_offset", torch.tensor(model.body_pos, dtype=torch.float32), persistent=False)
        rotations = np.stack([_quat_matrix(q) for q in model.body_quat])
        self.register_buffer("body_rotation", torch.tensor(rotations, dtype=torch.float32), persistent=False)
        self.palm_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "palm")
        palm_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "palm")
        points = [(self.palm_body, model.geom_pos[palm_geom].copy())]
        for finger in kinematics.spec.fingers:
            for part in ("base", "mid", "dist"):
                points.append((mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"{finger.name}_{part}"), np.zeros(3)))
            site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"{finger.name}_tip")
            points.append((int(model.site_bodyid[site]), model.site_pos[site].copy()))
        self.point_bodies = [body for body, _ in points]
        self.register_buffer("point_offsets", torch.tensor(np.stack([o for _, o in points]), dtype=torch.float32),
                             persistent=False)

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, dtype, device = q.shape[0], q.dtype, q.device
        position: list[torch.Tensor | None] = [None] * self.num_bodies
        rotation: list[torch.Tensor | None] = [None] * self.num_bodies
        position[0] = torch.zeros(batch, 3, dtype=dtype, device=device)
        rotation[0] = torch.eye(3, dtype=dtype, device=device).expand(batch, 3, 3)
        axes = self.axes.to(dtype)
        for body, parent, joints in self.bodies:
            x = position[parent] + rotation[parent] @ self.body_offset[body].to(dtype)
            r = rotation[parent] @ self.body_rotation[body].to(dtype)
            for slide, index, axis in joints:
                if slide:
                    x = x + (r @ axes[axis]) * q[:, index: index + 1]
                else:
                    r = r @ axis_angle_matrix(axes[axis], q[:, index])
            position[body], rotation[body] = x, r
        offsets = self.point_offsets.to(dtype)
        points = torch.stack([position[b] + rotation[b] @ offsets[i] for i, b in enumerate(self.point_bodies)], dim=1)
        return points, rotation[self.palm_body]


class Camera(nn.Module):
    """The scene's fixed ``front`` camera (`psi_gym.sim.scene.CAMERA_*`): world points (..., 3) ->
    pixel coordinates (..., 2) (u to the right, v down, pixel centres at +0.5) and depth (...,) in m."""

    def __init__(self, image_size: int = 64) -> None:
        super().__init__()
        x_axis = np.asarray(CAMERA_XYAXES[0], dtype=np.float64)
        y_axis = np.asarray(CAMERA_XYAXES[1], dtype=np.float64)
        x_axis, y_axis = x_axis / np.linalg.norm(x_axis), y_axis / np.linalg.norm(y_axis)
        rows = np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)])
        self.register_buffer("rotation", torch.tensor(rows, dtype=torch.float32), persistent=False)
        self.register_buffer("position", torch.tensor(CAMERA_POS, dtype=torch.float32), persistent=False)
        self.image_size = int(image_size)
        self.focal = self.image_size / 2 / float(np.tan(np.deg2rad(CAMERA_FOVY) / 2))

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        in_camera = (points - self.position.to(points.dtype)) @ self.rotation.T.to(points.dtype)
        depth = (-in_camera[..., 2]).clamp_min(1e-3)
        u = self.focal * in_camera[..., 0] / depth + self.image_size / 2
        v = self.image_size / 2 - self.focal * in_camera[..., 1] / depth
        return torch.stack([u, v], dim=-1), depth

"""Where the robot hand's parts and the object are, in the world and in the image, in torch.

The robot's kinematics (its MJCF) and the fixed scene camera are known to any robot that runs
this world model, so W0 uses them as an inductive bias: a joint state becomes the positions of
the palm and finger links (`HandKinematics`, batched and differentiable forward kinematics), and
3-D points become pixels (`Camera`). Both are checked against MuJoCo in the tests.

Notation (MuJoCo's): a body ``b`` with parent ``p`` sits at ``x_b = x_p + R_p o_b`` with
orientation ``R_b = R_p Q_b`` (``o_b``, ``Q_b`` its offset and rotation in the parent); each of its
joints then acts in order: a slide joint moves ``x_b += R_b a q``, a hinge turns
``R_b <- R_b exp([a]_x q)`` about its axis ``a`` through the body origin (every joint of the
robot hand turns about one of its body's coordinate axes, so this mixes two columns of ``R_b``).
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
        # per body: (body, parent, [(is_slide, joint index in q, axis index 0/1/2, sign)])
        self.bodies: list[tuple[int, int, list[tuple[bool, int, int, float]]]] = []
        for body in range(1, model.nbody):
            joints = []
            for joint in range(model.body_jntadr[body], model.body_jntadr[body] + model.body_jntnum[body]):
                axis = model.jnt_axis[joint]
                if not np.allclose(model.jnt_pos[joint], 0.0) or np.count_nonzero(axis) != 1:
                    raise ValueError("HandKinematics assumes joints at their body's origin about a coordinate axis")
                name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint)
                index = int(np.flatnonzero(axis)[0])
                joints.append((int(model.jnt_type[joint]) == int(mujoco.mjtJoint.mjJNT_SLIDE), joint_names.index(name),
                               index, float(np.sign(axis[index]))))
            self.bodies.append((body, int(model.body_parentid[body]), joints))
        self.body_offset = [tuple(float(v) for v in row) for row in model.body_pos]
        rotations = np.stack([_quat_matrix(q) for q in model.body_quat])
        self.body_rotation = [None if np.allclose(r, np.eye(3)) else r for r in rotations]
        self.register_buffer("body_rotations", torch.tensor(rotations, dtype=torch.float32), persistent=False)
        self.palm_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "palm")
        palm_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "palm")
        points = [(self.palm_body, model.geom_pos[palm_geom].copy())]
        for finger in kinematics.spec.fingers:
            for part in ("base", "mid", "dist"):
                points.append((mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"{finger.name}_{part}"), np.zeros(3)))
            site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"{finger.name}_tip")
            points.append((int(model.site_bodyid[site]), model.site_pos[site].copy()))
        self.point_bodies = [body for body, _ in points]
        self.point_offsets = [tuple(float(v) for v in offset) for _, offset in points]

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Small 3x3 products written out elementwise: far fewer and cheaper ops than matmuls on
        # (B, 3, 3) tensors, which dominate an unrolled training step otherwise.
        batch, dtype, device = q.shape[0], q.dtype, q.device
        position: list[torch.Tensor | None] = [None] * self.num_bodies
        rotation: list[torch.Tensor | None] = [None] * self.num_bodies
        position[0] = torch.zeros(batch, 3, dtype=dtype, device=device)
        rotation[0] = torch.eye(3, dtype=dtype, device=device).expand(batch, 3, 3)
        for body, parent, joints in self.bodies:
            r_parent = rotation[parent]
            x = position[parent] + _apply(r_parent, self.body_offset[body])
            r = r_parent if self.body_rotation[body] is None else r_parent @ self.body_rotations[body].to(dtype)
            for slide, index, axis, sign in joints:
                if slide:
                    x = x + r[:, :, axis] * (sign * q[:, index: index + 1])
                else:
                    r = _turn_about(r, axis, sign * q[:, index])
            position[body], rotation[body] = x, r
        points = torch.stack([position[b] + _apply(rotation[b], offset) if any(offset) else position[b]
                              for b, offset in zip(self.point_bodies, self.point_offsets)], dim=1)
        return points, rotation[self.palm_body]


def _apply(rotation: torch.Tensor, offset: tuple[float, float, float]) -> torch.Tensor:
    """``R @ o`` for (B, 3, 3) ``R`` and a constant offset ``o``."""
    x, y, z = offset
    return rotation[:, :, 0] * x + rotation[:, :, 1] * y + rotation[:, :, 2] * z


def _turn_about(rotation: torch.Tensor, axis: int, angle: torch.Tensor) -> torch.Tensor:
    """``R @ Rot_axis(angle)``: only the two columns orthogonal to the axis mix."""
    i, j = (axis + 1) % 3, (axis + 2) % 3
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]
    columns = [rotation[:, :, 0], rotation[:, :, 1], rotation[:, :, 2]]
    ci, cj = columns[i], columns[j]
    columns[i] = ci * cos + cj * sin
    columns[j] = cj * cos - ci * sin
    return torch.stack(columns, dim=-1)


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

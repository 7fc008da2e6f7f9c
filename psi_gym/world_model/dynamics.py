"""The physics half of Psi-W0: one control step of the hand and the object, in a tracked state.

Notation, per row (``q`` joint positions, ``u`` the commanded joint targets, ``p`` the object's
centre, ``R`` its orientation; subscripts are time steps):

* features: ``q_t`` and ``u_t`` normalised to [-1, 1] by the joint ranges; ``q_t - q_{t-1}`` and
  ``u_t - q_t`` in units of the residual scale (3 cm, 0.15 rad, 0.4 rad); the hand's points
  (`psi_gym.world_model.hand_geometry.HAND_POINTS`) at ``q_t`` and at ``u_t`` relative to ``p_t``
  and their heights; the palm's axes; ``p_t``, ``p_t - p_{t-1}``, ``R_t`` and ``R_t R_{t-1}^T``
  (zeroed for the apple, a sphere); the object descriptor;
* an MLP maps them to ``(dq, dp, omega)``: ``q_{t+1} = q_t + s * dq``, ``p_{t+1} = p_t + 1 cm * dp``,
  ``R_{t+1} = exp([omega]_x) R_t``.

Trained on whole-episode unrolls of its own predictions (see `psi_gym.world_model.training`), so
what it learns is the long-horizon outcome of an action sequence, not only the next step.
"""

from __future__ import annotations

import torch
from torch import nn

from psi_gym.sim.hands import hand_spec, residual_scale

from .hand_geometry import NUM_HAND_POINTS, HandKinematics
from .world_state import DESCRIPTOR_DIM, WorldState, rotation_exp

HAND_FEATURE_SCALE = 20.0  # m -> units of 5 cm
TABLE_HEIGHT_OFFSET = 0.05  # m: heights are fed as (z - 5 cm) / 5 cm
IDENTITY_COLUMNS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _columns(rotation: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) -> (B, 6) its first two columns."""
    return rotation[..., :2].transpose(-1, -2).flatten(1)


class StateDynamics(nn.Module):
    """``step(state, joint_targets) -> next state`` (see the module doc)."""

    def __init__(self, hidden_dim: int = 512, num_layers: int = 3) -> None:
        super().__init__()
        spec = hand_spec("robot")
        ranges = torch.tensor(spec.joint_ranges(), dtype=torch.float32)
        self.num_joints = spec.num_joints
        self.kinematics = HandKinematics()
        self.register_buffer("joint_low", ranges[:, 0].clone(), persistent=False)
        self.register_buffer("joint_high", ranges[:, 1].clone(), persistent=False)
        self.register_buffer("joint_step", torch.tensor(residual_scale(spec), dtype=torch.float32), persistent=False)
        self.register_buffer("identity_columns", torch.tensor(IDENTITY_COLUMNS), persistent=False)
        joints, points = self.num_joints, NUM_HAND_POINTS
        in_dim = 4 * joints + 2 * 3 * points + points + 2 * 6 + 3 + 3 + 6 + 6 + DESCRIPTOR_DIM
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.LayerNorm(hidden_dim), nn.SiLU()]
            width = hidden_dim
        self.trunk = nn.Sequential(*layers)
        self.out = nn.Linear(hidden_dim, joints + 3 + 3)
        nn.init.zeros_(self.out.weight)  # start from "nothing moves"
        nn.init.zeros_(self.out.bias)

    def normalize_joints(self, q: torch.Tensor) -> torch.Tensor:
        return (q - self.joint_low) / (self.joint_high - self.joint_low) * 2.0 - 1.0

    def features(self, state: WorldState, joint_targets: torch.Tensor) -> torch.Tensor:
        q, u, p = state.joint_state, joint_targets, state.object_position
        points, palm = self.kinematics(q)
        target_points, target_palm = self.kinematics(u)
        sphere = state.object_descriptor[:, :1]  # the apple's orientation means nothing
        rotation = _columns(state.object_rotation)
        turn = _columns(state.object_rotation @ state.previous_object_rotation.transpose(-1, -2)) - self.identity_columns
        return torch.cat([
            self.normalize_joints(q), (q - state.previous_joint_state) / self.joint_step,
            self.normalize_joints(u), (u - q) / self.joint_step,
            ((points - p[:, None]) * HAND_FEATURE_SCALE).flatten(1),
            ((target_points - p[:, None]) * HAND_FEATURE_SCALE).flatten(1),
            (points[..., 2] - TABLE_HEIGHT_OFFSET) * HAND_FEATURE_SCALE,
            _columns(palm), _columns(target_palm),
            (p - p.new_tensor([0.0, 0.0, TABLE_HEIGHT_OFFSET])) * HAND_FEATURE_SCALE,
            (p - state.previous_object_position) * 100.0,
            rotation * (1 - sphere), turn * (1 - sphere),
            state.object_descriptor,
        ], dim=-1)

    def step(self, state: WorldState, joint_targets: torch.Tensor) -> WorldState:
        """The state after one control step with absolute ``joint_targets`` (B, 22)."""
        delta = self.out(self.trunk(self.features(state, joint_targets)))
        joints = self.num_joints
        return WorldState(
            joint_state=state.joint_state + delta[:, :joints] * self.joint_step,
            previous_joint_state=state.joint_state,
            object_position=state.object_position + delta[:, joints: joints + 3] * 0.01,
            previous_object_position=state.object_position,
            object_rotation=rotation_exp(delta[:, joints + 3: joints + 6]) @ state.object_rotation,
            previous_object_rotation=state.object_rotation,
            object_descriptor=state.object_descriptor,
            scene_frame=state.scene_frame,
        )

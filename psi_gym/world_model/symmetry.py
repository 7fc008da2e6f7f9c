"""The table's symmetry, as data augmentation for W0's dynamics.

The scene is a flat table under vertical gravity; the wrist hangs from the world on slide joints
``x, y, z`` followed by hinges ``yaw`` (about the world's vertical), ``pitch``, ``roll``
(`psi_gym.sim.hands`). So a horizontal motion of the whole scene, a turn ``theta`` about the
vertical through the world's origin and then a shift ``d = (dx, dy)``, maps one physical
trajectory onto another: with ``Rz`` the turn,

* the wrist's ``(x, y)`` joints -> ``Rz (x, y) + d``, its ``yaw`` -> ``yaw + theta`` (pitch, roll,
  height and the fingers unchanged), for joint states and joint targets alike;
* the object's centre ``p`` -> ``Rz p + d`` (height unchanged), its orientation ``R`` -> ``Rz R``.

The target mark does not collide and the table (1.2 x 0.9 m) reaches well past the wrist's
workspace, so nothing else in the world sees the motion; `benchmarks/table_symmetry.py` replays
trajectories and their moved copies in MuJoCo and measures how closely the simulator keeps it.
A moved copy is physical only if its wrist stays inside its joint ranges (``|x|, |y| <= 0.25`` m,
``|yaw| <= 1.6`` rad), where the original did not press against them: rows that would leave them
are kept as they are.

W0's dynamics reads the wrist's joints, the palm's axes and the object's pose in world
coordinates, so it can learn a dependence on where on the table things are that the physics does
not have; trained on moved copies (`TrainConfig.symmetry_shift`, `symmetry_turn`), it sees each
episode at many places and headings instead of one.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from psi_gym.sim.hands import WRIST_JOINTS, WRIST_RANGE
from psi_gym.sim.scene import SceneParams

from .dataset import UnrollBatch
from .world_state import WorldState

X, Y, YAW = WRIST_JOINTS.index("wrist_x"), WRIST_JOINTS.index("wrist_y"), WRIST_JOINTS.index("wrist_yaw")
LIMIT_MARGIN = 1e-3  # a wrist this close to a joint limit may have pressed against it: not moved


def turn_matrix(theta: torch.Tensor) -> torch.Tensor:
    """(...,) angles -> (..., 3, 3) rotations about the vertical."""
    c, s = torch.cos(theta), torch.sin(theta)
    zero, one = torch.zeros_like(theta), torch.ones_like(theta)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).unflatten(-1, (3, 3))


def _move_plane(values: torch.Tensor, x: int, y: int, theta: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``values`` (B, ..., K) with its entries ``x``, ``y`` turned by ``theta`` (B,) and shifted by ``shift`` (B, 2)."""
    view = (-1, *[1] * (values.dim() - 2))
    c, s = torch.cos(theta).view(view), torch.sin(theta).view(view)
    moved = values.clone()
    moved[..., x] = c * values[..., x] - s * values[..., y] + shift[:, 0].view(view)
    moved[..., y] = s * values[..., x] + c * values[..., y] + shift[:, 1].view(view)
    return moved


def move_joints(joints: torch.Tensor, theta: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Joint states or targets (B, ..., J) moved by the turn ``theta`` (B,) and ``shift`` (B, 2)."""
    moved = _move_plane(joints, X, Y, theta, shift)
    moved[..., YAW] = joints[..., YAW] + theta.view(-1, *[1] * (joints.dim() - 2))
    return moved


def move_positions(position: torch.Tensor, theta: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Object centres (B, ..., 3) moved by the turn ``theta`` (B,) and ``shift`` (B, 2)."""
    return _move_plane(position, 0, 1, theta, shift)


def move_rotations(rotation: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Object orientations (B, ..., 3, 3) turned by ``theta`` (B,) about the vertical."""
    turn = turn_matrix(theta).view(-1, *[1] * (rotation.dim() - 3), 3, 3)
    return turn @ rotation


def move_scene(scene: dict, theta: float, shift) -> dict:
    """A scene dict (`psi_gym.sim.scene.SceneParams.to_dict`) with its object, mark and hand start
    moved with the table: what the simulator starts from to play a moved copy."""
    c, s = float(np.cos(theta)), float(np.sin(theta))
    dx, dy = (float(v) for v in shift)

    def move(xy) -> list[float]:
        x, y = float(xy[0]), float(xy[1])
        return [c * x - s * y + dx, s * x + c * y + dy]

    moved = SceneParams.from_dict(dict(scene)).to_dict()  # every field, defaults included, is moved
    moved["object_xy"] = move(moved["object_xy"])
    moved["object_yaw"] = float(moved["object_yaw"]) + float(theta)
    moved["mark_xy"] = move(moved["mark_xy"])
    hand = [float(v) for v in moved["hand_start"]]  # wrist x, y, z, yaw
    moved["hand_start"] = move(hand[:2]) + [hand[2], hand[3] + float(theta)]
    return moved


def move_state(state: WorldState, theta: torch.Tensor, shift: torch.Tensor) -> WorldState:
    """A `WorldState` moved with the table (its frame and descriptor unchanged)."""
    joints = {name: move_joints(getattr(state, name), theta, shift)
              for name in ("joint_state", "previous_joint_state", "previous_joint_target", "hand_joint_state",
                           "previous_hand_joint_state")}
    return dataclasses.replace(
        state, **joints,
        object_position=move_positions(state.object_position, theta, shift),
        previous_object_position=move_positions(state.previous_object_position, theta, shift),
        object_rotation=move_rotations(state.object_rotation, theta),
        previous_object_rotation=move_rotations(state.previous_object_rotation, theta))


def _wrist_inside(joints: torch.Tensor, margin: float) -> torch.Tensor:
    """(B,) whether every row's wrist x, y and yaw (B, ..., J) stay ``margin`` inside their ranges."""
    limits = torch.as_tensor(WRIST_RANGE, dtype=joints.dtype, device=joints.device)
    inside = torch.ones(joints.shape[0], dtype=torch.bool, device=joints.device)
    for joint in (X, Y, YAW):
        values = joints[..., joint].reshape(joints.shape[0], -1)
        inside &= ((values >= limits[joint, 0] + margin) & (values <= limits[joint, 1] - margin)).all(-1)
    return inside


def physical_copy(joints: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """(B,) whether ``moved`` (B, ..., J), a moved copy of ``joints``, is a physical trajectory: the
    moved wrist stays inside its ranges and the original's came no nearer than `LIMIT_MARGIN` to them."""
    return _wrist_inside(joints, LIMIT_MARGIN) & _wrist_inside(moved, 0.0)


def _wrist_joints(batch: UnrollBatch) -> torch.Tensor:
    start = batch.start
    return torch.cat([start.joint_state[:, None], start.previous_joint_state[:, None], start.previous_joint_target[:, None],
                      batch.targets, batch.joint_state], dim=1)


def move_unrolls(batch: UnrollBatch, theta: torch.Tensor, shift: torch.Tensor) -> UnrollBatch:
    """``batch`` with each row moved by its turn ``theta`` (B,) and ``shift`` (B, 2); rows whose moved
    wrist would leave its ranges, or whose wrist came within `LIMIT_MARGIN` of them, stay as they are."""
    before = _wrist_joints(batch)
    moved_wrist = move_joints(before, theta, shift)
    unmoved = ~physical_copy(before, moved_wrist)
    theta = torch.where(unmoved, torch.zeros_like(theta), theta)
    shift = torch.where(unmoved[:, None], torch.zeros_like(shift), shift)
    return UnrollBatch(start=move_state(batch.start, theta, shift), targets=move_joints(batch.targets, theta, shift),
                       joint_state=move_joints(batch.joint_state, theta, shift),
                       object_position=move_positions(batch.object_position, theta, shift),
                       object_rotation=move_rotations(batch.object_rotation, theta), mask=batch.mask)


def random_motion(batch: int, max_shift: float, max_turn: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` turns uniform in ``[-max_turn, max_turn]`` (rad) and shifts uniform in the square
    ``[-max_shift, max_shift]^2`` (m)."""
    if max_shift < 0 or max_turn < 0 or not np.isfinite([max_shift, max_turn]).all():
        raise ValueError(f"max_shift and max_turn must be finite and >= 0, got {max_shift!r}, {max_turn!r}")
    theta = (torch.rand(batch, generator=generator) * 2.0 - 1.0) * max_turn
    shift = (torch.rand(batch, 2, generator=generator) * 2.0 - 1.0) * max_shift
    return theta, shift


def augment_unrolls(batch: UnrollBatch, max_shift: float, max_turn: float, generator: torch.Generator) -> UnrollBatch:
    """`move_unrolls` with a `random_motion` per row (``batch`` itself when both are 0: no draws)."""
    if max_shift == 0 and max_turn == 0:
        return batch
    theta, shift = random_motion(batch.targets.shape[0], max_shift, max_turn, generator)
    return move_unrolls(batch, theta, shift)

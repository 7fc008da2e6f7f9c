"""The state a state-grounded Psi-W0 carries from step to step, and the rotation maths it needs.

W0 tracks the physical state of the scene (the robot's joints and the object's pose, with the
previous ones for velocities) and draws each frame from it, so the frames follow a tracked state
instead of drifting. An env keeps one `WorldState` of N rows and hands W0 the rows it steps.

=========================== =================== ===========================================
field                       shape, dtype        meaning
=========================== =================== ===========================================
joint_state                 (B, 22) float32     joint positions at t (m, rad)
previous_joint_state        (B, 22) float32     joint positions at t-1 (= t at the start)
previous_joint_target       (B, 22) float32     joint targets commanded at t-1 (= the joint positions
                                                at the start: the hand rests where it begins)
object_position             (B, 3) float32      object centre at t (m)
previous_object_position    (B, 3) float32      object centre at t-1
object_rotation             (B, 3, 3) float32   object orientation at t (columns: its axes)
previous_object_rotation    (B, 3, 3) float32   object orientation at t-1
object_descriptor           (B, 6) float32      kind one-hot (apple, can, box), then size in cm
                                                (apple: r; can: r, half length; box: half sides)
scene_frame                 (B, H, W, 3) uint8  the episode's first frame: the scene's looks
hand_joint_state            (B, 22) float32     the hand as W0 draws and reports it at t: the
                                                joints above, or with a hand servo
                                                (`WorldModelConfig.hand_servo`) where the servo puts it
previous_hand_joint_state   (B, 22) float32     the same at t-1 (= t at the start)
=========================== =================== ===========================================

The dynamics reads and moves ``joint_state`` (its own estimate of the joints, which also carries
what it remembers of the contact); the renderer, ``predict``'s joint output and the env's
observation read ``hand_joint_state``. Without a hand servo the two are the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

OBJECT_KINDS = ("apple", "can", "box")
DESCRIPTOR_DIM = len(OBJECT_KINDS) + 3


def object_descriptor(scene: dict[str, Any]) -> np.ndarray:
    """(6,) float32 descriptor of a scene's object (kind one-hot, size in cm; see the module doc)."""
    if not isinstance(scene, dict) or "object_kind" not in scene or "object_size" not in scene:
        keys = sorted(scene) if isinstance(scene, dict) else type(scene).__name__
        raise ValueError(f"a W0 episode's scene must name object_kind and object_size (the state W0 tracks holds "
                         f"the object's kind and size), got {keys}")
    kind = str(scene["object_kind"])
    if kind not in OBJECT_KINDS:
        raise ValueError(f"unknown object kind {kind!r}: expected one of {OBJECT_KINDS}")
    out = np.zeros(DESCRIPTOR_DIM, np.float32)
    out[OBJECT_KINDS.index(kind)] = 1.0
    size = np.asarray(scene["object_size"], dtype=np.float32)[:3] * 100.0
    out[len(OBJECT_KINDS): len(OBJECT_KINDS) + len(size)] = size
    return out


def quaternion_to_matrix(quaternion: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(..., 4) unit quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices."""
    q = torch.as_tensor(quaternion, dtype=torch.float32)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) quaternions (w, x, y, z), w >= 0."""
    m = matrix
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = torch.stack([
        1 + trace, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
        1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
    ], dim=-1)
    best = candidates.argmax(dim=-1, keepdim=True)
    # the four equivalent formulas, each well conditioned when its own candidate is largest
    w = torch.stack([candidates[..., 0], m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
    x = torch.stack([m[..., 2, 1] - m[..., 1, 2], candidates[..., 1], m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1)
    y = torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], candidates[..., 2], m[..., 2, 1] + m[..., 1, 2]], -1)
    z = torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], candidates[..., 3]], -1)
    quaternion = torch.stack([w, x, y, z], dim=-2).gather(-1, best[..., None, :].expand(*best.shape[:-1], 4, 1))[..., 0]
    quaternion = quaternion / quaternion.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def rotation_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: rotation vectors (..., 3) (axis x angle, rad) -> (..., 3, 3)."""
    angle = omega.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    k = omega / angle
    zero = torch.zeros_like(k[..., 0])
    skew = torch.stack([zero, -k[..., 2], k[..., 1], k[..., 2], zero, -k[..., 0], -k[..., 1], k[..., 0], zero], -1)
    skew = skew.unflatten(-1, (3, 3))
    sin, cos = angle.sin()[..., None], angle.cos()[..., None]
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + sin * skew + (1 - cos) * (skew @ skew)


def orthonormalize(six: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt of two columns (..., 6) -> a rotation matrix (..., 3, 3) (Zhou et al.'s 6-D form)."""
    a, b = six[..., :3], six[..., 3:]
    c0 = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    b = b - (c0 * b).sum(-1, keepdim=True) * c0
    c1 = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.stack([c0, c1, torch.cross(c0, c1, dim=-1)], dim=-1)


@dataclass
class WorldState:
    """Per-row physical state W0 carries between steps (see the module doc for the table)."""

    joint_state: torch.Tensor
    previous_joint_state: torch.Tensor
    previous_joint_target: torch.Tensor
    object_position: torch.Tensor
    previous_object_position: torch.Tensor
    object_rotation: torch.Tensor
    previous_object_rotation: torch.Tensor
    object_descriptor: torch.Tensor
    scene_frame: torch.Tensor
    hand_joint_state: torch.Tensor | None = None
    previous_hand_joint_state: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # not given: the drawn hand is the dynamics' joints (copies: an env writes rows of each field in place)
        if self.hand_joint_state is None:
            self.hand_joint_state = self.joint_state.clone()
        if self.previous_hand_joint_state is None:
            self.previous_hand_joint_state = self.previous_joint_state.clone()

    def __len__(self) -> int:
        return int(self.joint_state.shape[0])

    def _map(self, fn) -> WorldState:
        return WorldState(**{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def select(self, rows: Any) -> WorldState:
        """The rows ``rows`` (an index array or slice) as a new state (copies)."""
        index = torch.as_tensor(rows, dtype=torch.long) if not isinstance(rows, slice) else rows
        return self._map(lambda tensor: tensor[index].clone())

    def assign(self, rows: Any, other: WorldState) -> None:
        """Write ``other`` into ``rows`` in place."""
        index = torch.as_tensor(rows, dtype=torch.long) if not isinstance(rows, slice) else rows
        for f in dataclasses.fields(self):
            getattr(self, f.name)[index] = getattr(other, f.name).to(getattr(self, f.name).device)

    def to(self, device: torch.device | str) -> WorldState:
        return self._map(lambda tensor: tensor.to(device))

    def clone(self) -> WorldState:
        return self._map(lambda tensor: tensor.clone())

    @classmethod
    def empty(cls, batch: int, image_size: int, device: torch.device | str = "cpu") -> WorldState:
        """Zeros (identity rotations) for ``batch`` rows: a buffer an env fills at reset."""
        eye = torch.eye(3, device=device).expand(batch, 3, 3).clone()
        zeros = lambda *shape: torch.zeros(batch, *shape, device=device)  # noqa: E731
        return cls(joint_state=zeros(22), previous_joint_state=zeros(22), previous_joint_target=zeros(22),
                   object_position=zeros(3), previous_object_position=zeros(3), object_rotation=eye,
                   previous_object_rotation=eye.clone(), object_descriptor=zeros(DESCRIPTOR_DIM),
                   scene_frame=torch.zeros(batch, image_size, image_size, 3, dtype=torch.uint8, device=device),
                   hand_joint_state=zeros(22), previous_hand_joint_state=zeros(22))

    def shift_object(self, shift: np.ndarray | torch.Tensor) -> WorldState:
        """Move each row's object by ``shift`` (rows, 2): metres along x and y, in place (the object
        at rest: its previous position moves alike); returns the state. W0 reads the object's start
        off the first frame: a shifted start is W0 reading it that far off."""
        moved = torch.zeros_like(self.object_position)
        moved[:, :2] = torch.as_tensor(np.asarray(shift), dtype=moved.dtype, device=moved.device)
        self.object_position = self.object_position + moved
        self.previous_object_position = self.previous_object_position + moved
        return self

    def floating(self) -> WorldState:
        """The float32 view (physics and geometry run in float32); the scene frame stays uint8."""
        return WorldState(**{f.name: getattr(self, f.name) if f.name == "scene_frame" else getattr(self, f.name).float()
                             for f in dataclasses.fields(self)})

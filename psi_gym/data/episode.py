"""One episode schema for human demos, robot rollouts and generated trajectories.

An episode of ``T`` control steps holds ``T + 1`` observations (the start and one after each
step) and ``T`` actions. Human-only modalities (wrist pose, hand keypoints, tactile) are
``None`` for robot episodes: tactile is the report's *masked* modality, present for human
data and masked out for robot data that has none.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EMBODIMENTS = ("human", "robot")
SOURCES = ("demo", "retarget", "rollout", "generated")
NUM_KEYPOINTS = 21  # MANO joint order: wrist, thumb(4), index(4), middle(4), ring(4), pinky(4)


class EpisodeError(ValueError):
    """An episode (or a dataset holding it) does not match the schema."""


@dataclass
class Episode:
    """A trajectory of one embodiment doing one task in one scene.

    Arrays (``T`` = number of control steps):

    ============== ======================= ==================================================
    field          shape, dtype            meaning
    ============== ======================= ==================================================
    frames         (T+1, H, W, 3) uint8    camera frames, frame ``t`` before action ``t``
    state          (T+1, S) float32        joint positions of the hand (wrist 6-DoF first)
    action         (T, A) float32          absolute joint targets commanded at step ``t``
    object_pose    (T+1, 7) float32        object position (m) and quaternion (w, x, y, z)
    wrist_pose     (T+1, 7) float32|None   human wrist position + quaternion (human only)
    keypoints      (T+1, 21, 3) f32|None   human hand keypoints, MANO order (human only)
    tactile        (T+1, 5) float32|None   fingertip touch forces in N (human only)
    ============== ======================= ==================================================
    """

    task: str
    instruction: str
    embodiment: str
    frames: np.ndarray
    state: np.ndarray
    action: np.ndarray
    object_pose: np.ndarray
    success: bool
    scene: dict[str, Any]
    seed: int = 0
    source: str = "demo"
    tier: str = ""
    wrist_pose: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    tactile: np.ndarray | None = None
    perturbation: str = ""
    parent: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(self.action.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def validate(self) -> Episode:
        """Check shapes, dtypes and finiteness; raise `EpisodeError` saying what was expected."""
        if self.embodiment not in EMBODIMENTS:
            raise EpisodeError(f"embodiment must be one of {EMBODIMENTS}, got {self.embodiment!r}")
        if self.source not in SOURCES:
            raise EpisodeError(f"source must be one of {SOURCES}, got {self.source!r}")
        _check(self.frames, "frames", np.uint8, ndim=4)
        num_frames = self.frames.shape[0]
        if num_frames < 1 or self.frames.shape[3] != 3:
            raise EpisodeError(f"frames must be (T+1, H, W, 3), got {self.frames.shape}")
        steps = num_frames - 1
        _check(self.state, "state", np.float32, ndim=2, length=num_frames)
        _check(self.action, "action", np.float32, ndim=2, length=steps)
        _check(self.object_pose, "object_pose", np.float32, ndim=2, length=num_frames)
        if self.object_pose.shape[1] != 7:
            raise EpisodeError(f"object_pose must be (T+1, 7), got {self.object_pose.shape}")
        human_fields = {"wrist_pose": (7,), "keypoints": (NUM_KEYPOINTS, 3), "tactile": (5,)}
        for name, tail in human_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            _check(value, name, np.float32, ndim=1 + len(tail), length=num_frames)
            if value.shape[1:] != tail:
                raise EpisodeError(f"{name} must be (T+1, {', '.join(map(str, tail))}), got {value.shape}")
        if self.embodiment == "robot" and any(getattr(self, n) is not None for n in human_fields):
            raise EpisodeError("robot episodes carry no wrist_pose/keypoints/tactile (masked modality)")
        try:
            json.dumps(self.scene)
            json.dumps(self.metadata)
        except TypeError as error:
            raise EpisodeError(f"scene and metadata must be JSON-serialisable: {error}") from None
        return self

    @classmethod
    def from_recording(cls, recording: Any, task: Any, scene: Any, embodiment: str, **fields: Any) -> Episode:
        """The episode of a `psi_gym.sim.replay.Recording` of `task` in `scene` (validated).

        Human-only modalities are taken from the recording for the human hand only; `fields`
        sets the rest (``source``, ``seed``, ``metadata`` ...) or overrides them."""
        human = embodiment == "human"
        values = {
            "task": task.name, "instruction": task.instruction, "embodiment": embodiment,
            "frames": recording.frames, "state": recording.state, "action": recording.action,
            "object_pose": recording.object_pose, "success": bool(recording.success), "scene": scene.to_dict(),
            "wrist_pose": recording.wrist_pose.astype(np.float32) if human else None,
            "keypoints": recording.keypoints.astype(np.float32) if human else None,
            "tactile": recording.tactile.astype(np.float32) if human else None,
        }
        values.update(fields)
        return cls(**values).validate()

    def replace(self, **changes: Any) -> Episode:
        return dataclasses.replace(self, **changes)


def _check(array: Any, name: str, dtype: type, ndim: int, length: int | None = None) -> None:
    if not isinstance(array, np.ndarray):
        raise EpisodeError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype != dtype:
        raise EpisodeError(f"{name} must have dtype {np.dtype(dtype).name}, got {array.dtype}")
    if array.ndim != ndim:
        raise EpisodeError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if length is not None and array.shape[0] != length:
        raise EpisodeError(f"{name} must have {length} rows (one per frame/step), got {array.shape[0]}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise EpisodeError(f"{name} contains NaN or inf")

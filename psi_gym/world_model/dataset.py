"""Robot episodes stacked in memory for training Psi-W0's three parts.

Every frame, joint state and object pose of every episode sits in one flat tensor (frame ``t`` of
episode ``e`` at row ``offset[e] + t``), so a batch is an index gather:

================== =====================================================================
sample             what it holds
================== =====================================================================
`unrolls`          a start state (true joints, object pose, previous ones) and the next L
                   joint targets with the true states after each, for the dynamics; rows
                   past an episode's end are masked
`frames`           the episode's first frame, a frame t and the true state at t, for the
                   renderer
`first_frames`     frames where the object still rests where it started, with its pose and
                   descriptor, for the perception
================== =====================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from psi_gym.data.episode import Episode

from .world_state import WorldState, object_descriptor, quaternion_to_matrix

REST_TOLERANCE = 0.002  # m: the object counts as resting where it started within this


@dataclass
class UnrollBatch:
    """Dynamics windows: ``start`` (B rows), ``targets`` (B, L, 22), truths after each step
    ``joint_state`` (B, L, 22), ``object_position`` (B, L, 3), ``object_rotation`` (B, L, 3, 3),
    ``mask`` (B, L) 1 where the step exists."""

    start: WorldState
    targets: torch.Tensor
    joint_state: torch.Tensor
    object_position: torch.Tensor
    object_rotation: torch.Tensor
    mask: torch.Tensor


@dataclass
class FrameBatch:
    """Renderer samples: ``scene`` and ``target`` (B, 3, H, W) in [-1, 1], the true ``state`` at the
    target frame, ``instruction_embedding`` (B, 384)."""

    scene: torch.Tensor
    target: torch.Tensor
    state: WorldState
    instruction_embedding: torch.Tensor


@dataclass
class PerceptionBatch:
    """Perception samples: ``frames`` (B, 3, H, W) in [-1, 1]; ``position`` (B, 3), ``rotation``
    (B, 3, 3), ``descriptor`` (B, 6) of the object in them."""

    frames: torch.Tensor
    position: torch.Tensor
    rotation: torch.Tensor
    descriptor: torch.Tensor


def _to_model(frames: torch.Tensor) -> torch.Tensor:
    return frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0


class EpisodeTensors:
    """All training episodes, flat (see the module doc).

    Args:
        episodes: robot episodes with frames, state, action, object_pose and a scene dict.
        instruction_embeddings: ``{instruction: (384,) tensor}`` for every episode's instruction.
    """

    def __init__(self, episodes: Sequence[Episode], instruction_embeddings: dict[str, torch.Tensor]) -> None:
        if not episodes:
            raise ValueError("no episodes to train on")
        lengths = np.array([ep.num_steps for ep in episodes], dtype=np.int64)
        if (lengths < 1).any():
            raise ValueError("episodes need at least one step")
        self.num_steps = torch.from_numpy(lengths)
        self.frame_offset = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]))
        self.step_offset = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]))
        self.frames = torch.from_numpy(np.concatenate([ep.frames for ep in episodes]))
        self.joint_state = torch.from_numpy(np.concatenate([ep.state for ep in episodes]).astype(np.float32))
        self.targets = torch.from_numpy(np.concatenate([ep.action for ep in episodes]).astype(np.float32))
        poses = np.concatenate([ep.object_pose for ep in episodes]).astype(np.float32)
        self.object_position = torch.from_numpy(poses[:, :3].copy())
        self.object_rotation = quaternion_to_matrix(poses[:, 3:])
        self.descriptor = torch.from_numpy(np.stack([object_descriptor(ep.scene) for ep in episodes]))
        self.success = torch.tensor([bool(ep.success) for ep in episodes])
        texts = sorted({ep.instruction for ep in episodes})
        missing = [t for t in texts if t not in instruction_embeddings]
        if missing:
            raise ValueError(f"no instruction embedding for {missing}")
        self.embeddings = torch.stack([torch.as_tensor(instruction_embeddings[t], dtype=torch.float32) for t in texts])
        self.instruction = torch.tensor([texts.index(ep.instruction) for ep in episodes])
        # frames where the object has not moved yet (perception's targets are unambiguous there)
        moved = np.concatenate([np.linalg.norm(ep.object_pose[:, :3] - ep.object_pose[:1, :3], axis=-1) > REST_TOLERANCE
                                for ep in episodes])
        resting = ~moved & np.concatenate([np.arange(ep.num_steps + 1) <= 4 for ep in episodes])
        self.resting_frames = torch.from_numpy(np.nonzero(resting)[0])
        self.frame_episode = torch.repeat_interleave(torch.arange(len(episodes)), self.num_steps + 1)

    def __len__(self) -> int:
        return int(self.num_steps.shape[0])

    @property
    def max_steps(self) -> int:
        return int(self.num_steps.max())

    def _previous_targets(self, rows: torch.Tensor, episodes: torch.Tensor) -> torch.Tensor:
        """The targets commanded before frame ``rows`` (the joints themselves at an episode's start:
        the hand rests where it begins)."""
        step = rows - self.frame_offset[episodes]  # the frame's step in its episode
        target_row = (self.step_offset[episodes] + step - 1).clamp_min(0)
        return torch.where((step > 0)[:, None], self.targets[target_row], self.joint_state[rows])

    def _state(self, rows: torch.Tensor, previous: torch.Tensor, episodes: torch.Tensor) -> WorldState:
        return WorldState(
            joint_state=self.joint_state[rows], previous_joint_state=self.joint_state[previous],
            previous_joint_target=self._previous_targets(rows, episodes),
            object_position=self.object_position[rows], previous_object_position=self.object_position[previous],
            object_rotation=self.object_rotation[rows], previous_object_rotation=self.object_rotation[previous],
            object_descriptor=self.descriptor[episodes], scene_frame=self.frames[self.frame_offset[episodes]],
        )

    def unrolls(self, batch: int, length: int, generator: torch.Generator, position_noise: float = 0.0,
                success_fraction: float | None = None) -> UnrollBatch:
        """``batch`` windows of ``length`` steps (0 or more than an episode: from its start, masked past
        its end), from episodes drawn uniformly or, with ``success_fraction``, that share of them from
        the successful episodes and the rest from the failures (when both kinds are there)."""
        episodes = self._draw_episodes(batch, generator, success_fraction)
        steps = self.num_steps[episodes]
        length = self.max_steps if length <= 0 else min(int(length), self.max_steps)
        room = (steps - length).clamp_min(0)
        start = (torch.rand(batch, generator=generator) * (room + 1).float()).long().clamp(max=room)
        rows = self.frame_offset[episodes] + start
        previous = torch.where(start > 0, rows - 1, rows)
        state = self._state(rows, previous, episodes)
        if position_noise > 0:
            noise = torch.randn(batch, 3, generator=generator) * position_noise
            state.object_position = state.object_position + noise
            state.previous_object_position = state.previous_object_position + noise
        offsets = torch.arange(length)
        mask = (start[:, None] + offsets[None]) < steps[:, None]
        step_index = (start[:, None] + offsets[None]).clamp(max=steps[:, None] - 1)
        target_rows = self.step_offset[episodes][:, None] + step_index
        truth_rows = self.frame_offset[episodes][:, None] + step_index + 1
        return UnrollBatch(start=state, targets=self.targets[target_rows], joint_state=self.joint_state[truth_rows],
                           object_position=self.object_position[truth_rows],
                           object_rotation=self.object_rotation[truth_rows], mask=mask.float())

    def _draw_episodes(self, batch: int, generator: torch.Generator, success_fraction: float | None) -> torch.Tensor:
        successes, failures = torch.nonzero(self.success)[:, 0], torch.nonzero(~self.success)[:, 0]
        if success_fraction is None or len(successes) == 0 or len(failures) == 0:
            return torch.randint(0, len(self), (batch,), generator=generator)
        count = int(round(batch * success_fraction))
        return torch.cat([successes[torch.randint(0, len(successes), (count,), generator=generator)],
                          failures[torch.randint(0, len(failures), (batch - count,), generator=generator)]])

    def frame_samples(self, batch: int, generator: torch.Generator) -> FrameBatch:
        """``batch`` (first frame, frame t, state at t) samples, t uniform over all frames."""
        rows = torch.randint(0, self.frames.shape[0], (batch,), generator=generator)
        episodes = self.frame_episode[rows]
        first = self.frame_offset[episodes]
        previous = torch.where(rows > first, rows - 1, rows)
        state = self._state(rows, previous, episodes)
        return FrameBatch(scene=_to_model(self.frames[first]), target=_to_model(self.frames[rows]), state=state,
                          instruction_embedding=self.embeddings[self.instruction[episodes]])

    def perception_samples(self, batch: int, generator: torch.Generator) -> PerceptionBatch:
        """``batch`` frames where the object still rests at its start pose, with that pose."""
        pick = torch.randint(0, len(self.resting_frames), (batch,), generator=generator)
        rows = self.resting_frames[pick]
        episodes = self.frame_episode[rows]
        return PerceptionBatch(frames=_to_model(self.frames[rows]), position=self.object_position[rows],
                               rotation=self.object_rotation[rows], descriptor=self.descriptor[episodes])

    def joint_transitions(self) -> tuple[torch.Tensor, ...]:
        """Every step of every episode as ``(q_{t+1}, q_t, q_{t-1}, u_t, u_{t-1})`` (each (N, 22); at an
        episode's start ``q_{t-1} = q_t`` and ``u_{t-1} = q_t``: the hand rests where it begins), what
        `psi_gym.world_model.dynamics.JointResponse.fit` reads."""
        episodes = torch.repeat_interleave(torch.arange(len(self)), self.num_steps)
        step = torch.arange(int(self.num_steps.sum())) - self.step_offset[episodes]
        rows = self.frame_offset[episodes] + step
        joint = self.joint_state[rows]
        joint_previous = torch.where((step == 0)[:, None], joint, self.joint_state[(rows - 1).clamp_min(0)])
        return self.joint_state[rows + 1], joint, joint_previous, self.targets, self._previous_targets(rows, episodes)

    def episode_start(self, index: int) -> tuple[WorldState, torch.Tensor]:
        """Episode ``index``'s true start state and its joint targets (T, 22), for evaluation."""
        episodes = torch.tensor([index])
        row = self.frame_offset[episodes]
        steps = int(self.num_steps[index])
        offset = int(self.step_offset[index])
        return self._state(row, row, episodes), self.targets[offset: offset + steps]

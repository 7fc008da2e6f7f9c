"""Training windows cut from robot episodes, pre-stacked in memory so batching costs nothing.

One window per control step ``t`` of an episode (``K`` = number of context frames):

=================  ===========================================================================
context frames     frames t-K+1..t (frame 0 repeated before the episode starts)
state, action      joint state at t, joint targets commanded at t
targets            frame t+1, joint state t+1, object position t+1
previous window    the window of step t-1 in the same episode (for self-rollout training)
=================  ===========================================================================

All frames of all episodes sit in one uint8 tensor; windows are rows of index tensors into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from psi_gym.data.episode import Episode


@dataclass
class WindowBatch:
    """A batch in model units: frames in [-1, 1] channels-first, vectors normalised.

    Shapes: context (B, K, 3, H, W), target_frame (B, 3, H, W), state/next_state (B, S),
    action (B, A), next_object_position (B, 3), instruction_embedding (B, 384);
    previous (B,) index of the window one step earlier, -1 at an episode's first step.
    """

    context: torch.Tensor
    target_frame: torch.Tensor
    state: torch.Tensor
    action: torch.Tensor
    next_state: torch.Tensor
    next_object_position: torch.Tensor
    instruction_embedding: torch.Tensor
    previous: torch.Tensor


def compute_normalization(episodes: Sequence[Episode], margin: float = 0.05) -> dict[str, list[float]]:
    """Per-dimension low/high of actions, states and object positions, widened by ``margin``.

    Dimensions that never move get a range of at least 1e-3 around their value, so that
    normalising never divides by zero.
    """
    if not episodes:
        raise ValueError("cannot compute normalisation ranges from zero episodes")
    stacks = {
        "action": np.concatenate([ep.action for ep in episodes]),
        "state": np.concatenate([ep.state for ep in episodes]),
        "object": np.concatenate([ep.object_pose[:, :3] for ep in episodes]),
    }
    out: dict[str, list[float]] = {}
    for name, values in stacks.items():
        low, high = values.min(axis=0).astype(np.float64), values.max(axis=0).astype(np.float64)
        pad = np.maximum((high - low) * margin, 5e-4)
        out[f"{name}_low"] = (low - pad).tolist()
        out[f"{name}_high"] = (high + pad).tolist()
    return out


class WindowDataset:
    """All (context, state, action) -> (next frame, next state, next object position) windows.

    Args:
        episodes: robot episodes with matching image size and state/action widths.
        num_context_frames: K.
        instruction_embeddings: ``{instruction: (384,) tensor}`` for every episode's instruction.
        normalize: callables (from the model) mapping physical state/action/object position
            to model units: ``{"state": f, "action": f, "object": f}``.
    """

    def __init__(self, episodes: Sequence[Episode], num_context_frames: int,
                 instruction_embeddings: dict[str, torch.Tensor], normalize: dict) -> None:
        if not episodes:
            raise ValueError("WindowDataset needs at least one episode")
        sizes = {ep.frames.shape[1:] for ep in episodes}
        if len(sizes) != 1:
            raise ValueError(f"all episodes must share one frame size, got {sorted(sizes)}")
        frames, context, target, previous = [], [], [], []
        state, action, next_state, next_object, instruction_id = [], [], [], [], []
        instructions = sorted({ep.instruction for ep in episodes})
        instruction_index = {text: i for i, text in enumerate(instructions)}
        frame_offset = window_offset = 0
        for ep in episodes:
            steps = ep.num_steps
            frames.append(torch.from_numpy(np.ascontiguousarray(ep.frames)))
            t = np.arange(steps)
            lags = np.arange(num_context_frames - 1, -1, -1)  # K-1 .. 0: oldest first
            context.append(frame_offset + np.maximum(t[:, None] - lags[None, :], 0))
            target.append(frame_offset + t + 1)
            previous.append(np.where(t > 0, window_offset + t - 1, -1))
            state.append(ep.state[:-1])
            action.append(ep.action)
            next_state.append(ep.state[1:])
            next_object.append(ep.object_pose[1:, :3])
            instruction_id.append(np.full(steps, instruction_index[ep.instruction]))
            frame_offset += steps + 1
            window_offset += steps
        self.frames = torch.cat(frames)  # (F, H, W, 3) uint8
        self.context_index = torch.from_numpy(np.concatenate(context)).long()
        self.target_index = torch.from_numpy(np.concatenate(target)).long()
        self.previous_index = torch.from_numpy(np.concatenate(previous)).long()
        with torch.no_grad():
            self.state = normalize["state"](torch.from_numpy(np.concatenate(state))).float()
            self.action = normalize["action"](torch.from_numpy(np.concatenate(action))).float()
            self.next_state = normalize["state"](torch.from_numpy(np.concatenate(next_state))).float()
            self.next_object = normalize["object"](torch.from_numpy(np.concatenate(next_object))).float()
        self.instruction_id = torch.from_numpy(np.concatenate(instruction_id)).long()
        self.instructions = instructions
        self.instruction_table = torch.stack([instruction_embeddings[text].float() for text in instructions])
        self.num_episodes = len(episodes)

    def to(self, device: torch.device | str) -> WindowDataset:
        """Move the stacked tensors (frames stay uint8) to ``device``, e.g. the GPU, once."""
        for name in ("frames", "context_index", "target_index", "state", "action", "next_state",
                     "next_object", "instruction_id", "instruction_table"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def __len__(self) -> int:
        return int(self.target_index.shape[0])

    @staticmethod
    def _to_model_frames(frames: torch.Tensor) -> torch.Tensor:
        # (..., H, W, 3) uint8 -> (..., 3, H, W) float in [-1, 1]
        return frames.movedim(-1, -3).float() / 127.5 - 1.0

    def get(self, index: torch.Tensor, device: torch.device | str = "cpu") -> WindowBatch:
        """The windows at ``index`` (a (B,) long tensor), moved to ``device``."""
        previous = self.previous_index[index.to("cpu")]
        index = index.to(self.frames.device)
        return WindowBatch(
            context=self._to_model_frames(self.frames[self.context_index[index]].to(device)),
            target_frame=self._to_model_frames(self.frames[self.target_index[index]].to(device)),
            state=self.state[index].to(device),
            action=self.action[index].to(device),
            next_state=self.next_state[index].to(device),
            next_object_position=self.next_object[index].to(device),
            instruction_embedding=self.instruction_table[self.instruction_id[index]].to(device),
            previous=previous,
        )

    def sample(self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu") -> WindowBatch:
        index = torch.randint(0, len(self), (batch_size,), generator=generator)
        return self.get(index, device)

"""W0's eyes at the start of an episode: the object's pose and kind read off the first frame.

A state-grounded W0 starts from a real camera frame and the robot's joints; the object's pose is
not given, so a small CNN reads it off the frame:

================== ================= ===================================================
output             shape             meaning
================== ================= ===================================================
position           (B, 3)            object centre, m
rotation           (B, 3, 3)         object orientation (identity for the apple)
descriptor         (B, 6)            kind one-hot (arg-max of the kind logits), size in cm
kind_logits        (B, 3)            apple, can, box
================== ================= ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .world_state import DESCRIPTOR_DIM, OBJECT_KINDS, orthonormalize

POSITION_MEAN = (0.0, 0.0, 0.05)  # m
POSITION_SCALE = 0.05  # m per output unit


@dataclass
class PerceptionOutput:
    position: torch.Tensor
    rotation: torch.Tensor
    descriptor: torch.Tensor
    kind_logits: torch.Tensor
    rotation_six: torch.Tensor
    size: torch.Tensor


class ObjectPerception(nn.Module):
    """A CNN from ``(B, 3, H, W)`` frames in [-1, 1] to the object's pose and kind (see the module doc)."""

    def __init__(self, image_size: int = 64, channels: tuple[int, ...] = (32, 64, 64, 128), hidden_dim: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3 + 2  # RGB and (x, y) pixel coordinates: where a thing is matters
        for out in channels:
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.GroupNorm(8, out), nn.SiLU()]
            width = out
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(channels)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * side * side, hidden_dim), nn.SiLU(),
                                  nn.Linear(hidden_dim, 3 + 6 + len(OBJECT_KINDS) + 3))
        ramp = torch.linspace(-1.0, 1.0, image_size)
        self.register_buffer("coordinates", torch.stack(torch.meshgrid(ramp, ramp, indexing="xy")), persistent=False)
        self.register_buffer("position_mean", torch.tensor(POSITION_MEAN), persistent=False)

    def forward(self, frames: torch.Tensor) -> PerceptionOutput:
        batch = frames.shape[0]
        x = torch.cat([frames, self.coordinates.to(frames.dtype).expand(batch, -1, -1, -1)], dim=1)
        out = self.head(self.features(x)).float()
        kinds = len(OBJECT_KINDS)
        position = self.position_mean + POSITION_SCALE * out[:, :3]
        six = out[:, 3:9] + out.new_tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        kind_logits = out[:, 9: 9 + kinds]
        size = 3.0 + out[:, 9 + kinds:]  # cm, around the objects' sizes
        kind = nn.functional.one_hot(kind_logits.argmax(-1), kinds).float()
        apple = kind[:, :1, None]
        rotation = apple * torch.eye(3, device=frames.device) + (1 - apple) * orthonormalize(six)
        # the descriptor keeps only the sizes a kind has (apple: r; can: r, half length; box: 3)
        used = kind @ kind.new_tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]])
        descriptor = torch.cat([kind, size * used], dim=-1)
        assert descriptor.shape[-1] == DESCRIPTOR_DIM
        return PerceptionOutput(position=position, rotation=rotation, descriptor=descriptor, kind_logits=kind_logits,
                                rotation_six=six, size=size)

"""Draw a world state as image channels (a "sketch"): where the fingers, the palm and the object are.

The renderer of a state-grounded W0 is told *where* things are by these channels and learns
*what they look like* from the scene's first frame. Every part is projected with the scene
camera and drawn as a soft capsule of its own radius (a segment ``a -> b`` of radius ``r`` at
depth ``d`` covers the pixels within ``r f / d`` of the projected segment, ``f`` the focal length).

Channels, each in [0, 1]: 0 the finger links, 1 the palm, 2 the object. The object is drawn as its
axis: a point for the apple (a sphere), the cylinder's axis for the can, the longer horizontal
axis of the box (x or y, whichever half-side is longer), with the object's radius.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from psi_gym.sim.hands import hand_spec

from .hand_geometry import Camera, HandKinematics
from .world_state import OBJECT_KINDS

NUM_SKETCH_CHANNELS = 3


def segment_field(start: torch.Tensor, end: torch.Tensor, radius: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Soft union of capsules: ``start``/``end`` (B, S, 2) pixels, ``radius`` (B, S) pixels, ``grid``
    (P, 2) pixel centres -> (B, P) in [0, 1] (about 1 inside, a 1-pixel soft edge):
    ``sigmoid(2 max_s (r_s - d_s))``, ``d_s`` the distance to segment ``s`` (the sigmoid is monotone,
    so this is the union of the capsules' soft masks). x and y are kept apart, and the (B, S, P)
    temporaries are updated in place: this runs every step of every env."""
    start_x, start_y = start[..., 0:1], start[..., 1:2]
    direction_x, direction_y = end[..., 0:1] - start_x, end[..., 1:2] - start_y
    length2 = (direction_x * direction_x + direction_y * direction_y).clamp_min(1e-6)
    to_x, to_y = grid[:, 0] - start_x, grid[:, 1] - start_y  # (B, S, P)
    along = ((to_x * direction_x + to_y * direction_y) / length2).clamp_(0.0, 1.0)
    off_x, off_y = to_x.sub_(along * direction_x), to_y.sub_(along * direction_y)
    distance = off_x.mul_(off_x).add_(off_y.mul_(off_y)).sqrt_()
    return torch.sigmoid((radius[..., None] - distance).amax(dim=1) * 2.0)


class Sketcher(nn.Module):
    """``forward(joint_state (B, 22), object_position (B, 3), object_rotation (B, 3, 3),
    object_descriptor (B, 6))`` -> (B, 3, H, W) sketch (see the module doc)."""

    def __init__(self, image_size: int = 64) -> None:
        super().__init__()
        spec = hand_spec("robot")
        self.kinematics = HandKinematics()
        self.camera = Camera(image_size)
        self.image_size = int(image_size)
        centres = torch.arange(image_size, dtype=torch.float32) + 0.5
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("grid", torch.stack([xs, ys], -1).reshape(-1, 2), persistent=False)
        starts, ends, radii = [], [], []
        for index, finger in enumerate(spec.fingers):
            first = 1 + 4 * index  # base, mid, dist, tip of this finger in HAND_POINTS
            for k in range(3):
                starts.append(first + k)
                ends.append(first + k + 1)
                radii.append(finger.radius)
        self.register_buffer("finger_start", torch.tensor(starts), persistent=False)
        self.register_buffer("finger_end", torch.tensor(ends), persistent=False)
        self.register_buffer("finger_radius", torch.tensor(radii), persistent=False)
        # The palm as four strokes across its width (a filled rectangle), in the palm frame.
        hx, hy, hz = spec.palm_half_size
        cx, cy, cz = spec.palm_center
        across = np.linspace(-hy + hz, hy - hz, 4)
        self.register_buffer("palm_start", torch.tensor([[cx - hx, cy + y, cz] for y in across], dtype=torch.float32),
                             persistent=False)
        self.register_buffer("palm_end", torch.tensor([[cx + hx, cy + y, cz] for y in across], dtype=torch.float32),
                             persistent=False)
        self.register_buffer("palm_center", torch.tensor(spec.palm_center, dtype=torch.float32), persistent=False)
        self.palm_radius = float(max(hz, hy / 4))

    def _pixels(self, radius: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        return radius * self.camera.focal / depth

    def forward(self, joint_state: torch.Tensor, object_position: torch.Tensor, object_rotation: torch.Tensor,
                object_descriptor: torch.Tensor) -> torch.Tensor:
        batch, dtype = joint_state.shape[0], joint_state.dtype
        points, palm_rotation = self.kinematics(joint_state)
        pixels, depth = self.camera(points)
        start, end = self.finger_start, self.finger_end
        radius = self._pixels(self.finger_radius.to(dtype)[None], 0.5 * (depth[:, start] + depth[:, end]))
        fingers = segment_field(pixels[:, start], pixels[:, end], radius, self.grid.to(dtype))

        palm_origin = points[:, 0] - palm_rotation @ self.palm_center.to(dtype)
        palm_a = palm_origin[:, None] + torch.einsum("bij,sj->bsi", palm_rotation, self.palm_start.to(dtype))
        palm_b = palm_origin[:, None] + torch.einsum("bij,sj->bsi", palm_rotation, self.palm_end.to(dtype))
        pixels_a, depth_a = self.camera(palm_a)
        pixels_b, _ = self.camera(palm_b)
        palm = segment_field(pixels_a, pixels_b, self._pixels(torch.full_like(depth_a, self.palm_radius), depth_a),
                             self.grid.to(dtype))

        kind = object_descriptor[:, : len(OBJECT_KINDS)]
        size = object_descriptor[:, len(OBJECT_KINDS):] / 100.0  # descriptor sizes are in cm
        apple, can, box = kind[:, 0:1], kind[:, 1:2], kind[:, 2:3]
        short_side = torch.minimum(size[:, 0:1], size[:, 1:2])
        long_side = torch.maximum(size[:, 0:1], size[:, 1:2])
        along_x = (size[:, 0:1] >= size[:, 1:2]).to(dtype)  # the box's longer horizontal axis
        box_axis = along_x * object_rotation[:, :, 0] + (1 - along_x) * object_rotation[:, :, 1]
        half_length = can * size[:, 1:2] + box * (long_side - short_side)
        axis = can * object_rotation[:, :, 2] + box * box_axis
        object_radius = (apple + can) * size[:, 0:1] + box * short_side
        ends = torch.stack([object_position - axis * half_length, object_position + axis * half_length], dim=1)
        pixels_o, depth_o = self.camera(ends)
        thing = segment_field(pixels_o[:, :1], pixels_o[:, 1:], self._pixels(object_radius, depth_o[:, :1]),
                              self.grid.to(dtype))
        return torch.stack([fingers, palm, thing], dim=1).reshape(batch, NUM_SKETCH_CHANNELS, self.image_size, self.image_size)

"""Frame metrics and open-loop prediction of whole episodes.

PSNR is on uint8 frames (peak 255); SSIM per image (11x11 Gaussian window, sigma 1.5, each RGB
channel, Wang et al. 2004 constants for a 255 range). ``copy_first`` is the baseline that predicts
"nothing moves" (the episode's first frame held still): a world model is only useful where it
beats it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from psi_gym.data.episode import Episode

from .model import WorldModel


def psnr(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 images (optionally only where ``mask`` (..., H, W) is true)."""
    error = (prediction.astype(np.float64) - target.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        error = error[mask]
    mse = float(error.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean SSIM per image of uint8 (N, H, W, 3) batches."""
    x = torch.from_numpy(prediction).permute(0, 3, 1, 2).double()
    y = torch.from_numpy(target).permute(0, 3, 1, 2).double()
    coords = torch.arange(11, dtype=torch.float64) - 5
    gauss = torch.exp(-(coords**2) / (2 * 1.5**2))
    gauss = gauss / gauss.sum()
    window = (gauss[:, None] * gauss[None, :]).expand(3, 1, 11, 11).contiguous()

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, window, groups=3)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3)).numpy()


@dataclass
class OpenLoopPrediction:
    """What W0 predicted for ``B`` episodes from their first frames: ``frames`` (B, L, H, W, 3) uint8
    (frames 1..L), ``object_position`` (B, L, 3) m and ``joint_state`` (B, L, 22) after each step."""

    frames: np.ndarray
    object_position: np.ndarray
    joint_state: np.ndarray


@torch.no_grad()
def predict_open_loop(model: WorldModel, episodes: Sequence[Episode], horizon: int | None = None,
                      generator: torch.Generator | None = None, num_inference_steps: int | None = None) -> OpenLoopPrediction:
    """Open loop from each episode's first real frame and start joints, with its real joint
    targets for ``horizon`` steps (default: the shortest episode's length), W0's own state fed back:
    what the env does with a plan."""
    horizon = min(ep.num_steps for ep in episodes) if horizon is None else int(horizon)
    first = np.stack([ep.frames[0] for ep in episodes])
    state = model.initial_state(first, np.stack([ep.state[0] for ep in episodes]).astype(np.float32))
    embedding = model._instruction_embedding([ep.instruction for ep in episodes], len(episodes))
    frames, positions, joints = [], [], []
    for t in range(horizon):
        action = np.stack([ep.action[t] for ep in episodes]).astype(np.float32)
        out = model.predict(first[:, None], state.joint_state.cpu().numpy(), action, embedding, generator=generator,
                            num_inference_steps=num_inference_steps, output_type="np", world_state=state)
        state = out.world_state
        frames.append(out.frames)
        positions.append(out.object_position)
        joints.append(out.state)
    return OpenLoopPrediction(np.stack(frames, 1), np.stack(positions, 1), np.stack(joints, 1))

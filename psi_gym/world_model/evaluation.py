"""How good is a world model on held-out episodes: one-step and open-loop (autoregressive) metrics.

PSNR is on uint8 frames (peak 255). ``copy_last`` is the baseline that predicts "nothing moves"
(the last context frame); a world model is only useful where it beats it, above all on the
pixels that do change (``changed_psnr``: hand and object).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

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


def _context(frames: np.ndarray, t: int, k: int) -> np.ndarray:
    index = np.maximum(np.arange(t - k + 1, t + 1), 0)
    return frames[index]


def predict_open_loop(model: WorldModel, episodes: Sequence[Episode], starts: Sequence[int], horizon: int,
                      generator: torch.Generator, num_inference_steps: int | None = None) -> np.ndarray:
    """Open-loop prediction: frames (B, horizon, H, W, 3), episode b from real context at
    starts[b] with its real actions starts[b] .. starts[b] + horizon - 1, the model's own frames
    and states fed back as context."""
    k = model.num_context_frames
    context = np.stack([_context(ep.frames, t0, k) for ep, t0 in zip(episodes, starts)])
    state = np.stack([ep.state[t0] for ep, t0 in zip(episodes, starts)])
    instructions = [ep.instruction for ep in episodes]
    frames = []
    for h in range(horizon):
        action = np.stack([ep.action[t0 + h] for ep, t0 in zip(episodes, starts)])
        out = model.predict(context, state, action, instructions, generator=generator,
                            num_inference_steps=num_inference_steps, output_type="np")
        frames.append(out.frames)
        context = np.concatenate([context[:, 1:], out.frames[:, None]], axis=1)
        state = out.state.astype(np.float32)
    return np.stack(frames, axis=1)


@torch.no_grad()
def evaluate_world_model(
    model: WorldModel,
    episodes: Sequence[Episode],
    seed: int = 0,
    num_inference_steps: int | None = None,
    horizon: int = 16,
    change_threshold: int = 5,
) -> dict[str, float]:
    """One-step (teacher-forced) and ``horizon``-step autoregressive metrics.

    Returns PSNR of the model and of copy-last-frame, over all pixels and over changed pixels
    (``|target - last| > change_threshold`` in any channel), state MAE (physical units), object
    position error (m), and open-loop PSNR after ``horizon`` steps fed back on its own frames
    (states fed back too; the actions are the episodes').
    """
    k = model.num_context_frames
    generator = torch.Generator(device=model.device).manual_seed(seed)
    predictions, targets, lasts, state_err, object_err = [], [], [], [], []
    for ep in episodes:
        steps = ep.num_steps
        contexts = np.stack([_context(ep.frames, t, k) for t in range(steps)])
        out = model.predict(contexts, ep.state[:-1], ep.action, [ep.instruction] * steps, generator=generator,
                            num_inference_steps=num_inference_steps, output_type="np")
        predictions.append(out.frames)
        targets.append(ep.frames[1:])
        lasts.append(ep.frames[:-1])
        state_err.append(np.abs(out.state - ep.state[1:]).mean())
        object_err.append(np.linalg.norm(out.object_position - ep.object_pose[1:, :3], axis=1).mean())
    prediction, target, last = (np.concatenate(x) for x in (predictions, targets, lasts))
    changed = (np.abs(target.astype(int) - last.astype(int)) > change_threshold).any(-1)
    metrics = {
        "psnr": psnr(prediction, target),
        "psnr_copy_last": psnr(last, target),
        "changed_psnr": psnr(prediction, target, changed),
        "changed_psnr_copy_last": psnr(last, target, changed),
        "state_mae": float(np.mean(state_err)),
        "object_error_m": float(np.mean(object_err)),
    }

    # open loop: all episodes in one batch, from their first frame
    length = min(horizon, min(ep.num_steps for ep in episodes))
    open_loop_psnr = []
    if length > 0:
        predicted = predict_open_loop(model, episodes, [0] * len(episodes), length, generator, num_inference_steps)
        open_loop_psnr = [psnr(predicted[:, t], np.stack([ep.frames[t + 1] for ep in episodes])) for t in range(length)]
    if open_loop_psnr:
        metrics[f"open_loop_psnr_step{length}"] = open_loop_psnr[-1]
        metrics["open_loop_psnr_mean"] = float(np.mean(open_loop_psnr))
        last_truth = np.stack([ep.frames[0] for ep in episodes])
        truth = np.stack([ep.frames[length] for ep in episodes])
        metrics[f"open_loop_psnr_copy_first_step{length}"] = psnr(last_truth, truth)
    return metrics

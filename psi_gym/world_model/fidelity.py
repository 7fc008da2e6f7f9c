"""Frame fidelity of a world model against the ground-truth simulator, from episode starts.

On held-out robot rollouts generated fresh from a seed (`psi_gym.retarget.robot_rollouts`), W0
predicts each whole episode open loop from its first real frame with the real joint targets
(`predict_open_loop`, what the env does). Per step: PSNR and SSIM against the simulator's frame,
the same for the first frame held still (``copy_last``: the "nothing moves" baseline), and the
object-position error of the state W0 tracks. Plus the speed of one `predict` call.

The questions RL asks of W0 (full horizon through the env, ranking of candidate refinements,
near misses, the env's verdict against the simulator's) are `psi_gym.agents.world_model_report`'s,
which ``psi-gym eval-w0`` runs beside this.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from psi_gym.world_model.evaluation import predict_open_loop, psnr, ssim
from psi_gym.world_model.model import WorldModel


@dataclass
class FidelityConfig:
    episodes: int = 48
    """held-out rollouts"""
    horizon: int = 8
    """steps from the start over which ``psnr``/``ssim`` are averaged (the by-step lists cover the whole episode)"""
    seed: int = 0
    batch_size: int = 64


@dataclass
class FidelityReport:
    """`evaluate_fidelity`'s report (``to_dict`` is its JSON form). PSNR in dB, SSIM in [0, 1]."""

    seed: int
    horizon: int
    psnr: float
    psnr_copy_last: float
    psnr_gain_over_copy_last: float
    ssim: float
    ssim_copy_last: float
    psnr_per_step: list[float]
    psnr_copy_last_per_step: list[float]
    ssim_per_step: list[float]
    ssim_copy_last_per_step: list[float]
    object_error_cm_per_step: list[float]
    """median over episodes of ``|p_W0 - p_sim|`` after each step."""
    ms_per_step: dict[str, float]
    """``predict`` time at batch 1 and 16."""
    device: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def evaluate_fidelity(model: WorldModel, config: FidelityConfig) -> FidelityReport:
    """The whole report (see the module docstring)."""
    from psi_gym.retarget.robot_rollouts import make_rollout
    from psi_gym.world_model.benchmark import benchmark_predict

    if config.horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {config.horizon}")
    generator = torch.Generator(device=model.device).manual_seed(config.seed)
    # the index offset keeps these apart from any collect run of the same seed
    episodes = [make_rollout(config.seed, 5_000_000 + i, image_size=model.image_size) for i in range(config.episodes)]
    length = min(ep.num_steps for ep in episodes)
    frames, positions = [], []
    for first in range(0, len(episodes), config.batch_size):
        out = predict_open_loop(model, episodes[first: first + config.batch_size], length, generator)
        frames.append(out.frames)
        positions.append(out.object_position)
    predicted, position = np.concatenate(frames), np.concatenate(positions)
    truth = np.stack([ep.frames[1: length + 1] for ep in episodes])
    held = np.stack([np.repeat(ep.frames[:1], length, axis=0) for ep in episodes])
    true_position = np.stack([ep.object_pose[1: length + 1, :3] for ep in episodes])
    per = {key: [] for key in ("psnr", "copy", "ssim", "ssim_copy", "object")}
    for t in range(length):
        per["psnr"].append(psnr(predicted[:, t], truth[:, t]))
        per["copy"].append(psnr(held[:, t], truth[:, t]))
        per["ssim"].append(float(ssim(predicted[:, t], truth[:, t]).mean()))
        per["ssim_copy"].append(float(ssim(held[:, t], truth[:, t]).mean()))
        per["object"].append(float(np.median(np.linalg.norm(position[:, t] - true_position[:, t], axis=-1)) * 100))
    h = min(config.horizon, length)
    speed = benchmark_predict(model, (1, 16), repeats=10)
    return FidelityReport(
        seed=config.seed, horizon=h,
        psnr=float(np.mean(per["psnr"][:h])), psnr_copy_last=float(np.mean(per["copy"][:h])),
        psnr_gain_over_copy_last=float(np.mean(per["psnr"][:h]) - np.mean(per["copy"][:h])),
        ssim=float(np.mean(per["ssim"][:h])), ssim_copy_last=float(np.mean(per["ssim_copy"][:h])),
        psnr_per_step=per["psnr"], psnr_copy_last_per_step=per["copy"], ssim_per_step=per["ssim"],
        ssim_copy_last_per_step=per["ssim_copy"], object_error_cm_per_step=per["object"],
        ms_per_step={str(b): v["ms_per_step"] for b, v in speed.items()}, device=str(model.device),
    )

"""Fidelity report of a world model against the ground-truth simulator (`psi-gym eval-w0`).

On held-out episodes generated fresh from a seed:

1. **Open-loop video prediction.** From real context frames at a start step t0 and the real
   action sequence, the model predicts ``horizon`` frames, each fed back as context (and its
   predicted joint state as state). Per horizon step h: PSNR and SSIM against the simulator's
   frame t0+h, and the same for the copy-last-frame baseline (the frame at t0 held still).
2. **Counterfactual outcome agreement.** Pairs of episodes share a start and differ in actions
   from a branch step on: in the simulator one succeeds and one fails
   (`psi_gym.retarget.robot_rollouts.make_counterfactual_pair`). From the shared context at the branch,
   the model predicts each branch to the end; the outcome is read off the *predicted* last frame
   by the learned object-state/success estimator (trained on simulator frames), and compared
   with the simulator's outcome. This is the check the ~30% failure data is for.
3. **Speed.** ms per `predict` call at batch 1 and 16.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from psi_gym.world_model.evaluation import predict_open_loop, psnr
from psi_gym.world_model.model import WorldModel


@dataclass
class FidelityConfig:
    episodes: int = 48
    """held-out rollouts for the open-loop PSNR/SSIM table"""
    pairs: int = 30
    """success/failure pairs for the counterfactual outcome check"""
    horizon: int = 8
    """open-loop prediction steps for PSNR/SSIM (>= 8)"""
    seed: int = 0
    success_threshold: float = 0.5
    """estimator probability above which a frame shows success"""
    video_dir: Path | None = None
    videos: int = 6
    """how many predicted-vs-true videos of each kind to write"""
    batch_size: int = 64


def ssim(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean SSIM per image of uint8 (N, H, W, 3) batches (11x11 Gaussian window, sigma 1.5, on
    each RGB channel, constants of Wang et al. 2004 for a 255 data range)."""
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


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class FidelityReport:
    """`evaluate_fidelity`'s report (``to_dict`` is its JSON form). PSNR in dB, SSIM in [0, 1];
    ``*_per_step`` lists hold one value per open-loop horizon step."""

    seed: int
    horizon: int
    psnr: float
    psnr_copy_last: float
    ssim: float
    ssim_copy_last: float
    psnr_per_step: list[float]
    psnr_copy_last_per_step: list[float]
    ssim_per_step: list[float]
    ssim_copy_last_per_step: list[float]
    psnr_gain_over_copy_last: float
    outcome_agreement: float
    """fraction of counterfactual branches whose predicted outcome (estimator on W0's last frame)
    matches the simulator's."""
    pair_both_right: float
    """fraction of pairs with the success predicted as success and the failure as failure."""
    estimator_on_true_frames: float
    """the same agreement with the estimator on the simulator's own last frames (its ceiling)."""
    pairs: int
    pair_horizon_mean: float
    outcome_agreement_per_task: dict[str, float]
    ms_per_step: dict[str, float]
    """``predict`` time at batch 1 and 16."""
    device: str
    video_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "video_dir" or value is not None}


def evaluate_fidelity(model: WorldModel, estimator, config: FidelityConfig) -> FidelityReport:
    """The whole report (see the module docstring). ``estimator`` is anything with
    ``success_probability(frames, task_names)`` (an `ObjectStateEstimator`), handed in: it lives
    in `psi_gym.rewards`, above this part."""
    from psi_gym.retarget.robot_rollouts import make_counterfactual_pair, make_rollout

    if config.horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {config.horizon}")
    generator = torch.Generator(device=model.device).manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    report: dict[str, Any] = {"seed": config.seed, "horizon": config.horizon}
    bar = tqdm(total=config.episodes + config.pairs, desc="eval-w0 episodes", file=sys.stderr)

    # 1. open-loop prediction on fresh rollouts (index offset keeps them apart from training seeds)
    episodes = []
    for i in range(config.episodes):
        episodes.append(make_rollout(config.seed, 5_000_000 + i, image_size=model.image_size))
        bar.update(1)
    starts = [int(rng.integers(0, ep.num_steps - config.horizon + 1)) for ep in episodes]
    per_step_psnr, per_step_copy, per_step_ssim, per_step_ssim_copy = [], [], [], []
    predictions = []
    for chunk in _batches(list(range(len(episodes))), config.batch_size):
        predictions.append(predict_open_loop(model, [episodes[i] for i in chunk], [starts[i] for i in chunk], config.horizon, generator))
    predicted = np.concatenate(predictions)
    truth = np.stack([ep.frames[t0 + 1 : t0 + 1 + config.horizon] for ep, t0 in zip(episodes, starts)])
    held = np.stack([np.repeat(ep.frames[t0][None], config.horizon, axis=0) for ep, t0 in zip(episodes, starts)])
    for h in range(config.horizon):
        per_step_psnr.append(psnr(predicted[:, h], truth[:, h]))
        per_step_copy.append(psnr(held[:, h], truth[:, h]))
        per_step_ssim.append(float(ssim(predicted[:, h], truth[:, h]).mean()))
        per_step_ssim_copy.append(float(ssim(held[:, h], truth[:, h]).mean()))
    report.update({
        "psnr": float(np.mean(per_step_psnr)), "psnr_copy_last": float(np.mean(per_step_copy)),
        "ssim": float(np.mean(per_step_ssim)), "ssim_copy_last": float(np.mean(per_step_ssim_copy)),
        "psnr_per_step": per_step_psnr, "psnr_copy_last_per_step": per_step_copy,
        "ssim_per_step": per_step_ssim, "ssim_copy_last_per_step": per_step_ssim_copy,
    })
    report["psnr_gain_over_copy_last"] = report["psnr"] - report["psnr_copy_last"]

    # 2. counterfactual outcome agreement
    pairs = []
    for i in range(config.pairs):
        pairs.append(make_counterfactual_pair(config.seed, 6_000_000 + i, image_size=model.image_size))
        bar.update(1)
    bar.close()
    pair_predictions, horizons, predicted_final, true_final = [], [], [], []
    for success, failure, branch in pairs:
        horizon = success.num_steps - branch
        out = predict_open_loop(model, [success, failure], [branch, branch], horizon, generator)
        pair_predictions.append(out)
        predicted_final.extend([out[0, -1], out[1, -1]])
        true_final.extend([success.frames[-1], failure.frames[-1]])
        horizons.append(horizon)
    tasks = [ep.task for success, failure, _ in pairs for ep in (success, failure)]
    sim_outcome = np.array([ep.success for success, failure, _ in pairs for ep in (success, failure)])
    with torch.no_grad():
        p_pred = estimator.success_probability(np.stack(predicted_final), tasks).cpu().numpy()
        p_true = estimator.success_probability(np.stack(true_final), tasks).cpu().numpy()
    predicted_outcome = p_pred > config.success_threshold
    both_right = (predicted_outcome[0::2] & ~predicted_outcome[1::2]).mean()
    report.update({
        "outcome_agreement": float((predicted_outcome == sim_outcome).mean()),
        "pair_both_right": float(both_right),
        "estimator_on_true_frames": float(((p_true > config.success_threshold) == sim_outcome).mean()),
        "pairs": len(pairs),
        "pair_horizon_mean": float(np.mean(horizons)),
        "outcome_agreement_per_task": {
            task: float((predicted_outcome == sim_outcome)[np.array(tasks) == task].mean()) for task in sorted(set(tasks))
        },
    })

    # 3. speed
    from psi_gym.world_model.benchmark import benchmark_predict

    speed = benchmark_predict(model, (1, 16), repeats=10)
    report["ms_per_step"] = {str(b): v["ms_per_step"] for b, v in speed.items()}
    report["device"] = str(model.device)

    if config.video_dir is not None:
        _write_videos(config, predicted, truth, pairs, pair_predictions)
        report["video_dir"] = str(config.video_dir)
    return FidelityReport(**report)


def _write_videos(config: FidelityConfig, predicted, truth, pairs, pair_predictions) -> None:
    from psi_gym.data.video import side_by_side, write_video

    out = Path(config.video_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(min(config.videos, len(predicted))):
        write_video(out / f"rollout_{i:02d}_true_vs_predicted.mp4", side_by_side(truth[i], predicted[i]), fps=5)
    for i, ((success, failure, branch), pred) in enumerate(zip(pairs[: config.videos], pair_predictions)):
        panels = [success.frames[branch + 1 :], pred[0], failure.frames[branch + 1 :], pred[1]]
        write_video(out / f"pair_{i:02d}_{success.task}_true_pred_success_true_pred_failure.mp4", side_by_side(*panels), fps=5)


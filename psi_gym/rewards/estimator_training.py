"""Training and evaluating the object-state / success estimator on labelled robot rollouts.

Every frame of every episode is one example: the input is the frame, the targets are the
object's position (from ``object_pose``) and whether the episode's task success condition holds
in that frame (`frame_success_labels`, the simulator's own rule). Episodes, not frames, are
split into train and held-out sets, so no held-out frame has a near-twin in training.

Loss (``B`` frames, frame ``i`` of task ``k_i`` with label ``y_i``):

* position: Smooth-L1 between predicted and true position, in the normalised units of the
  position head (per-axis mean/std of the training frames, stored in the model config), over
  frames whose object is in view (`object_in_view`);
* success: ``sum_i w_i BCE(logit_i[k_i], y_i) / sum_i w_i`` on the head of the frame's own task,
  with class-balancing weights ``w = N_k / (2 N_k,y)`` per task ``k`` and label ``y`` (lifted or
  pushed-home frames are the rarer class in most tasks);
* margin: the same class-weighted mean of Smooth-L1 between the predicted and true success margin
  (`frame_success_margins`, in cm, clipped at +-``MARGIN_CLIP``), over frames in view. (Without
  the class weights the plain accuracy is the same and the balanced accuracy a little lower.)
  ``logit = margin / temperature``, so this loss is what makes the boundary sharp.

Augmentations make the estimator read *predicted* frames too: a diffusion world model's frames are
blurrier and noisier than the simulator's, with slightly shifted colours. Per frame: Gaussian blur
with a random sigma, contrast/brightness/per-channel-gain jitter, Gaussian pixel noise. No
geometric augmentation: where the object is in the image *is* the position target.

Metrics: the loss parts (mean over each 10 steps), the learning rate and the held-out metrics go
through accelerate's trackers into ``<out_dir>.logs/train-estimator/`` (`psi_gym.data.metrics`:
TensorBoard if installed, else ``metrics.csv`` and ``loss.png``), beside the estimator folder,
which is swapped in whole when training ends. One trainer per ``out_dir``: the run holds its lock.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from psi_gym.data.atomic import hold_lock, replacing_dir
from psi_gym.data.episode import Episode
from psi_gym.rewards.object_state import (
    MARGIN_CLIP,
    MARGIN_UNIT,
    ObjectStateEstimator,
    ObjectStateEstimatorConfig,
    frame_success_labels,
    frame_success_margins,
    frames_to_pixel_values,
    object_in_view,
)
from psi_gym.world_model.schedule import warmup_cosine_learning_rate


@dataclass
class AugmentConfig:
    """Per-frame photometric augmentations that mimic world-model predictions (see module doc)."""

    blur_probability: float = 0.6
    max_blur_sigma: float = 1.2
    """pixels; sigma ~ U(0, max) for a blurred frame."""
    max_noise_std: float = 0.04
    """in [0, 1] units; per-frame std ~ U(0, max)."""
    brightness: float = 0.1
    """multiplicative brightness factor in 1 +- brightness."""
    contrast: float = 0.1
    channel_gain: float = 0.05
    """per-channel multiplicative gain in 1 +- channel_gain (colour shift)."""


@dataclass
class EstimatorTrainConfig:
    """Hyper-parameters of `train_estimator` (the network's sizes live in ``model``)."""

    model: ObjectStateEstimatorConfig = field(default_factory=ObjectStateEstimatorConfig)
    """architecture; ``position_mean``/``position_std`` are filled in from the training frames."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    steps: int = 3000
    batch_size: int = 128
    learning_rate: float = 2e-3
    min_learning_rate: float = 5e-5
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    success_loss_weight: float = 1.0
    margin_loss_weight: float = 1.0
    position_loss_beta: float = 0.1
    """Smooth-L1 transition point, in normalised position units."""
    margin_loss_beta: float = 0.1
    """Smooth-L1 transition point of the success-margin regression, in cm."""
    val_fraction: float = 0.1
    """fraction of episodes held out (at least one when there are two or more)."""
    eval_every: int = 1000
    """held-out evaluation every this many steps (0: only at the end)."""
    eval_batch_size: int = 512
    device: str = "cpu"
    progress: bool = True


@dataclass
class FrameSet:
    """All frames of some episodes, flattened, with their targets (``N`` frames)."""

    frames: torch.Tensor
    """(N, H, W, 3) uint8."""
    position: torch.Tensor
    """(N, 3) float32, metres."""
    task_index: torch.Tensor
    """(N,) int64, index into the estimator's task names."""
    success: torch.Tensor
    """(N,) float32, 1.0 where the task's success condition holds."""
    margin: torch.Tensor
    """(N,) float32, signed distance (m) to the success boundary, clipped to +-MARGIN_CLIP."""
    episode: torch.Tensor
    """(N,) int64, which episode a frame comes from."""
    final: torch.Tensor
    """(N,) bool, last frame of its episode."""
    in_view: torch.Tensor
    """(N,) bool, the object centre is inside the image (`object_in_view`); position targets only there."""

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def subset(self, rows: torch.Tensor, skip_frames: bool = False) -> FrameSet:
        """The frames at ``rows``; ``skip_frames`` leaves ``frames`` empty (targets only)."""
        values = {f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self) if not (skip_frames and f.name == "frames")}
        if skip_frames:
            values["frames"] = self.frames[:0]
        return FrameSet(**values)

    def to(self, device: torch.device | str) -> FrameSet:
        return FrameSet(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})


def load_episodes(data: str | os.PathLike | Episode | Sequence[str | os.PathLike | Episode]) -> list[Episode]:
    """Episodes from dataset folders, `Episode` objects, or a mix of both."""
    from psi_gym.data.lerobot import read_episodes

    items = [data] if isinstance(data, (str, os.PathLike, Episode)) else list(data)
    episodes: list[Episode] = []
    for item in items:
        if isinstance(item, Episode):
            episodes.append(item)
        elif isinstance(item, (str, os.PathLike)):
            if not Path(item).is_dir():
                raise FileNotFoundError(f"no dataset folder at {item}: expected a LeRobot v3 dataset (from `psi-gym collect`)")
            episodes.extend(read_episodes(item))
        else:
            raise ValueError(f"data must be dataset folders or Episode objects, got {type(item).__name__}")
    if not episodes:
        raise ValueError("no episodes to train or evaluate on")
    return episodes


def frame_set(episodes: Sequence[Episode], task_names: Sequence[str], image_size: int) -> FrameSet:
    """Flatten episodes into a `FrameSet`; refuses tasks without a head and frames of another size."""
    frames, positions, tasks, labels, margins, owners, finals, visible = [], [], [], [], [], [], [], []
    names = list(task_names)
    for number, episode in enumerate(episodes):
        if episode.task not in names:
            raise ValueError(f"episode {number} is of task {episode.task!r}; the estimator has heads for {names}")
        if episode.image_size != (image_size, image_size):
            raise ValueError(f"episode {number} has {episode.image_size} frames; the estimator reads {image_size}x{image_size}")
        count = episode.frames.shape[0]
        frames.append(torch.from_numpy(np.ascontiguousarray(episode.frames)))
        positions.append(torch.from_numpy(np.asarray(episode.object_pose[:, :3], dtype=np.float32)))
        tasks.append(torch.full((count,), names.index(episode.task), dtype=torch.long))
        labels.append(torch.from_numpy(frame_success_labels(episode).astype(np.float32)))
        margins.append(torch.from_numpy(np.clip(frame_success_margins(episode), -MARGIN_CLIP, MARGIN_CLIP)))
        owners.append(torch.full((count,), number, dtype=torch.long))
        final = torch.zeros(count, dtype=torch.bool)
        final[-1] = True
        finals.append(final)
        visible.append(torch.from_numpy(object_in_view(episode.object_pose[:, :3])))
    return FrameSet(torch.cat(frames), torch.cat(positions), torch.cat(tasks), torch.cat(labels), torch.cat(margins),
                    torch.cat(owners), torch.cat(finals), torch.cat(visible))


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) episode numbers; at least one held out when ``val_fraction > 0`` and there are two."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    held_out = round(val_fraction * num_episodes)
    if val_fraction > 0 and num_episodes >= 2:
        held_out = max(held_out, 1)
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def class_weights(frames: FrameSet, num_tasks: int) -> torch.Tensor:
    """(num_tasks, 2) loss weights ``N_k / (2 N_k,y)`` for label y = 0, 1 (1.0 for an absent class)."""
    weights = torch.ones(num_tasks, 2)
    for k in range(num_tasks):
        labels = frames.success[frames.task_index == k]
        for y in (0, 1):
            count = int((labels == y).sum())
            if count:
                weights[k, y] = len(labels) / (2.0 * count)
    return weights


def gaussian_blur(pixels: torch.Tensor, sigma: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Blur each image of (B, C, H, W) with its own sigma (B,) (0: unchanged), separable, reflect padding."""
    batch, channels, height, width = pixels.shape
    offsets = torch.arange(-radius, radius + 1, dtype=pixels.dtype, device=pixels.device)
    kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, 2r+1)
    kernel = kernel.repeat_interleave(channels, dim=0)  # one per (image, channel) group
    x = F.pad(pixels.reshape(1, batch * channels, height, width), (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=batch * channels)
    x = F.conv2d(x, kernel[:, None, :, None], groups=batch * channels)
    return x.reshape(batch, channels, height, width)


def augment_pixel_values(pixels: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random blur, colour jitter and pixel noise on (B, 3, H, W) floats in [0, 1]; all draws from ``generator``.

    Random numbers are drawn on the CPU (so a CPU generator serves any device) and moved."""
    batch = pixels.shape[0]
    device = pixels.device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(device)

    if config.blur_probability > 0 and config.max_blur_sigma > 0:
        sigma = uniform(batch) * config.max_blur_sigma
        sigma = torch.where(uniform(batch) < config.blur_probability, sigma, torch.zeros_like(sigma))
        pixels = gaussian_blur(pixels, sigma)
    mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + (2 * uniform(batch, 1, 1, 1) - 1) * config.contrast
    brightness = 1 + (2 * uniform(batch, 1, 1, 1) - 1) * config.brightness
    gain = 1 + (2 * uniform(batch, 3, 1, 1) - 1) * config.channel_gain
    pixels = ((pixels - mean) * contrast + mean) * brightness * gain
    if config.max_noise_std > 0:
        noise = torch.randn(pixels.shape, generator=generator).to(device)
        pixels = pixels + noise * uniform(batch, 1, 1, 1) * config.max_noise_std
    return pixels.clamp(0.0, 1.0)


def estimator_loss(model: ObjectStateEstimator, pixel_values: torch.Tensor, batch: FrameSet, weights: torch.Tensor,
                   config: EstimatorTrainConfig | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss of one batch and its parts (see module doc for the formula).

    Args:
        pixel_values: (B, 3, H, W) float in [0, 1], the (augmented) frames of ``batch``.
        batch: the B frames' targets (``frames`` itself is not read), on the model's device.
        weights: (num_tasks, 2) class-balancing weights from `class_weights`.
        config: loss weights (defaults of `EstimatorTrainConfig`).
    """
    config = config or EstimatorTrainConfig()
    output = model(pixel_values)
    visible = batch.in_view.to(pixel_values.dtype)
    scale = model.position_scale
    position_error = F.smooth_l1_loss(output.position / scale, batch.position / scale, beta=config.position_loss_beta,
                                      reduction="none").mean(dim=1)
    position_loss = (position_error * visible).sum() / visible.sum().clamp_min(1.0)

    frame_weights = weights[batch.task_index, batch.success.long()]
    logits = output.success_logits.gather(1, batch.task_index[:, None])[:, 0]
    bce = F.binary_cross_entropy_with_logits(logits, batch.success, reduction="none")
    success_loss = (frame_weights * bce).sum() / frame_weights.sum()

    # Margin regression in cm; a target at the clip only asks the prediction to be at least that far out.
    margin = output.success_margin.gather(1, batch.task_index[:, None])[:, 0]
    target = batch.margin
    margin = torch.where(target >= MARGIN_CLIP, margin.clamp(max=MARGIN_CLIP), margin)
    margin = torch.where(target <= -MARGIN_CLIP, margin.clamp(min=-MARGIN_CLIP), margin)
    margin_error = F.smooth_l1_loss(margin / MARGIN_UNIT, target / MARGIN_UNIT, beta=config.margin_loss_beta, reduction="none")
    margin_weights = frame_weights * visible
    margin_loss = (margin_weights * margin_error).sum() / margin_weights.sum().clamp_min(1e-6)

    total = position_loss + config.success_loss_weight * success_loss + config.margin_loss_weight * margin_loss
    parts = {"loss": total.item(), "position_loss": position_loss.item(), "success_loss": success_loss.item(),
             "margin_loss": margin_loss.item()}
    return total, parts


@torch.no_grad()
def evaluate_estimator(model: ObjectStateEstimator, data: Any, batch_size: int = 512,
                       augment: AugmentConfig | None = None, generator: torch.Generator | None = None) -> dict[str, Any]:
    """Held-out metrics on episodes / dataset folders / a `FrameSet`.

    Returns position error (cm: median, mean, p90, per axis mean abs; frames in view), the median
    success-margin error (cm, in view, unclipped margins), per-task per-frame success
    accuracy, balanced accuracy and positive rate, the same over all frames, and the episode-level
    accuracy of the last frame's success against the episode's label. With ``augment`` the frames
    are first augmented (a robustness check; needs ``generator``).
    """
    frames = data if isinstance(data, FrameSet) else frame_set(load_episodes(data), model.task_names, model.image_size)
    if augment is not None and generator is None:
        raise ValueError("evaluating with augment needs a torch.Generator")
    was_training = model.training
    model.eval()
    positions, logits, margins = [], [], []
    for start in range(0, len(frames), batch_size):
        pixel_values = frames_to_pixel_values(frames.frames[start:start + batch_size], model.image_size, model.device)
        if augment is not None:
            pixel_values = augment_pixel_values(pixel_values, augment, generator)
        output = model(pixel_values)
        positions.append(output.position.float().cpu())
        logits.append(output.success_logits.float().cpu())
        margins.append(output.success_margin.float().cpu())
    model.train(was_training)
    position = torch.cat(positions)
    logit = torch.cat(logits).gather(1, frames.task_index[:, None])[:, 0]
    predicted = logit > 0
    truth = frames.success > 0.5
    visible = frames.in_view
    error_cm = (position - frames.position).norm(dim=1) * 100
    margin = torch.cat(margins).gather(1, frames.task_index[:, None])[:, 0]
    near = visible & (frames.margin.abs() < MARGIN_CLIP)  # median |error| where the margin is not clipped
    margin_error_cm = (margin - frames.margin)[near].abs() * 100
    summary: dict[str, Any] = {
        "frames": len(frames),
        "episodes": int(frames.episode.unique().numel()),
        "out_of_view_frames": int((~visible).sum()),
        "position_error_cm": {  # over frames with the object in view
            "median": float(error_cm[visible].median()),
            "mean": float(error_cm[visible].mean()),
            "p90": float(error_cm[visible].quantile(0.9)),
            "per_axis_mean_abs": [float(v) for v in ((position - frames.position)[visible].abs().mean(0) * 100)],
        },
        "success_accuracy": float((predicted == truth).float().mean()),
        "success_margin_error_cm": float(margin_error_cm.median()) if len(margin_error_cm) else float("nan"),
        "per_task": {},
    }
    for k, name in enumerate(model.task_names):
        rows = frames.task_index == k
        if not rows.any():
            continue
        finals = rows & frames.final
        summary["per_task"][name] = {
            "frames": int(rows.sum()),
            "positive_rate": float(truth[rows].float().mean()),
            "accuracy": float((predicted[rows] == truth[rows]).float().mean()),
            "balanced_accuracy": _balanced_accuracy(predicted[rows], truth[rows]),
            "position_error_cm_median": float(error_cm[rows & visible].median()),
            "final_frame_accuracy": float((predicted[finals] == truth[finals]).float().mean()),
        }
    summary["balanced_accuracy"] = float(np.mean([t["balanced_accuracy"] for t in summary["per_task"].values()]))
    summary["final_frame_accuracy"] = float((predicted[frames.final] == truth[frames.final]).float().mean())
    return summary


def _balanced_accuracy(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    recalls = [float((predicted[truth == y] == y).float().mean()) for y in (False, True) if (truth == y).any()]
    return float(np.mean(recalls))


@dataclass
class EstimatorTrainSummary:
    """What `train_estimator` did (``to_dict`` is its JSON form, also ``training_summary.json``).

    Sections that did not run (no held-out episodes, no ``eval_data``, no ``out_dir``) are None
    and left out of ``to_dict``.
    """

    data: list[str]
    """dataset folders trained on (episodes passed as objects are counted)."""
    episodes: int
    train_episodes: int
    held_out_episodes: int
    train_frames: int
    parameters: int
    steps: int
    batch_size: int
    seed: int
    final_loss: dict[str, float]
    """the loss parts' moving averages at the end."""
    class_weights: dict[str, list[float]]
    history: list[dict[str, Any]]
    held_out: dict[str, Any] | None = None
    """`evaluate_estimator` on the held-out episodes."""
    held_out_augmented: dict[str, Any] | None = None
    """the same on augmented frames (robustness)."""
    eval_data: dict[str, Any] | None = None
    """`evaluate_estimator` on ``eval_data``."""
    seconds: float = 0.0
    out: str | None = None
    """the folder the estimator was saved to."""

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


LOG_EVERY = 10  # steps per logged point


def logs_dir(out_dir: str | os.PathLike) -> Path:
    """Where `train_estimator` logs its metrics: ``<out_dir>.logs`` beside the estimator folder."""
    out = Path(out_dir)
    return out.with_name(out.name + ".logs")


def train_estimator(data: Any, config: EstimatorTrainConfig | None = None, out_dir: str | os.PathLike | None = None,
                    seed: int = 0, eval_data: Any = None, log_with: str = "auto") -> EstimatorTrainSummary:
    """Train an `ObjectStateEstimator` on labelled episodes; return an `EstimatorTrainSummary`.

    Args:
        data: dataset folder(s) and/or `Episode` objects; ``config.val_fraction`` of the episodes
            are held out for evaluation.
        config: hyper-parameters (defaults: `EstimatorTrainConfig()`).
        out_dir: where ``save_pretrained`` writes the model, with ``training_summary.json``
            (built beside it and swapped in, see `save_estimator`); ``None`` keeps nothing.
        seed: seeds the split, the initial weights, batches and augmentations.
        eval_data: optional extra dataset(s) evaluated at the end (e.g. rollouts of a fresh seed).
        log_with: ``"auto"``, ``"tensorboard"``, ``"csv"`` or ``"none"`` (see the module doc; with
            no ``out_dir`` nothing is logged).

    Raises:
        TargetLockedError: another process writes ``out_dir``.
    """
    config = config or EstimatorTrainConfig()
    if config.steps < 1 or config.batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {config.steps}, {config.batch_size}")
    if out_dir is None:
        return _train_estimator(data, config, None, seed, eval_data, "none")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; the estimator is saved as a folder there")
    with hold_lock(out):
        return _train_estimator(data, config, out, seed, eval_data, log_with)


def _train_estimator(data: Any, config: EstimatorTrainConfig, out_dir: Path | None, seed: int, eval_data: Any,
                     log_with: str) -> EstimatorTrainSummary:
    from accelerate import Accelerator

    from psi_gym.data.metrics import flat_config, make_trackers

    start_time = time.perf_counter()
    device = torch.device(config.device)
    episodes = load_episodes(data)
    model_config = config.model
    all_frames = frame_set(episodes, model_config.task_names, model_config.image_size)
    train_ids, val_ids = split_episodes(len(episodes), config.val_fraction, seed)
    train = all_frames.subset(torch.isin(all_frames.episode, torch.from_numpy(train_ids)).nonzero()[:, 0])
    held_out = all_frames.subset(torch.isin(all_frames.episode, torch.from_numpy(val_ids)).nonzero()[:, 0])
    del all_frames

    # Normalisation of the position head from the training frames (stored in config.json).
    mean = train.position[train.in_view].mean(0)
    std = train.position[train.in_view].std(0).clamp_min(1e-3)
    model_config = dataclasses.replace(model_config, position_mean=tuple(float(v) for v in mean),
                                       position_std=tuple(float(v) for v in std))
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # diffusers/torch initialisers draw from the global RNG; keep it contained
        model = ObjectStateEstimator.from_estimator_config(model_config)
    model.to(device).train()
    weights = class_weights(train, len(model_config.task_names)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    # the trackers of accelerate; the model and optimizer stay plain torch on config.device
    trackers = make_trackers(log_with, logs_dir(out_dir), "train-estimator") if out_dir is not None else []
    accelerator = Accelerator(cpu=device.type == "cpu", log_with=trackers or None,
                              project_dir=str(logs_dir(out_dir)) if out_dir is not None else None)
    accelerator.init_trackers("train-estimator", config=flat_config(json.loads(json.dumps(
        {**dataclasses.asdict(config), "seed": seed}, default=list))))
    window: dict[str, float] = {}

    history: list[dict[str, Any]] = []
    running: dict[str, float] = {}
    bar = tqdm(total=config.steps, desc="train-estimator", file=sys.stderr, dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 10.0, disable=not config.progress)
    for step in range(config.steps):
        rows = torch.randint(len(train), (config.batch_size,), generator=generator)
        pixel_values = frames_to_pixel_values(train.frames[rows], model_config.image_size, device)
        pixel_values = augment_pixel_values(pixel_values, config.augment, generator)
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine_learning_rate(step, config.learning_rate, config.min_learning_rate,
                                                      config.warmup_steps, config.steps)
        batch = train.subset(rows, skip_frames=True).to(device)
        loss, parts = estimator_loss(model, pixel_values, batch, weights, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        running = {k: 0.98 * running.get(k, v) + 0.02 * v for k, v in parts.items()}
        window = {k: window.get(k, 0.0) + v for k, v in parts.items()}
        if (step + 1) % LOG_EVERY == 0 or step + 1 == config.steps:
            count = LOG_EVERY if (step + 1) % LOG_EVERY == 0 else (step + 1) % LOG_EVERY
            accelerator.log({**{k: v / count for k, v in window.items()},
                             "learning_rate": optimizer.param_groups[0]["lr"]}, step=step + 1)
            window = {}
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix({k: f"{v:.4f}" for k, v in running.items()})
        last = step + 1 == config.steps
        if len(held_out) and ((config.eval_every and (step + 1) % config.eval_every == 0) or last):
            metrics = evaluate_estimator(model, held_out, config.eval_batch_size)
            history.append({"step": step + 1, **running, "held_out_position_error_cm_median": metrics["position_error_cm"]["median"],
                            "held_out_success_accuracy": metrics["success_accuracy"],
                            "held_out_balanced_accuracy": metrics["balanced_accuracy"]})
            bar.write(json.dumps(history[-1]), file=sys.stderr)
            accelerator.log({k: v for k, v in history[-1].items() if k.startswith("held_out")}, step=step + 1)
    bar.close()
    accelerator.end_training()
    model.eval()

    summary = EstimatorTrainSummary(
        data=_describe(data),
        episodes=len(episodes),
        train_episodes=len(train_ids),
        held_out_episodes=len(val_ids),
        train_frames=len(train),
        parameters=int(sum(p.numel() for p in model.parameters())),
        steps=config.steps,
        batch_size=config.batch_size,
        seed=seed,
        final_loss=running,
        class_weights={name: weights[k].tolist() for k, name in enumerate(model_config.task_names)},
        history=history,
    )
    if len(held_out):
        summary.held_out = evaluate_estimator(model, held_out, config.eval_batch_size)
        augmented = torch.Generator().manual_seed(seed + 1)
        summary.held_out_augmented = evaluate_estimator(model, held_out, config.eval_batch_size, config.augment, augmented)
    if eval_data is not None:
        summary.eval_data = {"data": _describe(eval_data), **evaluate_estimator(model, eval_data, config.eval_batch_size)}
    summary.seconds = time.perf_counter() - start_time
    if out_dir is not None:
        summary.out = str(save_estimator(model, out_dir, summary.to_dict()))
    return summary


def _describe(data: Any) -> list[str]:
    """Dataset folders as strings, episodes as a count (for the JSON summary)."""
    items = [data] if isinstance(data, (str, os.PathLike, Episode)) else list(data)
    folders = [str(item) for item in items if isinstance(item, (str, os.PathLike))]
    count = sum(isinstance(item, Episode) for item in items)
    return folders + ([f"{count} Episode objects"] if count else [])


def save_estimator(model: ObjectStateEstimator, out_dir: str | os.PathLike, summary: dict[str, Any] | None = None) -> Path:
    """``save_pretrained`` (with ``training_summary.json``) into a folder beside ``out_dir``, then swap
    it into place (`psi_gym.data.atomic.replace_dir`: a crash leaves the old folder or the new one)."""
    out = Path(out_dir)
    with replacing_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if summary is not None:
            (tmp / "training_summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return out

"""Training losses of Psi-W0's three parts (notation of `psi_gym.world_model.sampler` for the renderer).

* dynamics: unroll ``L`` steps of its own predictions from a true start (object position with a
  little noise, as perception would read it), compare with the truth after every step:
  ``mean_t huber(|p_hat_t - p_t| / 1 cm) + mean_t |(q_hat_t - q_t) / s|^2 + 0.5 |R_hat_t - R_t|_F^2``
  (rotation terms zero for the apple), masked past an episode's end. Errors that compound over
  the episode are what the unroll trains away.
* renderer: ``sigma ~ p(sigma)``, ``eps ~ N(0, I)``, ``x_sigma = (1 - sigma) x0 + sigma eps``; the
  network predicts ``x0_hat`` from the first frame and the TRUE state at the target frame;
  ``sum(w (x0_hat - x0)^2) / sum(w)`` with ``w = 1 + lambda * dilate(|x0 - first frame| > threshold)``:
  the hand and the object, which carry the outcome, outweigh the static table.
* perception: ``|p_hat - p| / 1 cm`` (Huber) + cross-entropy of the kind + ``|size_hat - size|`` in cm
  + ``|six_hat - six|`` for the can and the box (the apple's orientation is unobservable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from .config import TIME_SAMPLINGS, TrainConfig
from .dataset import FrameBatch, PerceptionBatch, UnrollBatch
from .dynamics import TensorStep, dynamics_members
from .sampler import sampling_sigmas
from .world_state import OBJECT_KINDS


def sample_sigmas(config: TrainConfig, batch: int, generator: torch.Generator, num_inference_steps: int) -> torch.Tensor:
    """Noise levels in (0, 1] for one batch (CPU)."""
    if config.time_sampling == "uniform":
        return torch.rand(batch, generator=generator).clamp_min(1e-3)
    if config.time_sampling == "logit_normal":
        normal = torch.randn(batch, generator=generator) * config.logit_std + config.logit_mean
        return torch.sigmoid(normal).clamp_min(1e-3)
    if config.time_sampling == "inference_mix":
        levels = torch.tensor(sampling_sigmas(num_inference_steps))
        pick = levels[torch.randint(0, len(levels), (batch,), generator=generator)]
        uniform = torch.rand(batch, generator=generator).clamp_min(1e-3)
        use_level = torch.rand(batch, generator=generator) < 0.5
        return torch.where(use_level, pick, uniform)
    raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}, got {config.time_sampling!r}")


def change_weights(target: torch.Tensor, reference: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """(B, 1, H, W) per-pixel weight ``1 + lambda * dilate(|x0 - reference| > threshold)``."""
    changed = ((target - reference).abs() > config.change_threshold).any(dim=1, keepdim=True).float()
    if config.change_dilation > 0:
        size = 2 * config.change_dilation + 1
        changed = F.max_pool2d(changed, size, stride=1, padding=config.change_dilation)
    return 1.0 + config.change_weight * changed


def dynamics_loss(model, batch: UnrollBatch, steps: Sequence[Callable] | None = None) -> dict[str, torch.Tensor]:
    """Unroll the dynamics over ``batch`` (see the module doc); ``loss`` and its parts. An ensemble's
    members are each unrolled on their own predictions (so they stay apart): the loss and its parts
    are the members' mean. ``steps``: one step function per member with `TensorStep`'s signature
    (e.g. compiled ones, `compiled_steps`); default: the members' own `TensorStep`."""
    members = dynamics_members(model.dynamics)
    steps = list(steps) if steps is not None else [TensorStep(member) for member in members]
    if len(steps) != len(members):
        raise ValueError(f"{len(steps)} step functions for {len(members)} dynamics members")
    parts = [_unroll_loss(member, step, batch) for member, step in zip(members, steps)]
    return {key: torch.stack([part[key] for part in parts]).mean() for key in parts[0]}


def compile_unavailable(device: str | torch.device | None = None) -> str | None:
    """Why ``torch.compile`` cannot build the dynamics' step on ``device`` (default: the GPU if there is
    one, as training picks, else the CPU), or None when it can: on the CPU inductor needs a C++
    compiler (``$CXX``, else ``g++``), on a GPU Triton. Checked before a run loads anything
    (`TrainConfig.compile`), not at its first step."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cuda":
        import importlib.util

        return None if importlib.util.find_spec("triton") is not None else "Triton is not installed (pip install triton)"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as error:  # inductor's InvalidCxxCompiler, or anything its search raises
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"no working C++ compiler ({first_line}); install one (e.g. apt install g++) or set $CXX"
    return None


def compiled_steps(model) -> list[Callable]:
    """``torch.compile``d `TensorStep` of each dynamics member of ``model`` (static shapes: an unroll's
    steps all share one graph; `TrainConfig.compile`)."""
    return [torch.compile(TensorStep(member), dynamic=False) for member in dynamics_members(model.dynamics)]


def _unroll_loss(dynamics, step: Callable, batch: UnrollBatch) -> dict[str, torch.Tensor]:
    start = batch.start
    q, q_prev, p, p_prev = start.joint_state, start.previous_joint_state, start.object_position, start.previous_object_position
    u_prev = start.previous_joint_target
    rotation, rotation_prev = start.object_rotation, start.previous_object_rotation
    positions, joints, rotations = [], [], []
    target_points, target_palm = dynamics.target_geometry(batch.targets)
    for t in range(batch.targets.shape[1]):
        # each step's slices as fresh tensors: a compiled step would see a new storage offset (and
        # compile again) for every t otherwise
        u = batch.targets[:, t].clone()
        q_next, p_next, rotation_next = step(q, q_prev, u_prev, p, p_prev, rotation, rotation_prev, start.object_descriptor,
                                             u, target_points[:, t].clone(), target_palm[:, t].clone())
        q_prev, p_prev, rotation_prev, q, p, rotation, u_prev = q, p, rotation, q_next, p_next, rotation_next, u
        positions.append(p)
        joints.append(q)
        rotations.append(rotation)
    position, joint, rotation = torch.stack(positions, 1), torch.stack(joints, 1), torch.stack(rotations, 1)
    mask = batch.mask
    count = mask.sum().clamp_min(1.0)
    error_cm = (position - batch.object_position).norm(dim=-1) * 100.0
    position_loss = (F.smooth_l1_loss(error_cm, torch.zeros_like(error_cm), beta=1.0, reduction="none") * mask).sum() / count
    joint_loss = ((((joint - batch.joint_state) / dynamics.joint_step) ** 2).mean(-1) * mask).sum() / count
    not_sphere = 1.0 - start.object_descriptor[:, :1]
    rotation_error = ((rotation - batch.object_rotation) ** 2).sum((-1, -2)) * not_sphere
    rotation_loss = (rotation_error * mask).sum() / count
    loss = position_loss + joint_loss + 0.5 * rotation_loss
    last = mask.sum(1).long().clamp_min(1) - 1
    final_cm = error_cm.gather(1, last[:, None])[:, 0]
    return {"loss": loss, "object_cm": (error_cm * mask).sum().detach() / count, "final_object_cm": final_cm.mean().detach(),
            "joints": joint_loss.detach(), "rotation": rotation_loss.detach()}


def renderer_loss(model, batch: FrameBatch, config: TrainConfig, generator: torch.Generator,
                  num_inference_steps: int) -> dict[str, torch.Tensor]:
    """Flow-matching x0 loss of the renderer on true states (see the module doc)."""
    x0 = batch.target
    size = x0.shape[0]
    sigma = sample_sigmas(config, size, generator, num_inference_steps).to(x0.device)
    eps = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    s = sigma.view(-1, 1, 1, 1)
    noisy = (1.0 - s) * x0 + s * eps  # x_sigma = (1 - sigma) x0 + sigma eps
    sample = model(noisy, sigma, batch.scene, batch.state, batch.instruction_embedding).float()
    weights = change_weights(x0, batch.scene, config)
    squared = (sample - x0).pow(2)
    loss = (squared * weights).sum() / (weights.sum() * x0.shape[1])
    return {"loss": loss, "frame_mse": squared.mean().detach()}


def perception_loss(model, batch: PerceptionBatch) -> dict[str, torch.Tensor]:
    """Pose, kind and size of the resting object read off a frame (see the module doc)."""
    seen = model.perception(batch.frames)
    kinds = len(OBJECT_KINDS)
    error_cm = (seen.position - batch.position).norm(dim=-1) * 100.0
    position_loss = F.smooth_l1_loss(error_cm, torch.zeros_like(error_cm), beta=1.0)
    kind = batch.descriptor[:, :kinds].argmax(-1)
    kind_loss = F.cross_entropy(seen.kind_logits, kind)
    size_used = batch.descriptor[:, kinds:] != 0
    size_loss = ((seen.size - batch.descriptor[:, kinds:]).abs() * size_used).sum() / size_used.sum().clamp_min(1)
    six = batch.rotation[..., :2].transpose(-1, -2).flatten(1)
    not_sphere = 1.0 - batch.descriptor[:, :1]
    rotation_loss = (((seen.rotation_six - six) ** 2).sum(-1, keepdim=True) * not_sphere).mean()
    loss = position_loss + kind_loss + size_loss + rotation_loss
    return {"loss": loss, "position_cm": error_cm.mean().detach(), "kind_accuracy": (seen.kind_logits.argmax(-1) == kind).float().mean(),
            "size_cm": size_loss.detach()}

"""Configuration dataclasses for Psi-W0: the Wan backbone and the world model around it.

`WorldModel` is a diffusers `ConfigMixin`, so its ``config.json`` holds flat keyword arguments.
These dataclasses are the typed, documented view of the same numbers: build a model with
``WorldModel.from_model_config(WorldModelConfig(...))`` and read one back with
``model.model_config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# The psi_gym robot: a 6-DoF wrist + 16 finger joints, position controlled.
STATE_DIM = 22
ACTION_DIM = 22
OBJECT_POSITION_DIM = 3
INSTRUCTION_DIM = 384  # all-MiniLM-L6-v2 sentence embedding

INFERENCE_DTYPES = ("float32", "bfloat16", "float16")
"""dtypes a trained world model can run in (``torch.<name>``): ``env world_model_dtype=``,
``psi-gym bench --dtype``, ``psi-gym eval-w0 --dtype``."""


@dataclass
class WanBackboneConfig:
    """Keyword arguments of `diffusers.WanTransformer3DModel` that a world model chooses.

    ``in_channels`` and ``out_channels`` are not here: `WorldModel` derives them from the number of
    context frames (``3 * (K + 1)`` in, ``3`` out in pixel space).
    """

    patch_size: tuple[int, int, int] = (1, 8, 8)
    """(t, h, w) patch: 64x64 pixels with (1, 8, 8) give 64 tokens."""
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    """width of the trunk = num_attention_heads * attention_head_dim."""
    text_dim: int = 128
    """width of the conditioning tokens fed as ``encoder_hidden_states``."""
    freq_dim: int = 64
    """sinusoidal timestep features."""
    ffn_dim: int = 256
    """2x the width: as good as 4x on MuJoCo rollouts at 800 steps, 28% faster at batch 64 on CPU."""
    num_layers: int = 4
    cross_attn_norm: bool = True
    qk_norm: str | None = "rms_norm_across_heads"
    eps: float = 1e-6
    rope_max_seq_len: int = 64
    """longest axis (in patches) that rotary embeddings cover."""

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["patch_size"] = list(self.patch_size)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WanBackboneConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in names}
        if "patch_size" in kwargs:
            kwargs["patch_size"] = tuple(kwargs["patch_size"])
        return cls(**kwargs)


# The transformer of Wan2.2-TI2V-5B (diffusers `Wan-AI/Wan2.2-TI2V-5B-Diffusers/transformer`). Its
# native in/out channels are 48 (Wan2.2 VAE latents); in pixel space `WorldModel` swaps the patch
# embedding and output projection for ones of its own channel count.
WAN22_TI2V_5B_BACKBONE = WanBackboneConfig(
    patch_size=(1, 2, 2),
    num_attention_heads=24,
    attention_head_dim=128,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=14336,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)

# Smallest backbone that still exercises every code path; for tests.
DEBUG_BACKBONE = WanBackboneConfig(
    patch_size=(1, 8, 8),
    num_attention_heads=2,
    attention_head_dim=12,
    text_dim=16,
    freq_dim=16,
    ffn_dim=32,
    num_layers=1,
    rope_max_seq_len=16,
)


def backbone_in_channels(num_context_frames: int, coordinate_channels: bool) -> int:
    """Input channels of the backbone: noisy frame + K context frames (+ x, y coordinates)."""
    return 3 * (num_context_frames + 1) + (2 if coordinate_channels else 0)


@dataclass
class WorldModelConfig:
    """Everything `WorldModel` needs: sizes, normalisation and the sampler's defaults.

    Normalisation ranges (``*_low``/``*_high``, physical units) map each dimension to [-1, 1];
    `psi_gym.world_model.training` computes them from the training episodes. ``None`` means
    [-1, 1] already (no scaling).
    """

    image_size: int = 64
    """frames are ``image_size x image_size`` RGB."""
    num_context_frames: int = 2
    """K: frames t-K+1..t condition the prediction of frame t+1."""
    state_dim: int = STATE_DIM
    action_dim: int = ACTION_DIM
    object_position_dim: int = OBJECT_POSITION_DIM
    instruction_dim: int = INSTRUCTION_DIM
    num_action_tokens: int = 2
    """conditioning tokens made from (action, state); one more token carries the instruction."""
    readout_dim: int = 8
    """per-token width of the trunk read-out that the state/object heads see (kept spatial)."""
    head_hidden_dim: int = 256
    predict_residual: bool = True
    """x0 = last context frame + network output (the static scene is free)."""
    coordinate_channels: bool = True
    """feed (x, y) pixel coordinates as two more input channels (absolute position for the tokens)."""
    num_inference_steps: int = 1
    """flow-matching steps of `predict`. Measured on MuJoCo rollouts: 1 step gave the best one-step
    PSNR and equal 16-step rollouts at half the cost of 2; use 2-4 for committed (sharper) samples."""
    sigma_shift: float = 1.0
    """flow-matching timestep shift of the sampling schedule (1 = none)."""
    stochastic_sampling: bool = False
    """re-noise with fresh noise between steps instead of the deterministic Euler update."""
    action_low: list[float] | None = None
    action_high: list[float] | None = None
    state_low: list[float] | None = None
    state_high: list[float] | None = None
    object_low: list[float] | None = None
    object_high: list[float] | None = None
    backbone: WanBackboneConfig = field(default_factory=WanBackboneConfig)

    def to_kwargs(self) -> dict[str, Any]:
        """Flat keyword arguments of `WorldModel.__init__` (what ``config.json`` holds)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["backbone"] = self.backbone.to_dict()
        return out

    @classmethod
    def from_kwargs(cls, values: dict[str, Any]) -> WorldModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in names}
        kwargs["backbone"] = WanBackboneConfig.from_dict(dict(kwargs.get("backbone") or {}))
        for key, value in kwargs.items():
            if key.endswith(("_low", "_high")) and value is not None:
                kwargs[key] = [float(v) for v in value]
        return cls(**kwargs)


def tiny_config(**changes: Any) -> WorldModelConfig:
    """The default shipped size: fast at batch 64 on two CPU cores, yet learns the sim scenes."""
    return dataclasses.replace(WorldModelConfig(), **changes)


def debug_config(**changes: Any) -> WorldModelConfig:
    """A few-thousand-parameter model for unit tests."""
    base = WorldModelConfig(backbone=DEBUG_BACKBONE, head_hidden_dim=16, readout_dim=2, num_action_tokens=1)
    return dataclasses.replace(base, **changes)


TIME_SAMPLINGS = ("uniform", "logit_normal", "inference_mix")


@dataclass
class TrainConfig:
    """Hyper-parameters of `train_world_model` (sizes of the model live in ``model``)."""

    model: WorldModelConfig = field(default_factory=tiny_config)
    """architecture; normalisation ranges are filled in from the data."""
    init_from: str | None = None
    """start from this world-model or Wan diffusers folder instead of a fresh model."""
    num_steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    time_sampling: str = "inference_mix"
    """``uniform``, ``logit_normal`` or ``inference_mix`` (half the draws at the sampler's levels)."""
    logit_mean: float = 0.0
    logit_std: float = 1.0
    change_weight: float = 4.0
    """lambda: extra weight of pixels that change between the last context frame and the target."""
    change_threshold: float = 0.04
    """in [-1, 1] units (0.04 ~ 5/255)."""
    change_dilation: int = 2
    """pixels the change mask grows by."""
    state_loss_weight: float = 1.0
    object_loss_weight: float = 1.0
    context_noise: float = 0.0
    """max std of Gaussian noise added to context frames (per-sample uniform level)."""
    self_rollout_prob: float = 0.25
    """probability that a batch's newest context frame is the model's own prediction."""
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    seed: int = 0
    mixed_precision: str = "no"
    """``no``, ``bf16`` or ``fp16`` (accelerate)."""
    max_time_s: float | None = None
    """stop early (and save) after this much wall time."""
    robot_only: bool = True
    """drop human episodes (the world model predicts the robot domain)."""
    num_threads: int | None = None
    """``torch.set_num_threads`` for this process (CPU training; 1 is often fastest on a busy machine)."""
    eval_every: int = 0
    """steps between calls of ``train_world_model``'s ``callback`` (0: never)."""
    progress: bool = True

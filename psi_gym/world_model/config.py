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

    ``in_channels`` and ``out_channels`` are not here: `WorldModel` derives them
    (`renderer_in_channels` in, ``3`` out in pixel space).
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


def renderer_in_channels() -> int:
    """Input channels of the renderer's backbone: the noisy frame, the episode's first frame, the
    state's sketch (3 channels) and (x, y) pixel coordinates."""
    return 3 + 3 + 3 + 2


@dataclass
class WorldModelConfig:
    """Everything `WorldModel` needs: sizes of its three parts and the sampler's defaults."""

    image_size: int = 64
    """frames are ``image_size x image_size`` RGB."""
    state_dim: int = STATE_DIM
    action_dim: int = ACTION_DIM
    instruction_dim: int = INSTRUCTION_DIM
    num_condition_tokens: int = 4
    """cross-attention tokens made from the state the renderer draws; one more carries the instruction."""
    condition_hidden_dim: int = 256
    """width of the MLP that makes those tokens."""
    dynamics_hidden_dim: int = 512
    """width of the dynamics MLP."""
    dynamics_num_layers: int = 3
    dynamics_members: int = 1
    """1: one dynamics MLP; K > 1: an ensemble of K that steps by their mean (`DynamicsEnsemble`)."""
    dynamics_contact_width: int = 0
    """width of the dynamics' per-hand-point contact encoder (`psi_gym.world_model.dynamics.ContactEncoder`,
    one MLP shared by the points, in the object's frame); 0: none, the MLP alone."""
    dynamics_joint_prior: bool = False
    """the hand's joints follow a linear servo response (`psi_gym.world_model.dynamics.JointResponse`:
    three coefficients per joint, fitted to the training data by least squares when a dynamics is
    made fresh) and the MLP predicts only what it misses (contact, limits); False: the MLP
    predicts the joints' whole step."""
    hand_servo: bool = False
    """W0 draws and reports the hand where a linear servo response puts it (`JointResponse`, fitted to
    robot rollouts by least squares: ``psi-gym fit-hand-servo``), rolled from the episode's start
    over the commanded targets; the dynamics' own joints still drive its physics, as its memory of
    the contact. False: the hand is drawn where the dynamics' joints are."""
    perception_channels: list[int] = field(default_factory=lambda: [32, 64, 64, 128])
    """conv widths of the perception CNN (each halves the resolution)."""
    perception_hidden_dim: int = 256
    num_inference_steps: int = 1
    """flow-matching steps of the renderer in `predict`."""
    sigma_shift: float = 1.0
    """flow-matching timestep shift of the sampling schedule (1 = none)."""
    stochastic_sampling: bool = False
    """re-noise with fresh noise between steps instead of the deterministic Euler update."""
    backbone: WanBackboneConfig = field(default_factory=WanBackboneConfig)

    def to_kwargs(self) -> dict[str, Any]:
        """Flat keyword arguments of `WorldModel.__init__` (what ``config.json`` holds)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["backbone"] = self.backbone.to_dict()
        out["perception_channels"] = list(self.perception_channels)
        return out

    @classmethod
    def from_kwargs(cls, values: dict[str, Any]) -> WorldModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in names}
        kwargs["backbone"] = WanBackboneConfig.from_dict(dict(kwargs.get("backbone") or {}))
        if kwargs.get("perception_channels") is not None:
            kwargs["perception_channels"] = [int(v) for v in kwargs["perception_channels"]]
        return cls(**kwargs)


def tiny_config(**changes: Any) -> WorldModelConfig:
    """The default shipped size: fast at batch 64 on two CPU cores, yet learns the sim scenes."""
    return dataclasses.replace(WorldModelConfig(), **changes)


def debug_config(**changes: Any) -> WorldModelConfig:
    """A small model for unit tests."""
    base = WorldModelConfig(backbone=DEBUG_BACKBONE, num_condition_tokens=1, condition_hidden_dim=16,
                            dynamics_hidden_dim=32, dynamics_num_layers=1, perception_channels=[8, 8, 8, 8],
                            perception_hidden_dim=16)
    return dataclasses.replace(base, **changes)


TIME_SAMPLINGS = ("uniform", "logit_normal", "inference_mix")
PARTS = ("dynamics", "renderer", "perception")


@dataclass
class TrainConfig:
    """Hyper-parameters of `train_world_model` (sizes of the model live in ``model``).

    Each step trains the three parts on their own batches: the dynamics on unrolls of its own
    predictions (``dynamics_batch_size`` windows of ``unroll_length(step)`` steps), the renderer
    on ``batch_size`` frames drawn from their true states, the perception on
    ``perception_batch_size`` first frames."""

    model: WorldModelConfig = field(default_factory=tiny_config)
    """architecture."""
    init_from: str | None = None
    """start from this world-model or Wan diffusers folder instead of a fresh model."""
    fresh_dynamics: bool = False
    """with ``init_from``: replace that world model's dynamics with a freshly initialised one, sized
    by ``model.dynamics_hidden_dim`` / ``dynamics_num_layers`` / ``dynamics_members`` /
    ``dynamics_contact_width`` / ``dynamics_joint_prior`` (its
    perception and renderer are kept): retrain W0's physics from scratch."""
    parts: tuple[str, ...] = PARTS
    """the parts trained (any of `PARTS`); the others are frozen and their losses not computed,
    e.g. ``("dynamics",)`` to go on training a world model's dynamics alone."""
    num_steps: int = 3000
    batch_size: int = 32
    """renderer frames per step."""
    dynamics_batch_size: int = 64
    """dynamics windows per step."""
    perception_batch_size: int = 32
    unroll_schedule: tuple[tuple[float, int], ...] = ((0.0, 8), (0.25, 16), (0.5, 0))
    """``(fraction of num_steps, unroll length)`` from that point on; 0 = the whole episode. The
    dynamics first learns single moves, then whole episodes of its own predictions."""
    success_fraction: float | None = None
    """share of the dynamics' unrolls drawn from successful episodes (None: episodes uniformly).
    Successes are rare in rollouts around a retarget (19% in the shipped W0's data, 6% of apple
    lifts); this shows the dynamics more of the grasps and lifts that decide a ranking."""
    perception_noise: float = 0.002
    """m: std of the noise on an unroll's start object position (what perception gets wrong)."""
    symmetry_shift: float = 0.0
    """m: each dynamics unroll moved with the table by a horizontal shift uniform in
    ``[-symmetry_shift, symmetry_shift]^2`` (`psi_gym.world_model.symmetry`; 0: not shifted)."""
    symmetry_turn: float = 0.0
    """rad: ... and a turn about the vertical uniform in ``[-symmetry_turn, symmetry_turn]`` (0: not turned)."""
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    time_sampling: str = "inference_mix"
    """``uniform``, ``logit_normal`` or ``inference_mix`` (half the draws at the sampler's levels)."""
    logit_mean: float = 0.0
    logit_std: float = 1.0
    change_weight: float = 4.0
    """lambda: extra weight of pixels that differ from the episode's first frame (hand, object)."""
    change_threshold: float = 0.04
    """in [-1, 1] units (0.04 ~ 5/255)."""
    change_dilation: int = 2
    """pixels the change mask grows by."""
    dynamics_loss_weight: float = 1.0
    perception_loss_weight: float = 1.0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    seed: int = 0
    mixed_precision: str = "no"
    """``no``, ``bf16`` or ``fp16`` (accelerate); the dynamics and perception stay float32."""
    max_time_s: float | None = None
    """stop early (and save) after this much wall time."""
    robot_only: bool = True
    """drop human episodes (the world model predicts the robot domain)."""
    num_threads: int | None = None
    """``torch.set_num_threads`` for this process (CPU training; 1 is often fastest on a busy machine)."""
    compile: bool = False
    """``torch.compile`` the dynamics' step in its unrolls (one graph per member, compiled on the
    first step): the unrolled loss is launch- and overhead-bound, and this fuses it (2.8x steps/s
    measured for the 512x3 dynamics on two CPU cores). Needs a C++ compiler on the CPU, Triton on
    a GPU."""
    eval_every: int = 0
    """steps between calls of ``train_world_model``'s ``callback`` (0: never)."""
    progress: bool = True

    def unroll_length(self, step: int) -> int:
        """The dynamics' unroll length at ``step`` (0: the whole episode)."""
        length = self.unroll_schedule[0][1]
        for fraction, value in self.unroll_schedule:
            if step >= fraction * self.num_steps:
                length = value
        return length

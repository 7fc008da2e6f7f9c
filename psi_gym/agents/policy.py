"""Psi-R2, the policy: a small world-action model that reads the env's observation and outputs an
action chunk (residuals on the retargeted reference) and, as auxiliary targets, the next frame and
the fingertip touch of the human hand.

Two trunks behind one interface (``PsiR2Config.architecture``):

* ``"wan"``: a diffusers `WanTransformer3DModel` (the Wan class Psi-W0 uses, its own tiny config).
  The frame history is the patch input (one token per 8x8 patch), the instruction embedding and
  the low-dimensional observation (joint state, reference, progress) are cross-attention tokens;
  the transformer's output is the next frame (a residual on the current one), and a pooled read-out
  of its last block feeds the action and touch heads — the report's world-action model;
* ``"cnn"``: the smaller head: a 3-layer CNN on the frames, an MLP on everything, a small
  transposed-CNN decoder for the next frame.

Notation (per step ``t``; ``k`` frames, ``h`` reference rows, ``c`` chunk rows, ``A`` action dims):

* input: ``pixels`` (B, H, W, 3k) uint8 (or (B, 3k, H, W) with ``channels_first``), ``agent_pos``
  (B, 22), ``reference`` (B, 22h) = ``ref[t+1 .. t+h]``, ``instruction`` (B, 384), ``progress``
  (B, 1) = t / H;
* ``action_space="synergy"`` (default): ``A = 10`` = wrist x, y, z, yaw, pitch, roll and one closure
  per finger, expanded to the env's 22 joints by the map of `psi_gym.sim.residuals` (`synergy_matrix`);
  ``"joint"``: ``A = 22``, the env's action as is;
* output: ``action_loc`` (B, c, A), pre-tanh means of ``a_t .. a_{t+c-1}`` (the action is
  ``tanh(loc)`` in [-1, 1]); ``log_std`` (A,), state-independent (the RL exploration noise);
  ``next_frame`` (B, 3, H, W) in [-1, 1]; ``touch_logits`` (B, 5), the human fingertips' contact
  at ``t+1`` (thumb .. pinky).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from psi_gym.data.assets import ConfigWithoutOrigin
from psi_gym.sim.hands import hand_spec, residual_scale
from psi_gym.sim.residuals import NUM_PARAMETERS, residual_actions

ARCHITECTURES = ("wan", "cnn")
ACTION_SPACES = ("synergy", "joint")
NUM_JOINTS = 22
NUM_FINGERTIPS = 5  # the human hand's touch sensors: thumb, index, middle, ring, pinky
INSTRUCTION_DIM = 384  # MiniLM, as `psi_gym.world_model.config.INSTRUCTION_DIM`
OBSERVATION_KEYS = ("pixels", "agent_pos", "reference", "instruction", "progress")


def synergy_matrix() -> np.ndarray:
    """(10, 22): row ``i`` is the joint residual of a unit synergy ``i`` (`psi_gym.sim.residuals`'
    map from wrist + per-finger closure to the 22 joints: one definition for search and policy)."""
    unit = np.repeat(np.eye(NUM_PARAMETERS)[:, None, :], 2, axis=1)  # constant curves, one per synergy
    return residual_actions(unit, num_steps=1, demo_steps=1)[:, 0, :].astype(np.float32)


def joints_to_synergy(actions: np.ndarray) -> np.ndarray:
    """(..., 22) joint residuals -> (..., 10) synergies by least squares (finger closure = the mean
    of its three flexion joints), for behaviour-cloning labels."""
    return (np.asarray(actions, np.float32) @ np.linalg.pinv(synergy_matrix())).astype(np.float32)


@dataclass
class WanPolicyBackbone:
    """Keyword arguments of `WanTransformer3DModel` for the ``"wan"`` trunk (0.17M parameters)."""

    patch_size: tuple[int, int, int] = (1, 8, 8)
    num_attention_heads: int = 2
    attention_head_dim: int = 32
    text_dim: int = 64
    freq_dim: int = 32
    ffn_dim: int = 128
    num_layers: int = 2
    cross_attn_norm: bool = True
    qk_norm: str | None = "rms_norm_across_heads"
    eps: float = 1e-6
    rope_max_seq_len: int = 16

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["patch_size"] = list(self.patch_size)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WanPolicyBackbone:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown Wan policy backbone key(s) {unknown}; expected some of {sorted(names)}")
        kwargs = dict(values)
        if "patch_size" in kwargs:
            kwargs["patch_size"] = tuple(kwargs["patch_size"])
        return cls(**kwargs)


@dataclass
class PsiR2Config:
    """Everything `PsiR2Policy` is built from (stored flat in its ``config.json``)."""

    architecture: str = "wan"
    """``"wan"`` (WanTransformer3DModel trunk) or ``"cnn"`` (the smaller head), see the module doc."""
    action_space: str = "synergy"
    """``"synergy"`` (10: wrist 6 + finger closure 4, expanded to 22) or ``"joint"`` (22)."""
    image_size: int = 64
    frame_stack: int = 1
    """frames the observation's ``pixels`` hold (the env's ``frame_stack``)."""
    channels_first: bool = False
    """``pixels`` as (3k, H, W) (the env's ``channels_first``)."""
    reference_horizon: int = 4
    """reference rows the observation holds (the env's ``reference_horizon``)."""
    use_progress: bool = True
    """read the observation's ``progress`` (t / H); off for envs that have none."""
    chunk_size: int = 4
    """c: actions predicted per step (the first is executed; all are behaviour-cloning targets)."""
    hidden_dim: int = 128
    """width of the MLPs (low-dimensional encoder, heads)."""
    cnn_channels: tuple[int, ...] = (16, 32, 32)
    """``"cnn"`` trunk: channels of its stride-2 convolutions."""
    backbone: WanPolicyBackbone = field(default_factory=WanPolicyBackbone)
    """``"wan"`` trunk: the transformer's size."""
    init_log_std: float = -1.0
    """initial log standard deviation of the (pre-tanh) action noise: exploration of RL."""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.action_space not in ACTION_SPACES:
            raise ValueError(f"action_space must be one of {ACTION_SPACES}, got {self.action_space!r}")
        for name in ("frame_stack", "reference_horizon", "chunk_size", "hidden_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {self.image_size}")

    @property
    def action_dim(self) -> int:
        return NUM_PARAMETERS if self.action_space == "synergy" else NUM_JOINTS

    def to_kwargs(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["backbone"] = self.backbone.to_dict()
        out["cnn_channels"] = list(self.cnn_channels)
        return out

    @classmethod
    def from_kwargs(cls, values: dict[str, Any]) -> PsiR2Config:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in names}
        kwargs["backbone"] = WanPolicyBackbone.from_dict(dict(kwargs.get("backbone") or {}))
        if "cnn_channels" in kwargs:
            kwargs["cnn_channels"] = tuple(kwargs["cnn_channels"])
        return cls(**kwargs)


def debug_policy_config(**changes: Any) -> PsiR2Config:
    """A few-thousand-parameter R2 for unit tests."""
    base = PsiR2Config(hidden_dim=16, cnn_channels=(4, 8, 8), chunk_size=2,
                       backbone=WanPolicyBackbone(num_attention_heads=1, attention_head_dim=8, text_dim=8,
                                                  freq_dim=8, ffn_dim=16, num_layers=1))
    return dataclasses.replace(base, **changes)


@dataclass
class PsiR2Output(BaseOutput):
    """What `PsiR2Policy.forward` returns (see the module doc for the shapes)."""

    action_loc: torch.Tensor
    log_std: torch.Tensor
    next_frame: torch.Tensor
    touch_logits: torch.Tensor


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU(),
                         nn.Linear(hidden_dim, out_dim))


class PsiR2Policy(ConfigWithoutOrigin, ModelMixin, ConfigMixin):
    """Psi-R2 (see the module doc). ``PsiR2Policy.from_policy_config(PsiR2Config(...))`` builds one,
    ``save_pretrained(folder)`` / ``from_pretrained(folder)`` round-trip it (safetensors + JSON)."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        architecture: str = "wan",
        action_space: str = "synergy",
        image_size: int = 64,
        frame_stack: int = 1,
        channels_first: bool = False,
        reference_horizon: int = 4,
        use_progress: bool = True,
        chunk_size: int = 4,
        hidden_dim: int = 128,
        cnn_channels: list[int] | None = None,
        backbone: dict[str, Any] | None = None,
        init_log_std: float = -1.0,
    ) -> None:
        super().__init__()
        config = PsiR2Config.from_kwargs({
            "architecture": architecture, "action_space": action_space, "image_size": image_size,
            "frame_stack": frame_stack, "channels_first": channels_first, "reference_horizon": reference_horizon,
            "use_progress": use_progress, "chunk_size": chunk_size, "hidden_dim": hidden_dim,
            "cnn_channels": cnn_channels if cnn_channels is not None else PsiR2Config.cnn_channels,
            "backbone": backbone, "init_log_std": init_log_std,
        })
        self.policy_config = config
        A, c, hidden = config.action_dim, config.chunk_size, config.hidden_dim
        in_frames = 3 * config.frame_stack
        spec = hand_spec("robot")
        ranges = torch.as_tensor(spec.joint_ranges(), dtype=torch.float32)
        self.register_buffer("joint_low", ranges[:, 0].clone(), persistent=False)
        self.register_buffer("joint_high", ranges[:, 1].clone(), persistent=False)
        self.register_buffer("residual_scale", torch.as_tensor(residual_scale(spec), dtype=torch.float32), persistent=False)
        self.register_buffer("synergy", torch.as_tensor(synergy_matrix()), persistent=False)

        # Low-dimensional features: joint state and reference (normalised to [-1, 1]), how far the
        # next reference row is from the joints (in residual units: what the action corrects), progress.
        low_dim = NUM_JOINTS * (1 + config.reference_horizon + 1) + (1 if config.use_progress else 0)
        self.low_dim_encoder = _mlp(low_dim, hidden, hidden)
        self.instruction_proj = nn.Linear(INSTRUCTION_DIM, hidden)
        size = config.image_size

        if config.architecture == "wan":
            from diffusers import WanTransformer3DModel

            from psi_gym.world_model.attention import use_fast_rotary_attention

            wan = config.backbone
            self.transformer = WanTransformer3DModel(**wan.to_dict(), in_channels=in_frames + 2, out_channels=3)
            use_fast_rotary_attention(self.transformer)
            nn.init.zeros_(self.transformer.proj_out.weight)  # next frame = this frame + 0 at init
            nn.init.zeros_(self.transformer.proj_out.bias)
            self.condition_proj = nn.Linear(hidden, 2 * wan.text_dim)  # two tokens: observation, instruction
            self.instruction_token = nn.Linear(INSTRUCTION_DIM, wan.text_dim)
            ramp = torch.linspace(-1.0, 1.0, size)
            self.register_buffer("coordinates", torch.stack(torch.meshgrid(ramp, ramp, indexing="xy")), persistent=False)
            self.readout = nn.Linear(wan.inner_dim, hidden)
            self._trunk: list[torch.Tensor] = []
            self.transformer.blocks[-1].register_forward_hook(self._capture_trunk)
        else:
            channels = [in_frames, *config.cnn_channels]
            layers: list[nn.Module] = []
            for cin, cout in zip(channels[:-1], channels[1:]):
                layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.SiLU()]
            self.encoder = nn.Sequential(*layers)
            down = size // 2 ** len(config.cnn_channels)
            self.image_proj = nn.Linear(channels[-1] * down * down, hidden)
            decoder: list[nn.Module] = []
            reverse = channels[::-1]
            for i, (cin, cout) in enumerate(zip(reverse[:-1], reverse[1:])):
                last = i == len(reverse) - 2
                decoder += [nn.ConvTranspose2d(cin + (0 if i else hidden), 3 if last else cout, 4, stride=2, padding=1)]
                if not last:
                    decoder.append(nn.SiLU())
            self.decoder = nn.Sequential(*decoder)
            nn.init.zeros_(self.decoder[-1].weight)
            nn.init.zeros_(self.decoder[-1].bias)

        self.trunk_mlp = _mlp(3 * hidden, hidden, hidden)
        self.action_head = nn.Linear(hidden, c * A)
        nn.init.zeros_(self.action_head.weight)  # a = 0 at init: the raw retarget
        nn.init.zeros_(self.action_head.bias)
        self.touch_head = nn.Linear(hidden, NUM_FINGERTIPS)
        self.log_std = nn.Parameter(torch.full((A,), float(config.init_log_std)))

    @classmethod
    def from_policy_config(cls, config: PsiR2Config) -> PsiR2Policy:
        return cls(**config.to_kwargs())

    def _capture_trunk(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        # a bound method, not a lambda: a deep copy of the policy (TorchRL's losses make them) hooks its own copy
        self._trunk.append(output)

    # ---------------------------------------------------------------------------- inputs
    def frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3k) or (B, 3k, H, W) uint8 -> (B, 3k, H, W) float in [-1, 1]."""
        if pixels.ndim != 4:
            raise ValueError(f"pixels must be (B, H, W, 3k) or (B, 3k, H, W), got shape {tuple(pixels.shape)}")
        if not self.policy_config.channels_first:
            pixels = pixels.permute(0, 3, 1, 2)
        return pixels.float() / 127.5 - 1.0

    def low_dim_features(self, agent_pos: torch.Tensor, reference: torch.Tensor,
                         progress: torch.Tensor | None) -> torch.Tensor:
        low, high = self.joint_low, self.joint_high
        reference = reference.unflatten(-1, (self.policy_config.reference_horizon, NUM_JOINTS))
        features = [
            ((agent_pos - low) / (high - low) * 2 - 1),
            ((reference - low) / (high - low) * 2 - 1).flatten(1),
            ((reference[:, 0] - agent_pos) / self.residual_scale).clamp(-5, 5) / 5,
        ]
        if self.policy_config.use_progress:
            if progress is None:
                raise ValueError("this policy reads the observation's 'progress' (use_progress=True); none was given")
            features.append(progress.reshape(-1, 1).float())
        return torch.cat(features, dim=-1)

    # --------------------------------------------------------------------------- forward
    def encode(self, pixels: torch.Tensor, agent_pos: torch.Tensor, reference: torch.Tensor,
               instruction: torch.Tensor, progress: torch.Tensor | None = None,
               predict_frame: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Trunk features (B, hidden) and the predicted next frame (B, 3, H, W), one batch dim (the
        ``"cnn"`` trunk skips its decoder with ``predict_frame=False``: None)."""
        config = self.policy_config
        frames = self.frames(pixels)
        low = self.low_dim_encoder(self.low_dim_features(agent_pos.float(), reference.float(), progress))
        text = self.instruction_proj(instruction.float())
        last = frames[:, -3:]
        if config.architecture == "wan":
            B = frames.shape[0]
            hidden = torch.cat([frames, self.coordinates.expand(B, -1, -1, -1)], dim=1).unsqueeze(2)
            tokens = torch.cat([self.condition_proj(low).unflatten(-1, (2, -1)),
                                self.instruction_token(instruction.float()).unsqueeze(1)], dim=1)
            self._trunk.clear()
            output = self.transformer(hidden, torch.zeros(B, device=frames.device), tokens, return_dict=False)[0]
            next_frame = last + output.squeeze(2)
            image = self.readout(self._trunk.pop().mean(dim=1))
        else:
            feature_map = self.encoder(frames)
            image = self.image_proj(feature_map.flatten(1))
            next_frame = None
            if predict_frame:
                bottleneck = torch.cat([feature_map, image[:, :, None, None].expand(-1, -1, *feature_map.shape[-2:])], dim=1)
                next_frame = last + self.decoder(bottleneck)
        return self.trunk_mlp(torch.cat([image, low, text], dim=-1)), next_frame

    def forward(self, pixels: torch.Tensor, agent_pos: torch.Tensor, reference: torch.Tensor,
                instruction: torch.Tensor, progress: torch.Tensor | None = None, return_dict: bool = True):
        """See the module doc. Leading batch dims (TorchRL's (N, T, ...)) are kept."""
        config = self.policy_config
        batch_shape = agent_pos.shape[:-1]
        inputs = [pixels, agent_pos, reference, instruction, progress]
        if len(batch_shape) != 1:
            inputs = [None if x is None else x.reshape(-1, *x.shape[len(batch_shape):]) for x in inputs]
        trunk, next_frame = self.encode(*inputs)
        action_loc = self.action_head(trunk).unflatten(-1, (config.chunk_size, config.action_dim))
        out = [action_loc, next_frame, self.touch_head(trunk)]
        if len(batch_shape) != 1:
            out = [x.reshape(*batch_shape, *x.shape[1:]) for x in out]
        out.insert(1, self.log_std)
        return PsiR2Output(*out) if return_dict else tuple(out)

    # --------------------------------------------------------------------------- actions
    def to_joint_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """(..., A) policy actions -> (..., 22) env actions (the synergy map, or as is)."""
        if self.policy_config.action_space == "joint":
            return actions
        return actions @ self.synergy

    @torch.no_grad()
    def act(self, observation: dict[str, Any], deterministic: bool = True,
            generator: torch.Generator | None = None) -> np.ndarray:
        """Env actions (B, 22) in [-1, 1] for a batch of numpy/torch observations (deployment:
        ``deterministic`` = the tanh of the mean; else a sample of the policy's noise)."""
        inputs = {key: torch.as_tensor(np.asarray(observation[key])) if not isinstance(observation[key], torch.Tensor)
                  else observation[key] for key in self.input_keys}
        device = self.log_std.device
        inputs = {key: value.to(device) for key, value in inputs.items()}
        out = self(**inputs)
        loc = out.action_loc[:, 0]
        if not deterministic:
            noise = torch.randn(loc.shape, generator=generator, device=device)
            loc = loc + noise * out.log_std.exp()
        return self.to_joint_actions(torch.tanh(loc)).cpu().numpy().astype(np.float32)

    @property
    def input_keys(self) -> tuple[str, ...]:
        """The observation keys `forward` reads, in its argument order."""
        keys = OBSERVATION_KEYS if self.policy_config.use_progress else OBSERVATION_KEYS[:-1]
        return tuple(keys)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = ["PsiR2Config", "PsiR2Output", "PsiR2Policy", "WanPolicyBackbone", "debug_policy_config",
           "joints_to_synergy", "synergy_matrix"]

"""Psi-W0: an action-conditioned next-frame world model on a diffusers Wan transformer.

Shapes (``B`` batch, ``K`` context frames, ``H = W`` image size, ``S`` state, ``A`` action dims):

====================== ======================== ===============================================
input                  shape                    meaning
====================== ======================== ===============================================
context_frames         (B, K, H, W, 3) uint8    frames t-K+1..t, oldest first
context_state          (B, S) float32           joint positions at t (physical units)
action                 (B, A) float32           absolute joint targets commanded at t
instruction            list of B str | (B, 384) task instruction or its MiniLM embedding
====================== ======================== ===============================================

`WorldModel.predict` returns frame t+1, joint state t+1 and object position t+1.

How conditioning reaches the Wan backbone (pixel space, no VAE):

* the K context frames are extra *input channels* of the one predicted frame, so the backbone
  sees ``in_channels = 3 * (K + 1)`` and a large patch (1, 8, 8) keeps 64 tokens at 64 px;
* action, state and instruction become a few conditioning tokens (learned projections to the
  backbone's ``text_dim`` plus learned token-type embeddings) that enter through
  ``encoder_hidden_states``, i.e. Wan's cross-attention;
* the flow-matching noise level enters through Wan's timestep embedding (``t = 1000 * sigma``).

The network predicts the clean frame ``x0`` (see `psi_gym.world_model.sampler` for the notation),
by default as a residual on the last context frame. A read-out of the hidden states after the last
transformer block (kept spatial: a narrow per-token projection, flattened) feeds two small heads:
the next joint state (a residual on the current one) and the next object position. The object
head is auxiliary: it forces the trunk to represent the object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin, WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from .attention import use_fast_rotary_attention
from .checkpoint import load_pretrained
from .config import (
    ACTION_DIM,
    INSTRUCTION_DIM,
    OBJECT_POSITION_DIM,
    STATE_DIM,
    WanBackboneConfig,
    WorldModelConfig,
    backbone_in_channels,
)
from .sampler import NUM_TRAIN_TIMESTEPS, FlowMatchSampler

DEFAULT_CHECKPOINT = "default"


@dataclass
class WorldModelOutput(BaseOutput):
    """What `WorldModel.predict` returns for one step of ``B`` environments.

    Args:
        frames: (B, H, W, 3) uint8, the predicted frame t+1 (numpy or torch, see ``output_type``).
        state: (B, S) float32, predicted joint positions at t+1, physical units.
        object_position: (B, 3) float32, predicted object position at t+1, metres.
    """

    frames: np.ndarray | torch.Tensor
    state: np.ndarray | torch.Tensor
    object_position: np.ndarray | torch.Tensor


@dataclass
class WorldModelForwardOutput(BaseOutput):
    """One network evaluation, in normalised units (what training losses compare).

    Args:
        sample: (B, 3, H, W) the predicted clean frame ``x0`` in [-1, 1] units.
        state: (B, S) predicted next state, normalised to [-1, 1] by the state range.
        object_position: (B, 3) predicted next object position, normalised by the object range.
    """

    sample: torch.Tensor
    state: torch.Tensor
    object_position: torch.Tensor


def _range_values(values: Sequence[float] | None, dim: int, default: float, name: str) -> np.ndarray:
    # checked in numpy so that a model can also be built on the meta device
    if values is None:
        return np.full((dim,), default, np.float32)
    array = np.asarray(list(values), dtype=np.float32)
    if array.shape != (dim,):
        raise ValueError(f"{name} must have {dim} values, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    return array


class _MLP(nn.Sequential):
    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, zero_init_out: bool = False) -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim), nn.SiLU())
        self.append(nn.Linear(hidden_dim, out_dim))
        if zero_init_out:
            nn.init.zeros_(self[-1].weight)
            nn.init.zeros_(self[-1].bias)


class WorldModel(ModelMixin, ConfigMixin):
    """Action-conditioned next-frame predictor (Psi-W0) around a `WanTransformer3DModel`.

    Build one with ``WorldModel.from_model_config(WorldModelConfig(...))`` (the keyword arguments
    below are the flat form stored in ``config.json``; see `WorldModelConfig` for each field), load
    one with ``WorldModel.from_pretrained(path_or_"default")``, step it with `predict`.

    ``from_pretrained`` also accepts a Wan2.x diffusers folder (one holding
    ``transformer/config.json``): its transformer becomes the backbone, with the patch embedding
    and output projection replaced when the channel count differs from pixel space, and fresh
    conditioning/heads to be fine-tuned.
    """

    config_name = "config.json"
    ignore_for_config = ["pretrained_backbone"]
    _supports_gradient_checkpointing = True
    _no_split_modules = ["WanTransformerBlock"]
    _keep_in_fp32_modules = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        num_context_frames: int = 2,
        state_dim: int = STATE_DIM,
        action_dim: int = ACTION_DIM,
        object_position_dim: int = OBJECT_POSITION_DIM,
        instruction_dim: int = INSTRUCTION_DIM,
        num_action_tokens: int = 2,
        readout_dim: int = 8,
        head_hidden_dim: int = 256,
        predict_residual: bool = True,
        coordinate_channels: bool = True,
        num_inference_steps: int = 1,
        sigma_shift: float = 1.0,
        stochastic_sampling: bool = False,
        action_low: list[float] | None = None,
        action_high: list[float] | None = None,
        state_low: list[float] | None = None,
        state_high: list[float] | None = None,
        object_low: list[float] | None = None,
        object_high: list[float] | None = None,
        backbone: dict[str, Any] | None = None,
        pretrained_backbone: WanTransformer3DModel | None = None,
    ) -> None:
        super().__init__()
        backbone_config = WanBackboneConfig.from_dict(dict(backbone or {}))
        patch_t, patch_h, patch_w = backbone_config.patch_size
        if num_context_frames < 1:
            raise ValueError(f"num_context_frames must be >= 1, got {num_context_frames}")
        if patch_t != 1 or image_size % patch_h or image_size % patch_w:
            raise ValueError(
                f"patch_size {backbone_config.patch_size} must be (1, p, q) with p, q dividing image_size={image_size}"
            )
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        inner_dim = backbone_config.inner_dim
        text_dim = backbone_config.text_dim
        num_tokens = (image_size // patch_h) * (image_size // patch_w)

        # 1. Backbone: pixel channels of the noisy frame, the K context frames and (x, y) pixel
        #    coordinates. Wan's rotary embeddings are relative; the coordinates tell a token where
        #    it is, which is what an absolute joint target has to be mapped to.
        in_channels = backbone_in_channels(num_context_frames, coordinate_channels)
        if pretrained_backbone is not None:
            self.transformer = pretrained_backbone
        else:
            self.transformer = WanTransformer3DModel(
                **backbone_config.to_dict(), in_channels=in_channels, out_channels=3
            )
        use_fast_rotary_attention(self.transformer)  # same numbers as diffusers', ~20% faster on CPU
        if pretrained_backbone is None and predict_residual:
            # x0 = last context frame + output: start from "nothing moves" (DiT's zero-init).
            nn.init.zeros_(self.transformer.proj_out.weight)
            nn.init.zeros_(self.transformer.proj_out.bias)

        # 2. Conditioning tokens for cross-attention: [instruction, action/state x num_action_tokens].
        self.instruction_proj = nn.Linear(instruction_dim, text_dim)
        action_features = action_dim + state_dim + (state_dim if action_dim == state_dim else 0)
        self.action_proj = _MLP(action_features, max(head_hidden_dim, text_dim), num_action_tokens * text_dim)
        self.token_embedding = nn.Parameter(torch.randn(1, 1 + num_action_tokens, text_dim) * 0.02)

        # 3. Heads on the trunk: per-token read-out (keeps where things are), flattened.
        self.readout = nn.Linear(inner_dim, readout_dim)
        head_in = num_tokens * readout_dim + state_dim + action_dim
        self.state_head = _MLP(head_in, head_hidden_dim, state_dim, zero_init_out=True)
        self.object_head = _MLP(head_in, head_hidden_dim, object_position_dim)

        # 4. Normalisation ranges (from config; not weights, so not in the state dict).
        ranges = {
            "action": (action_low, action_high, action_dim),
            "state": (state_low, state_high, state_dim),
            "object": (object_low, object_high, object_position_dim),
        }
        for name, (low, high, dim) in ranges.items():
            low_values = _range_values(low, dim, -1.0, f"{name}_low")
            high_values = _range_values(high, dim, 1.0, f"{name}_high")
            if not (high_values > low_values).all():
                raise ValueError(f"{name}_high must exceed {name}_low in every dimension")
            self.register_buffer(f"{name}_low_buffer", torch.as_tensor(low_values), persistent=False)
            self.register_buffer(f"{name}_high_buffer", torch.as_tensor(high_values), persistent=False)

        ramp = torch.linspace(-1.0, 1.0, image_size)
        coordinates = torch.stack(torch.meshgrid(ramp, ramp, indexing="xy"))  # (2, H, W): x, y
        self.register_buffer("coordinates", coordinates, persistent=False)

        self._trunk: list[torch.Tensor] = []
        self._trunk_hook = self.transformer.blocks[-1].register_forward_hook(self._capture_trunk)
        self._sampler: FlowMatchSampler | None = None
        self._instruction_encoder = None

    # ----------------------------------------------------------------------------------- config
    @classmethod
    def from_model_config(cls, config: WorldModelConfig) -> WorldModel:
        """Build a freshly initialised model from the typed config."""
        return cls(**config.to_kwargs())

    @property
    def model_config(self) -> WorldModelConfig:
        """The typed view of ``self.config``."""
        return WorldModelConfig.from_kwargs(dict(self.config))

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    @property
    def num_context_frames(self) -> int:
        return int(self.config.num_context_frames)

    def set_normalization(self, **ranges: Sequence[float] | None) -> None:
        """Replace normalisation ranges, e.g. ``set_normalization(action_low=..., action_high=...)``.

        Keys: ``action_low/high``, ``state_low/high``, ``object_low/high``; stored in the config so
        that `save_pretrained` keeps them.
        """
        dims = {"action": self.config.action_dim, "state": self.config.state_dim,
                "object": self.config.object_position_dim}
        current = {f"{name}_{side}": getattr(self, f"{name}_{side}_buffer").cpu().numpy()
                   for name in dims for side in ("low", "high")}
        for key, values in ranges.items():
            name, _, side = key.rpartition("_")
            if name not in dims or side not in ("low", "high"):
                raise ValueError(f"unknown normalisation range {key!r}; expected one of action/state/object _low/_high")
            current[key] = _range_values(values, dims[name], -1.0 if side == "low" else 1.0, key)
        for name in dims:
            if not (current[f"{name}_high"] > current[f"{name}_low"]).all():
                raise ValueError(f"{name}_high must exceed {name}_low in every dimension")
        for key in ranges:
            buffer = getattr(self, f"{key}_buffer")
            buffer.copy_(torch.as_tensor(current[key]).to(buffer.device))
        self.register_to_config(**{key: None if v is None else [float(x) for x in v] for key, v in ranges.items()})

    # ------------------------------------------------------------------------- normalisation
    @staticmethod
    def _to_unit(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return (x - low) / (high - low) * 2.0 - 1.0

    @staticmethod
    def _from_unit(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return (x + 1.0) * 0.5 * (high - low) + low

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return self._to_unit(action, self.action_low_buffer, self.action_high_buffer)

    def denormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return self._from_unit(action, self.action_low_buffer, self.action_high_buffer)

    def normalize_state(self, state: torch.Tensor) -> torch.Tensor:
        return self._to_unit(state, self.state_low_buffer, self.state_high_buffer)

    def denormalize_state(self, state: torch.Tensor) -> torch.Tensor:
        return self._from_unit(state, self.state_low_buffer, self.state_high_buffer)

    def normalize_object_position(self, position: torch.Tensor) -> torch.Tensor:
        return self._to_unit(position, self.object_low_buffer, self.object_high_buffer)

    def denormalize_object_position(self, position: torch.Tensor) -> torch.Tensor:
        return self._from_unit(position, self.object_low_buffer, self.object_high_buffer)

    # ---------------------------------------------------------------------------------- network
    def _capture_trunk(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        self._trunk[:] = [output]

    def condition_tokens(
        self, state: torch.Tensor, action: torch.Tensor, instruction_embedding: torch.Tensor
    ) -> torch.Tensor:
        """(B, 1 + num_action_tokens, text_dim) tokens for Wan's cross-attention (normalised inputs)."""
        features = [action, state]
        if self.config.action_dim == self.config.state_dim:
            # how far each joint is told to move, in state units: what position control acts on
            # (the ranges are float32 buffers whatever the weights' dtype; back to the inputs')
            target_in_state_units = self.normalize_state(self.denormalize_action(action)).to(action.dtype)
            features.append(target_in_state_units - state)
        action_tokens = self.action_proj(torch.cat(features, dim=-1))
        action_tokens = action_tokens.unflatten(-1, (self.config.num_action_tokens, -1))
        instruction_token = self.instruction_proj(instruction_embedding).unsqueeze(1)
        tokens = torch.cat([instruction_token, action_tokens], dim=1)
        return tokens + self.token_embedding.to(tokens.dtype)

    def forward(
        self,
        noisy_frame: torch.Tensor,
        sigma: torch.Tensor,
        context_frames: torch.Tensor,
        state: torch.Tensor,
        action: torch.Tensor,
        instruction_embedding: torch.Tensor,
        return_dict: bool = True,
    ) -> WorldModelForwardOutput | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One network evaluation, all inputs already normalised.

        Args:
            noisy_frame: (B, 3, H, W) ``x_sigma = (1 - sigma) x0 + sigma eps``.
            sigma: (B,) noise level in [0, 1].
            context_frames: (B, K, 3, H, W) in [-1, 1], oldest first.
            state: (B, S) normalised joint state at t.
            action: (B, A) normalised joint targets at t.
            instruction_embedding: (B, 384).
        """
        last_frame = context_frames[:, -1]
        inputs = [noisy_frame, context_frames.flatten(1, 2)]
        if self.config.coordinate_channels:
            inputs.append(self.coordinates.to(noisy_frame.dtype).expand(noisy_frame.shape[0], -1, -1, -1))
        hidden = torch.cat(inputs, dim=1).unsqueeze(2)
        tokens = self.condition_tokens(state, action, instruction_embedding)
        timestep = sigma * NUM_TRAIN_TIMESTEPS
        output = self.transformer(hidden, timestep, tokens, return_dict=False)[0].squeeze(2)
        trunk = self._trunk.pop()  # (B, N, D) after the last block
        sample = last_frame + output if self.config.predict_residual else output

        head_input = torch.cat([self.readout(trunk).flatten(1), state, action], dim=-1)
        next_state = state + self.state_head(head_input)
        object_position = self.object_head(head_input)
        if not return_dict:
            return sample, next_state, object_position
        return WorldModelForwardOutput(sample=sample, state=next_state, object_position=object_position)

    # -------------------------------------------------------------------------------- inference
    @property
    def sampler(self) -> FlowMatchSampler:
        if self._sampler is None:
            self._sampler = FlowMatchSampler(
                shift=float(self.config.sigma_shift), stochastic=bool(self.config.stochastic_sampling)
            )
        return self._sampler

    def encode_instruction(self, instruction: str | Sequence[str]) -> torch.Tensor:
        """MiniLM embeddings (cached per string) for a string or a list of strings."""
        if self._instruction_encoder is None:
            from .text_encoder import shared_instruction_encoder

            self._instruction_encoder = shared_instruction_encoder()
        return self._instruction_encoder.encode(instruction)

    @torch.no_grad()
    def predict(
        self,
        context_frames: np.ndarray | torch.Tensor,
        context_state: np.ndarray | torch.Tensor,
        action: np.ndarray | torch.Tensor,
        instruction: str | Sequence[str] | np.ndarray | torch.Tensor,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        output_type: str | None = None,
    ) -> WorldModelOutput:
        """Predict frame, joint state and object position at t+1 for a batch of B environments.

        Args:
            context_frames: (B, K, H, W, 3) uint8, frames t-K+1..t (numpy or torch).
            context_state: (B, S) float32 joint positions at t, physical units.
            action: (B, A) float32 absolute joint targets at t, physical units.
            instruction: one string (used for every row), B strings (embedded with MiniLM and
                cached), or a (B, 384) float embedding.
            generator: source of the sampling noise; same seed, same prediction.
            num_inference_steps: flow-matching steps (default: ``config.num_inference_steps``).
            output_type: ``"np"`` or ``"pt"``; default follows the type of ``context_frames``.

        Raises:
            ValueError: an input has the wrong shape, dtype or holds NaN/inf.
        """
        device, dtype = self.device, self.dtype
        if output_type is None:
            output_type = "pt" if isinstance(context_frames, torch.Tensor) else "np"
        if output_type not in ("np", "pt"):
            raise ValueError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        steps = int(self.config.num_inference_steps if num_inference_steps is None else num_inference_steps)
        if steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")

        frames = self._check_frames(context_frames)
        batch = frames.shape[0]
        state = _check_vector(context_state, "context_state", batch, self.config.state_dim)
        action_t = _check_vector(action, "action", batch, self.config.action_dim)
        embedding = self._instruction_embedding(instruction, batch)

        context = frames.to(device, non_blocking=True).permute(0, 1, 4, 2, 3).to(dtype) / 127.5 - 1.0
        state_n = self.normalize_state(state.to(device)).to(dtype)
        action_n = self.normalize_action(action_t.to(device)).to(dtype)
        embedding = embedding.to(device, dtype)

        def denoise(noisy: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, tuple]:
            out = self(noisy, sigma, context, state_n, action_n, embedding, return_dict=False)
            return out[0], out[1:]

        size = self.image_size
        x0, (next_state_n, object_n) = self.sampler.sample(
            denoise, (batch, 3, size, size), steps, generator, device, dtype
        )
        frames_out = ((x0.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
        next_state = self.denormalize_state(next_state_n.float())
        object_position = self.denormalize_object_position(object_n.float())
        if output_type == "np":
            return WorldModelOutput(
                frames=frames_out.cpu().numpy(),
                state=next_state.cpu().numpy(),
                object_position=object_position.cpu().numpy(),
            )
        return WorldModelOutput(frames=frames_out, state=next_state, object_position=object_position)

    # ------------------------------------------------------------------------------- validation
    def _check_frames(self, frames: Any) -> torch.Tensor:
        size, k = self.image_size, self.num_context_frames
        expected = f"(B, {k}, {size}, {size}, 3) uint8"
        if isinstance(frames, np.ndarray):
            if frames.dtype != np.uint8:
                raise ValueError(f"context_frames must be {expected}, got dtype {frames.dtype}")
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        elif isinstance(frames, torch.Tensor):
            if frames.dtype != torch.uint8:
                raise ValueError(f"context_frames must be {expected}, got dtype {frames.dtype}")
        else:
            raise ValueError(f"context_frames must be a numpy array or torch tensor {expected}, got {type(frames).__name__}")
        if frames.ndim != 5 or tuple(frames.shape[1:]) != (k, size, size, 3) or frames.shape[0] < 1:
            raise ValueError(f"context_frames must be {expected}, got shape {tuple(frames.shape)}")
        return frames

    def _instruction_embedding(self, instruction: Any, batch: int) -> torch.Tensor:
        dim = self.config.instruction_dim
        if isinstance(instruction, str):
            return self.encode_instruction(instruction).expand(batch, dim)
        if isinstance(instruction, (np.ndarray, torch.Tensor)):
            return _check_vector(instruction, "instruction embedding", batch, dim)
        if isinstance(instruction, Sequence) and all(isinstance(text, str) for text in instruction):
            if len(instruction) != batch:
                raise ValueError(f"instruction must hold {batch} strings (one per row), got {len(instruction)}")
            return self.encode_instruction(list(instruction))
        raise ValueError(
            f"instruction must be a string, a list of {batch} strings or a ({batch}, {dim}) float embedding, "
            f"got {type(instruction).__name__}"
        )

    # ------------------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str = DEFAULT_CHECKPOINT, **kwargs: Any) -> WorldModel:
        """Load a saved world model, ``"default"`` (the shipped checkpoint) or a Wan2.x diffusers folder.

        Only local folders are read (safetensors + ``config.json``, never pickle). Extra keyword
        arguments go to diffusers (``torch_dtype``, ``device_map`` ...); for a Wan folder, keys of
        `WorldModelConfig` (e.g. ``num_context_frames``, ``action_low``) set the new parts.

        Raises:
            FileNotFoundError: the folder does not exist (for ``"default"``: how to train one).
            psi_gym.world_model.checkpoint.CheckpointError: the folder is not a loadable world model.
        """
        return load_pretrained(cls, pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _diffusers_from_pretrained(cls, path: str, **kwargs: Any) -> Any:
        return super().from_pretrained(path, **kwargs)


def _check_vector(value: Any, name: str, batch: int, dim: int) -> torch.Tensor:
    expected = f"({batch}, {dim}) float"
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            raise ValueError(f"{name} must be {expected}, got dtype {value.dtype}")
        value = torch.from_numpy(np.ascontiguousarray(value))
    elif isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise ValueError(f"{name} must be {expected}, got dtype {value.dtype}")
    else:
        raise ValueError(f"{name} must be a numpy array or torch tensor {expected}, got {type(value).__name__}")
    if tuple(value.shape) != (batch, dim):
        raise ValueError(f"{name} must be {expected}, got shape {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or inf")
    return value.to(torch.float32)


def count_parameters(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())

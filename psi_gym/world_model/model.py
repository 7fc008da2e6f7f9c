"""Psi-W0: a state-grounded, action-conditioned video world model on a diffusers Wan transformer.

Each step, W0 advances a tracked physical state with a learned dynamics model and draws the next
camera frame from that state with a Wan transformer, so that the frames follow the state instead
of drifting, and the objects stay solid over the whole episode:

====================== ======================== ===============================================
input                  shape                    meaning
====================== ======================== ===============================================
context_frames         (B, K, H, W, 3) uint8    frames up to t, oldest first (K >= 1; only the
                                                newest is read, to start a state)
context_state          (B, S) float32           joint positions at t (physical units)
action                 (B, A) float32           absolute joint targets commanded at t
instruction            list of B str | (B, 384) task instruction or its MiniLM embedding
world_state            `WorldState` | None      the state W0 carried from the previous step
                                                (None: read a new one off the newest frame)
====================== ======================== ===============================================

`WorldModel.predict` returns frame t+1, joint state t+1, object position t+1 and the new
`WorldState`. The three learned parts:

* ``perception`` (`ObjectPerception`, a small CNN): the object's pose, kind and size read off the
  first real frame of an episode (`initial_state`); the robot's joints are given;
* ``dynamics`` (`StateDynamics`, an MLP on the hand's forward kinematics relative to the object,
  optionally with a per-hand-point `ContactEncoder`, or a `DynamicsEnsemble` of them stepping by
  their mean):
  ``(q_t, q_{t-1}, p_t, p_{t-1}, R_t, R_{t-1}) x u_t -> (q_{t+1}, p_{t+1}, R_{t+1})``, trained on
  whole-episode unrolls of its own predictions;
* the renderer: a `WanTransformer3DModel` in pixel space (patch (1, 8, 8): 64 tokens at 64 px)
  whose input channels are the noisy frame, the episode's first frame (the scene's looks), a
  *sketch* of the new state (`psi_gym.world_model.sketch`: where fingers, palm and object are,
  projected with the scene camera) and (x, y) pixel coordinates; the new state (joints, object
  pose and kind) and the instruction enter as tokens through Wan's cross-attention; the
  flow-matching noise level through its timestep embedding (``t = 1000 sigma``). It predicts the
  clean frame ``x0`` as a residual on the first frame (see `psi_gym.world_model.sampler`).

The robot's kinematics and the fixed camera are inputs W0 is built with (a robot knows its own
URDF and camera), not learned.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin, WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from psi_gym.data.assets import ConfigWithoutOrigin

from .attention import use_fast_rotary_attention
from .config import ACTION_DIM, INSTRUCTION_DIM, STATE_DIM, WanBackboneConfig, WorldModelConfig, renderer_in_channels
from .dynamics import TABLE_HEIGHT_OFFSET, JointResponse, dynamics_members, make_dynamics
from .perception import ObjectPerception
from .sampler import NUM_TRAIN_TIMESTEPS, FlowMatchSampler
from .sketch import Sketcher
from .world_state import DESCRIPTOR_DIM, WorldState

DEFAULT_CHECKPOINT = "default"


@dataclass
class WorldModelOutput(BaseOutput):
    """What `WorldModel.predict` returns for one step of ``B`` environments.

    Args:
        frames: (B, H, W, 3) uint8, the predicted frame t+1 (numpy or torch, see ``output_type``).
        state: (B, S) float32, predicted joint positions at t+1, physical units.
        object_position: (B, 3) float32, predicted object position at t+1, metres.
        world_state: the `WorldState` at t+1, to hand back to the next `predict` call.
    """

    frames: np.ndarray | torch.Tensor
    state: np.ndarray | torch.Tensor
    object_position: np.ndarray | torch.Tensor
    world_state: WorldState | None = None


class WorldModel(ConfigWithoutOrigin, ModelMixin, ConfigMixin):
    """Psi-W0 (see the module doc): ``initial_state`` from a real frame, then ``predict`` step by step.

    Build one with ``WorldModel.from_model_config(WorldModelConfig(...))`` (the keyword arguments
    below are the flat form stored in ``config.json``; see `WorldModelConfig` for each field), load
    one with ``WorldModel.from_pretrained(path_or_"default")``.

    ``from_pretrained`` also accepts a Wan2.x diffusers folder (one holding
    ``transformer/config.json``): its transformer becomes the renderer's backbone, with the patch
    embedding and output projection replaced for pixel space, and the other parts fresh.
    """

    config_name = "config.json"
    ignore_for_config = ["pretrained_backbone"]
    _supports_gradient_checkpointing = True
    _no_split_modules = ["WanTransformerBlock"]
    # physics and perception stay float32 whatever the renderer runs in
    _keep_in_fp32_modules = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3",
                             "dynamics", "perception"]

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        state_dim: int = STATE_DIM,
        action_dim: int = ACTION_DIM,
        instruction_dim: int = INSTRUCTION_DIM,
        num_condition_tokens: int = 4,
        condition_hidden_dim: int = 256,
        dynamics_hidden_dim: int = 512,
        dynamics_num_layers: int = 3,
        dynamics_members: int = 1,
        dynamics_contact_width: int = 0,
        dynamics_joint_prior: bool = False,
        hand_servo: bool = False,
        perception_channels: list[int] | None = None,
        perception_hidden_dim: int = 256,
        num_inference_steps: int = 1,
        sigma_shift: float = 1.0,
        stochastic_sampling: bool = False,
        backbone: dict[str, Any] | None = None,
        pretrained_backbone: WanTransformer3DModel | None = None,
    ) -> None:
        super().__init__()
        backbone_config = WanBackboneConfig.from_dict(dict(backbone or {}))
        patch_t, patch_h, patch_w = backbone_config.patch_size
        if patch_t != 1 or image_size % patch_h or image_size % patch_w:
            raise ValueError(f"patch_size {backbone_config.patch_size} must be (1, p, q) with p, q dividing image_size={image_size}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if state_dim != STATE_DIM or action_dim != ACTION_DIM:
            raise ValueError(f"W0 models the psi_gym robot: state_dim and action_dim must be {STATE_DIM}, "
                             f"got {state_dim}, {action_dim}")
        text_dim = backbone_config.text_dim

        # 1. Perception and physics.
        self.perception = ObjectPerception(image_size, tuple(perception_channels or (32, 64, 64, 128)), perception_hidden_dim)
        self.dynamics = make_dynamics(dynamics_members, dynamics_hidden_dim, dynamics_num_layers, dynamics_contact_width,
                                      dynamics_joint_prior)
        self.sketcher = Sketcher(image_size)  # no weights: kinematics and the camera
        # the drawn hand's servo response (`WorldModelConfig.hand_servo`): fitted, not trained
        self.hand_response = JointResponse(state_dim) if hand_servo else None

        # 2. The renderer's backbone.
        if pretrained_backbone is not None:
            self.transformer = pretrained_backbone
        else:
            self.transformer = WanTransformer3DModel(**backbone_config.to_dict(), in_channels=renderer_in_channels(),
                                                     out_channels=3)
            # x0 = first frame + output: start from "the scene as it was" (DiT's zero-init).
            nn.init.zeros_(self.transformer.proj_out.weight)
            nn.init.zeros_(self.transformer.proj_out.bias)
        use_fast_rotary_attention(self.transformer)  # same numbers as diffusers', ~20% faster on CPU

        # 3. Conditioning tokens: [instruction, state x num_condition_tokens].
        state_features = state_dim + 3 + 6 + DESCRIPTOR_DIM
        self.instruction_proj = nn.Linear(instruction_dim, text_dim)
        self.state_proj = nn.Sequential(
            nn.Linear(state_features, condition_hidden_dim), nn.SiLU(),
            nn.Linear(condition_hidden_dim, condition_hidden_dim), nn.SiLU(),
            nn.Linear(condition_hidden_dim, num_condition_tokens * text_dim),
        )
        self.token_embedding = nn.Parameter(torch.randn(1, 1 + num_condition_tokens, text_dim) * 0.02)

        ramp = torch.linspace(-1.0, 1.0, image_size)
        self.register_buffer("coordinates", torch.stack(torch.meshgrid(ramp, ramp, indexing="xy")), persistent=False)
        self._sampler: FlowMatchSampler | None = None
        self._instruction_encoder = None

    # ----------------------------------------------------------------------------------- config
    @classmethod
    def from_model_config(cls, config: WorldModelConfig) -> WorldModel:
        """Build a freshly initialised model from the typed config."""
        return cls(**config.to_kwargs())

    def with_new_dynamics(self, **sizes: int) -> WorldModel:
        """A new model with this one's perception and renderer weights and a freshly initialised
        dynamics of ``sizes`` (``dynamics_hidden_dim``, ``dynamics_num_layers``, ``dynamics_members``,
        ``dynamics_contact_width``, ``dynamics_joint_prior``;
        the others as here). Used to retrain the physics and to build ensembles."""
        fresh = WorldModel.from_model_config(dataclasses.replace(self.model_config, **sizes))
        kept = {key: value for key, value in self.state_dict().items() if not key.startswith("dynamics.")}
        missing, unexpected = fresh.load_state_dict(kept, strict=False)
        if unexpected or any(not key.startswith("dynamics.") for key in missing):
            raise ValueError(f"the world model does not fit its own config (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        return fresh

    @property
    def model_config(self) -> WorldModelConfig:
        """The typed view of ``self.config``."""
        return WorldModelConfig.from_kwargs(dict(self.config))

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    @property
    def num_context_frames(self) -> int:
        """Frames `predict` reads from ``context_frames``: the newest, to start a state."""
        return 1

    # ------------------------------------------------------------------------------------ state
    def frames_to_model(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
        return frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    @torch.no_grad()
    def initial_state(self, frames: np.ndarray | torch.Tensor, joint_state: np.ndarray | torch.Tensor) -> WorldState:
        """The state of ``B`` episodes at their start: the object read off ``frames`` (B, H, W, 3)
        uint8 (the episodes' first real frames), the robot at ``joint_state`` (B, 22)."""
        frames_t = self._check_frames(frames, name="frames", single=True).to(self.device)
        joints = _check_vector(joint_state, "joint_state", frames_t.shape[0], self.config.state_dim).to(self.device)
        seen = self.perception(self.frames_to_model(frames_t))
        return WorldState(
            joint_state=joints, previous_joint_state=joints.clone(), previous_joint_target=joints.clone(),
            object_position=seen.position, previous_object_position=seen.position.clone(),
            object_rotation=seen.rotation, previous_object_rotation=seen.rotation.clone(),
            object_descriptor=seen.descriptor, scene_frame=frames_t.clone(),
        )

    def state_features(self, state: WorldState) -> torch.Tensor:
        """(B, 37) what the renderer's tokens are made of: joints in [-1, 1], object position
        (5 cm units), orientation columns (zero for the apple), descriptor."""
        sphere = state.object_descriptor[:, :1]
        rotation = state.object_rotation[..., :2].transpose(-1, -2).flatten(1)
        position = (state.object_position - state.object_position.new_tensor([0.0, 0.0, TABLE_HEIGHT_OFFSET])) * 20.0
        return torch.cat([self.dynamics.normalize_joints(state.hand_joint_state), position, rotation * (1 - sphere),
                          state.object_descriptor / 5.0], dim=-1)

    # ---------------------------------------------------------------------------------- network
    def forward(self, noisy_frame: torch.Tensor, sigma: torch.Tensor, scene_frame: torch.Tensor, state: WorldState,
                instruction_embedding: torch.Tensor) -> torch.Tensor:
        """One renderer evaluation: the clean frame ``x0`` (B, 3, H, W) in [-1, 1] units.

        Args:
            noisy_frame: (B, 3, H, W) ``x_sigma = (1 - sigma) x0 + sigma eps``.
            sigma: (B,) noise level in [0, 1].
            scene_frame: (B, 3, H, W) the episode's first frame in [-1, 1].
            state: the `WorldState` the frame shows.
            instruction_embedding: (B, 384).
        """
        dtype = self.transformer.proj_out.weight.dtype
        with torch.autocast(device_type=noisy_frame.device.type, enabled=False):
            sketch = self.sketcher(state.hand_joint_state.float(), state.object_position.float(),
                                   state.object_rotation.float(), state.object_descriptor.float())
            features = self.state_features(state.floating())
        batch = noisy_frame.shape[0]
        hidden = torch.cat([noisy_frame.to(dtype), scene_frame.to(dtype), (sketch * 2.0 - 1.0).to(dtype),
                            self.coordinates.to(dtype).expand(batch, -1, -1, -1)], dim=1).unsqueeze(2)
        state_tokens = self.state_proj(features.to(dtype)).unflatten(-1, (self.config.num_condition_tokens, -1))
        instruction_token = self.instruction_proj(instruction_embedding.to(dtype)).unsqueeze(1)
        tokens = torch.cat([instruction_token, state_tokens], dim=1) + self.token_embedding.to(dtype)
        output = self.transformer(hidden, sigma.to(dtype) * NUM_TRAIN_TIMESTEPS, tokens, return_dict=False)[0].squeeze(2)
        return scene_frame.to(output.dtype) + output

    # -------------------------------------------------------------------------------- inference
    @property
    def sampler(self) -> FlowMatchSampler:
        if self._sampler is None:
            self._sampler = FlowMatchSampler(shift=float(self.config.sigma_shift),
                                             stochastic=bool(self.config.stochastic_sampling))
        return self._sampler

    def encode_instruction(self, instruction: str | Sequence[str]) -> torch.Tensor:
        """MiniLM embeddings (cached per string) for a string or a list of strings."""
        if self._instruction_encoder is None:
            from .text_encoder import shared_instruction_encoder

            self._instruction_encoder = shared_instruction_encoder()
        return self._instruction_encoder.encode(instruction)

    @torch.no_grad()
    def render(self, state: WorldState, instruction_embedding: torch.Tensor, generator: torch.Generator | list | None = None,
               num_inference_steps: int | None = None) -> torch.Tensor:
        """Frames (B, H, W, 3) uint8 of ``state`` (drawn with the flow-matching sampler)."""
        steps = int(self.config.num_inference_steps if num_inference_steps is None else num_inference_steps)
        dtype = self.transformer.proj_out.weight.dtype
        scene = self.frames_to_model(state.scene_frame.to(self.device)).to(dtype)
        embedding = instruction_embedding.to(self.device, dtype)

        def denoise(noisy: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, None]:
            return self(noisy, sigma, scene, state, embedding), None

        size = self.image_size
        x0, _ = self.sampler.sample(denoise, (len(state), 3, size, size), steps, generator, self.device, dtype)
        return ((x0.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)

    @torch.no_grad()
    def predict(
        self,
        context_frames: np.ndarray | torch.Tensor,
        context_state: np.ndarray | torch.Tensor,
        action: np.ndarray | torch.Tensor,
        instruction: str | Sequence[str] | np.ndarray | torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int | None = None,
        output_type: str | None = None,
        world_state: WorldState | None = None,
    ) -> WorldModelOutput:
        """Predict frame, joint state and object position at t+1 for a batch of B environments.

        Args:
            context_frames: (B, K, H, W, 3) uint8, frames up to t (numpy or torch); with
                ``world_state=None`` the newest starts a new state (`initial_state`).
            context_state: (B, S) float32 joint positions at t, physical units (starts a state).
            action: (B, A) float32 absolute joint targets at t, physical units.
            instruction: one string (used for every row), B strings (embedded with MiniLM and
                cached), or a (B, 384) float embedding.
            generator: source of the renderer's noise (one, or one per row); same seed, same frame.
            num_inference_steps: flow-matching steps (default: ``config.num_inference_steps``).
            output_type: ``"np"`` or ``"pt"``; default follows the type of ``context_frames``.
            world_state: the `WorldState` the previous call returned for these rows.

        Raises:
            ValueError: an input has the wrong shape, dtype or holds NaN/inf; a ``world_state`` of
                another batch size.
            TypeError: a ``world_state`` that is no `WorldState`.
        """
        if output_type is None:
            output_type = "pt" if isinstance(context_frames, torch.Tensor) else "np"
        if output_type not in ("np", "pt"):
            raise ValueError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        steps = int(self.config.num_inference_steps if num_inference_steps is None else num_inference_steps)
        if steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        frames = self._check_frames(context_frames, name="context_frames")
        batch = frames.shape[0]
        joints = _check_vector(context_state, "context_state", batch, self.config.state_dim)
        targets = _check_vector(action, "action", batch, self.config.action_dim).to(self.device)
        embedding = self._instruction_embedding(instruction, batch)
        if world_state is None:
            world_state = self.initial_state(frames[:, -1], joints)
        elif not isinstance(world_state, WorldState):
            raise TypeError(f"world_state must be the WorldState a previous predict (or initial_state) returned, or None, "
                            f"got {type(world_state).__name__}")
        elif len(world_state) != batch:
            raise ValueError(f"world_state holds {len(world_state)} rows, the batch has {batch}")
        before = world_state.to(self.device).floating()
        state = self.dynamics.step(before, targets)
        if self.hand_response is not None:
            state.hand_joint_state, state.previous_hand_joint_state = self.servo_hand(before, targets), before.hand_joint_state
        frames_out = self.render(state, embedding, generator, steps)
        if output_type == "np":
            return WorldModelOutput(frames=frames_out.cpu().numpy(), state=state.hand_joint_state.cpu().numpy(),
                                    object_position=state.object_position.cpu().numpy(), world_state=state)
        return WorldModelOutput(frames=frames_out, state=state.hand_joint_state, object_position=state.object_position,
                                world_state=state)

    def servo_hand(self, state: WorldState, joint_targets: torch.Tensor) -> torch.Tensor:
        """(B, 22) the drawn hand one step after ``state`` under ``joint_targets``, by the hand servo
        (`WorldModelConfig.hand_servo`), within the joints' ranges."""
        if self.hand_response is None:
            raise ValueError("this W0 has no hand servo (WorldModelConfig.hand_servo); psi-gym fit-hand-servo adds one")
        q, q_previous = state.hand_joint_state, state.previous_hand_joint_state
        moved = q + self.hand_response(joint_targets - q, q - q_previous, joint_targets - state.previous_joint_target)
        lead = dynamics_members(self.dynamics)[0]
        return torch.minimum(torch.maximum(moved, lead.joint_low), lead.joint_high)

    def with_hand_servo(self, coefficients: torch.Tensor) -> WorldModel:
        """A copy of this W0 whose drawn hand follows a servo with ``coefficients`` (22, 3) (see
        `psi_gym.world_model.dynamics.JointResponse`); everything else as here."""
        fresh = WorldModel.from_model_config(dataclasses.replace(self.model_config, hand_servo=True))
        kept = {key: value for key, value in self.state_dict().items() if not key.startswith("hand_response.")}
        missing, unexpected = fresh.load_state_dict(kept, strict=False)
        if unexpected or any(not key.startswith("hand_response.") for key in missing):
            raise ValueError(f"the world model does not fit its own config (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        fresh.hand_response.coefficients.copy_(torch.as_tensor(coefficients, dtype=torch.float32))
        return fresh

    # ------------------------------------------------------------------------------- validation
    def _check_frames(self, frames: Any, name: str, single: bool = False) -> torch.Tensor:
        """``frames`` as a uint8 tensor: (B, K, H, W, 3), or (B, H, W, 3) with ``single``."""
        size = self.image_size
        expected = f"(B, {size}, {size}, 3) uint8" if single else f"(B, K, {size}, {size}, 3) uint8"
        if isinstance(frames, np.ndarray):
            if frames.dtype != np.uint8:
                raise ValueError(f"{name} must be {expected}, got dtype {frames.dtype}")
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        elif isinstance(frames, torch.Tensor):
            if frames.dtype != torch.uint8:
                raise ValueError(f"{name} must be {expected}, got dtype {frames.dtype}")
        else:
            raise ValueError(f"{name} must be a numpy array or torch tensor {expected}, got {type(frames).__name__}")
        leading = 1 if single else 2
        if (frames.ndim != leading + 3 or tuple(frames.shape[leading:]) != (size, size, 3)
                or min(frames.shape[:leading]) < 1):
            raise ValueError(f"{name} must be {expected}, got shape {tuple(frames.shape)}")
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
        raise ValueError(f"instruction must be a string, a list of {batch} strings or a ({batch}, {dim}) float embedding, "
                         f"got {type(instruction).__name__}")

    # ------------------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str = DEFAULT_CHECKPOINT, **kwargs: Any) -> WorldModel:
        """Load a saved world model, ``"default"`` (the shipped checkpoint) or a Wan2.x diffusers folder.

        Only local folders are read (safetensors + ``config.json``, never pickle). Extra keyword
        arguments go to diffusers (``torch_dtype``, ``device_map`` ...); for a Wan folder, keys of
        `WorldModelConfig` set the new parts.

        Raises:
            FileNotFoundError: the folder does not exist (for ``"default"``: how to train one).
            psi_gym.world_model.checkpoint.CheckpointError: the folder is not a loadable world model.
        """
        from .checkpoint import load_pretrained

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

"""The batched core of PsiW0-Retarget-v0, under both `PsiW0RetargetEnv` and `PsiW0RetargetVectorEnv`.

`PsiW0RetargetCore` holds N episodes (one per env row) and steps any subset of them with ONE
world-model call. The single env is a core of one row, the vector env a core of N, so both share
every rule: action mapping, observations, reward call, termination.

The world model owns prediction; this owns the env's contract (what an episode starts from, what
the policy's action means, when an episode ends, when the reward model is asked). It is handed its
world model, reward model and demo set as objects; `PsiW0RetargetCore.from_config` (what the env
classes call) resolves the names a user may give instead (``"default"``, folders) once, at the
edge, through `psi_gym.data.assets`.

Notation, per row (``t`` = steps taken so far, ``T`` = the demo's length):

* ``ref[i]``     the demo's retargeted joint targets, row ``i`` (clipped to the joint ranges,
                 as the robot clips every target), held at ``ref[T]`` past the end;
* ``a``          the policy's action in [-1, 1]^22 (values outside are clipped);
* residual mode: ``target = clip(ref[t+1] + gain * s * a)``, ``s = residual_scale(robot)``
                 (3 cm wrist position, 0.15 rad wrist rotation, 0.4 rad finger joints):
                 `psi_gym.sim.hands.residual_joint_targets`;
* absolute mode: ``target = low + (a + 1) / 2 * (high - low)`` over the joint ranges.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from psi_gym.envs.demo_set import (
    DEFAULT_DEMOS,
    DemoSet,
    DemoStart,
    load_demo_set,
    resize_frame,
    select_demo,
)
from psi_gym.rewards.base import RewardInput, RewardModel, as_reward_output
from psi_gym.rewards.resolve import resolve_reward_model
from psi_gym.sim.hands import hand_spec, residual_joint_targets, residual_scale
from psi_gym.world_model.config import INFERENCE_DTYPES, INSTRUCTION_DIM
from psi_gym.world_model.loading import load_world_model
from psi_gym.world_model.model import WorldModel

ACTION_MODES = ("residual", "absolute")


@dataclass
class PsiW0RetargetConfig:
    """Everything `PsiW0RetargetEnv` / `PsiW0RetargetVectorEnv` can be told (as keyword arguments
    of ``gym.make`` / ``gym.make_vec``, or as one ``config=``)."""

    world_model: Any = "default"
    """a `WorldModel` (used as is: the env steps that very object), ``"default"`` (the shipped
    checkpoint), a checkpoint folder, or ``"random:tiny"`` / ``"random:debug"`` (untrained, for
    speed checks and smoke tests). Named checkpoints load through `load_world_model`'s process
    cache, shared by all envs until new weights are saved into the folder. ``gym.make`` and
    ``gym.make_vec`` hand an object through uncopied (Gymnasium 1.x copies only the registered
    kwargs); reading ``env.spec`` through a wrapper deep-copies the spec, the model with it."""
    demos: Any = DEFAULT_DEMOS
    """``"default"`` (48 shipped retargeted demos), a dataset folder of retargeted or human demos,
    an `EpisodeDataset`, an `Episode` or a list of them."""
    reward_model: Any = "object_tracking"
    """a reward-model object (used as is), ``"object_tracking"``, ``"success_classifier"``,
    ``"package.module:Name"`` or a function ``batch -> rewards`` (see `psi_gym.rewards`)."""
    estimator: Any = "default"
    """the object-state estimator the built-in reward models use when named by string: an
    `ObjectStateEstimator`, ``"default"``, a folder or ``"random"``."""
    action_mode: str = "residual"
    """``"residual"`` on the reference or ``"absolute"`` joint targets (see the module doc)."""
    residual_gain: float = 1.0
    """multiplies the residual's per-joint scale."""
    reference_horizon: int = 4
    """how many upcoming reference rows the observation shows."""
    frame_stack: int = 1
    """how many of the latest frames ``pixels`` holds (stacked along the channels)."""
    channels_first: bool = False
    """``pixels`` as (3k, H, W) instead of (H, W, 3k)."""
    episode_slack: int = 8
    """steps past the demo's length before the episode is truncated."""
    max_episode_steps: int | None = None
    """if set, truncate every episode after this many steps instead of demo length + slack."""
    successful_demos_only: bool = True
    """draw only demos whose human demonstration succeeded."""
    num_inference_steps: int | None = None
    """world-model sampler steps (default: the checkpoint's own)."""
    device: str | None = None
    """where a named world model runs (default: CUDA if available, else CPU); an object stays where it is."""
    world_model_dtype: str = "float32"
    """weights and compute of a named world model: ``"float32"``, ``"bfloat16"`` or ``"float16"``,
    loaded the diffusers way (``torch_dtype=``: norms and modulation tables stay float32); an
    object keeps its own. Half precision is meant for GPUs; on the 2-core CPU bfloat16 measured no
    faster, see the README."""

    def __post_init__(self) -> None:
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        if self.world_model_dtype not in INFERENCE_DTYPES:
            raise ValueError(f"world_model_dtype must be one of {INFERENCE_DTYPES}, got {self.world_model_dtype!r}")
        for name, low in (("reference_horizon", 1), ("frame_stack", 1), ("episode_slack", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if self.max_episode_steps is not None and (not isinstance(self.max_episode_steps, (int, np.integer))
                                                   or self.max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be an int >= 1 or None, got {self.max_episode_steps!r}")
        if not (np.isfinite(self.residual_gain) and self.residual_gain >= 0):
            raise ValueError(f"residual_gain must be a finite number >= 0, got {self.residual_gain!r}")

    @classmethod
    def from_kwargs(cls, config: PsiW0RetargetConfig | None = None, **overrides: Any) -> PsiW0RetargetConfig:
        """``config`` (or the defaults) with keyword overrides; an unknown keyword is an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown PsiW0-Retarget option(s) {unknown}; the options are {sorted(names)}")
        return dataclasses.replace(config or cls(), **overrides)


@dataclass
class StepResult:
    """What `PsiW0RetargetCore.step` returns for the stepped rows."""

    reward: np.ndarray  # (n,) float32
    terminated: np.ndarray  # (n,) bool
    truncated: np.ndarray  # (n,) bool
    info: dict[str, np.ndarray]  # extra (n,) arrays from the reward model


@dataclass
class StepProfile:
    """Seconds spent in the world model and the reward model since the last `clear`."""

    world_model_s: float = 0.0
    reward_model_s: float = 0.0
    steps: int = 0
    """batched steps (world-model calls)."""
    env_steps: int = 0
    """env rows stepped by them (a row being reset is not stepped)."""

    def clear(self) -> None:
        self.world_model_s = self.reward_model_s = 0.0
        self.steps = self.env_steps = 0


class PsiW0RetargetCore:
    """N episodes in the world model, stepped together (see the module doc).

    Args:
        config: the env options (its ``world_model``, ``reward_model``, ``estimator`` and ``demos``
            are not read: the objects below are what it uses).
        world_model: the `WorldModel` that predicts every step.
        reward_model: a `RewardModel` (``batch -> RewardOutput``).
        demos: the `DemoSet` episodes start from.
        num_envs: N rows.
    """

    def __init__(self, config: PsiW0RetargetConfig, world_model: WorldModel, reward_model: RewardModel,
                 demos: DemoSet, num_envs: int = 1) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if not isinstance(world_model, WorldModel):
            raise TypeError(f"world_model must be a WorldModel (names resolve in PsiW0RetargetCore.from_config), "
                            f"got {type(world_model).__name__}")
        if not callable(reward_model):
            raise TypeError(f"reward_model must be callable (batch -> RewardOutput), got {type(reward_model).__name__}")
        if not isinstance(demos, DemoSet):
            raise TypeError(f"demos must be a DemoSet (names resolve in PsiW0RetargetCore.from_config), "
                            f"got {type(demos).__name__}")
        self.config = config
        self.num_envs = n = int(num_envs)
        self.world_model = world_model
        self.device = self.world_model.device
        self.reward_model = reward_model
        self.demos = demos

        spec = hand_spec("robot")
        ranges = spec.joint_ranges().astype(np.float32)
        self.num_joints = spec.num_joints
        self.joint_ranges = ranges
        self.joint_low, self.joint_high = ranges[:, 0].copy(), ranges[:, 1].copy()
        self.residual_scale = (residual_scale(spec) * config.residual_gain).astype(np.float32)
        model_config = self.world_model.config
        if model_config.state_dim != self.num_joints or model_config.action_dim != self.num_joints:
            raise ValueError(f"the world model takes state/action of {model_config.state_dim}/{model_config.action_dim} "
                             f"dims; the robot has {self.num_joints} joints")
        if model_config.instruction_dim != INSTRUCTION_DIM:
            raise ValueError(f"the world model takes {model_config.instruction_dim}-dim instruction embeddings; "
                             f"the env gives MiniLM's {INSTRUCTION_DIM}")
        self.image_size = self.world_model.image_size
        self.num_context_frames = self.world_model.num_context_frames
        self.frame_stack = config.frame_stack
        self.history_length = max(self.num_context_frames, self.frame_stack)

        # Spaces (declared before any step).
        size, k = self.image_size, self.frame_stack
        pixel_shape = (3 * k, size, size) if config.channels_first else (size, size, 3 * k)
        horizon = config.reference_horizon
        self.single_observation_space = spaces.Dict({
            "pixels": spaces.Box(0, 255, pixel_shape, np.uint8),
            "agent_pos": spaces.Box(self.joint_low, self.joint_high, dtype=np.float32),
            # flattened, row-major: ref[t+1] (22 values), then ref[t+2], ...
            "reference": spaces.Box(np.tile(self.joint_low, horizon), np.tile(self.joint_high, horizon), dtype=np.float32),
            "instruction": spaces.Box(-1.0, 1.0, (INSTRUCTION_DIM,), np.float32),
        })
        self.single_action_space = spaces.Box(-1.0, 1.0, (self.num_joints,), np.float32)

        # Per-row episode state.
        self.history = np.zeros((n, self.history_length, size, size, 3), np.uint8)  # oldest first
        self.state = np.zeros((n, self.num_joints), np.float32)
        self.step_count = np.zeros(n, np.int64)
        self.limit = np.zeros(n, np.int64)
        self.started = np.zeros(n, bool)
        self.ended = np.zeros(n, bool)
        self.success = np.zeros(n, bool)
        self.instruction_embedding = torch.zeros(n, INSTRUCTION_DIM)
        self.starts: list[DemoStart | None] = [None] * n
        self.references = np.zeros((n, 1, self.num_joints), np.float32)  # per row: clipped ref, padded
        self.generators = [torch.Generator(device=self.device) for _ in range(n)]
        self._embeddings: dict[str, torch.Tensor] = {}
        self.profile = StepProfile()

    @classmethod
    def from_config(cls, config: PsiW0RetargetConfig, num_envs: int = 1) -> PsiW0RetargetCore:
        """A core for ``config``, its names resolved once here (the edge): the world model by
        `load_world_model` (``device``, ``world_model_dtype``), the reward model by
        `resolve_reward_model` (with ``estimator``), the demos by `load_demo_set`. Objects in the
        config are used as they are."""
        world_model = load_world_model(config.world_model, config.device, config.world_model_dtype)
        reward_model = resolve_reward_model(config.reward_model, config.estimator)
        demos = load_demo_set(config.demos, config.successful_demos_only)
        return cls(config, world_model, reward_model, demos, num_envs)

    # ----------------------------------------------------------------------------- reset
    def reset(self, rows: np.ndarray, rngs: list[np.random.Generator], demos: list[Any]) -> None:
        """Start a new episode in each of ``rows``: demo ``demos[j]`` (see `select_demo`) drawn
        with ``rngs[j]``, which also seeds the row's world-model noise."""
        for row, rng, choice in zip(rows, rngs, demos, strict=True):
            start = select_demo(self.demos, choice, rng, self.config.successful_demos_only)
            context = start.context
            self.generators[row].manual_seed(int(rng.integers(0, 2**63 - 1)))
            self.starts[row] = start
            self.history[row] = resize_frame(start.first_frame, self.image_size)
            self.state[row] = np.clip(start.start_state, self.joint_low, self.joint_high)
            self.step_count[row] = 0
            self.limit[row] = self.config.max_episode_steps or context.num_steps + self.config.episode_slack
            self.instruction_embedding[row] = self._embedding(context.instruction)
            self.started[row] = True
            self.ended[row] = False
            self.success[row] = False
        self._stack_references()

    def _embedding(self, instruction: str) -> torch.Tensor:
        if instruction not in self._embeddings:
            # The process-wide MiniLM encoder (what WorldModel.encode_instruction uses), called
            # directly so that the model object stays deep-copyable: reading `env.spec` through a
            # Gymnasium wrapper deep-copies the spec's kwargs, a model object among them.
            from psi_gym.world_model.text_encoder import encode_instructions

            self._embeddings[instruction] = encode_instructions(instruction).detach().float().cpu()
        return self._embeddings[instruction]

    def _stack_references(self) -> None:
        # One (N, T_max + 1, 22) array: row i's clipped reference, its last row repeated past its end.
        starts = [s for s in self.starts if s is not None]
        length = max(s.context.num_steps for s in starts) + 1
        references = np.zeros((self.num_envs, length, self.num_joints), np.float32)
        for row, start in enumerate(self.starts):
            if start is None:
                continue
            reference = np.clip(start.context.reference, self.joint_low, self.joint_high)
            references[row, : len(reference)] = reference
            references[row, len(reference):] = reference[-1]
        self.references = references

    # ------------------------------------------------------------------------------ step
    def check_actions(self, actions: Any, shape: tuple[int, ...]) -> np.ndarray:
        """Validate a batch of policy actions of ``shape``; return them as float32 in [-1, 1].

        Raises:
            ValueError: not a real-valued array of ``shape``, or NaN/inf in it.
        """
        array = np.asarray(actions)
        if array.dtype.kind != "f":
            raise ValueError(f"action must be a float array of shape {shape} in [-1, 1], got dtype {array.dtype}")
        if array.shape != shape:
            raise ValueError(f"action must have shape {shape} (float32 in [-1, 1]), got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"action contains NaN or inf: {array}")
        return np.clip(array.astype(np.float32), -1.0, 1.0)

    def joint_targets(self, rows: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(n, 22) absolute joint targets of ``actions`` for ``rows`` (see the module doc)."""
        if self.config.action_mode == "absolute":
            return self.joint_low + (actions + 1.0) * 0.5 * (self.joint_high - self.joint_low)
        index = np.minimum(self.step_count[rows] + 1, self.references.shape[1] - 1)
        return residual_joint_targets(self.references[rows, index], actions, self.residual_scale, self.joint_ranges)

    def step(self, rows: np.ndarray, actions: np.ndarray) -> StepResult:
        """Advance ``rows`` (running episodes) by one step with checked ``actions`` (n, 22)."""
        if len(rows) == 0:
            empty = np.zeros(0, np.float32)
            return StepResult(empty, empty.astype(bool), empty.astype(bool), {})
        targets = self.joint_targets(rows, actions).astype(np.float32)
        start = time.perf_counter()
        K = self.num_context_frames
        prediction = self.world_model.predict(
            self.history[rows, -K:],
            self.state[rows],
            targets,
            self.instruction_embedding[rows],
            generator=[self.generators[row] for row in rows],  # per-row noise: batching changes nothing
            num_inference_steps=self.config.num_inference_steps,
            output_type="np",
        )
        middle = time.perf_counter()
        frames = np.asarray(prediction.frames, dtype=np.uint8)
        state = np.clip(np.asarray(prediction.state, dtype=np.float32), self.joint_low, self.joint_high)
        self.history[rows, :-1] = self.history[rows, 1:]
        self.history[rows, -1] = frames
        self.state[rows] = state
        self.step_count[rows] += 1

        batch = RewardInput(
            frames=frames.copy(),
            state=state.copy(),
            action=actions.copy(),
            target=targets.copy(),
            step=self.step_count[rows].copy(),
            object_position=np.asarray(prediction.object_position, dtype=np.float32).copy(),
            episodes=[self.starts[row].context for row in rows],
        )
        output = as_reward_output(self.reward_model(batch), len(rows), source=f"reward model {self.reward_model!r}")
        end = time.perf_counter()
        self.profile.world_model_s += middle - start
        self.profile.reward_model_s += end - middle
        self.profile.steps += 1
        self.profile.env_steps += len(rows)

        success = output.success if output.success is not None else np.zeros(len(rows), bool)
        terminated = success | (output.terminated if output.terminated is not None else False)
        truncated = self.step_count[rows] >= self.limit[rows]
        self.success[rows] = success
        self.ended[rows] = terminated | truncated
        return StepResult(output.reward, terminated, truncated, output.info)

    # ------------------------------------------------------------------------ observation
    def observation(self, row: int) -> dict[str, np.ndarray]:
        """Row ``row``'s observation (fresh arrays)."""
        frames = self.history[row, -self.frame_stack:]  # (k, H, W, 3), oldest first
        if self.config.channels_first:
            pixels = frames.transpose(0, 3, 1, 2).reshape(-1, self.image_size, self.image_size)
        else:
            pixels = frames.transpose(1, 2, 0, 3).reshape(self.image_size, self.image_size, -1)
        horizon = self.config.reference_horizon
        index = np.minimum(self.step_count[row] + 1 + np.arange(horizon), self.references.shape[1] - 1)
        return {
            "pixels": pixels.copy(),  # a reshape may be a view of the history
            "agent_pos": self.state[row].copy(),
            "reference": self.references[row, index].reshape(-1),  # fancy indexing copies
            "instruction": self.instruction_embedding[row].numpy().copy(),
        }

    def info(self, row: int) -> dict[str, Any]:
        """Row ``row``'s info: task, instruction text, demo id and index, step, success."""
        context = self.starts[row].context
        return {
            "task": context.task,
            "instruction": context.instruction,
            "demo": context.demo_id,
            "demo_index": context.demo_index,
            "step": int(self.step_count[row]),
            "success": bool(self.success[row]),
        }

    def frame(self, row: int) -> np.ndarray:
        """Row ``row``'s latest (predicted) frame, (H, W, 3) uint8."""
        return self.history[row, -1].copy()

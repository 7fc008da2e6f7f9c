"""The batched core of PsiW0-Retarget-v0, under both `PsiW0RetargetEnv` and `PsiW0RetargetVectorEnv`.

`PsiW0RetargetCore` holds N episodes (one per env row) and steps any subset of them with ONE
world-model call. The single env is a core of one row, the vector env a core of N, so both share
every rule: action mapping, observations, reward call, termination.

The world model owns prediction; this owns the env's contract (what an episode starts from, what
the policy's action means, when an episode ends, when the reward model is asked, what the episode
was: `PsiW0RetargetCore.episode` hands it out as an `Episode`). It is handed its
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
* absolute mode: ``target = low + (a + 1) / 2 * (high - low)`` over the joint ranges;
* ``H``          the row's horizon: ``T + episode_slack``, or ``max_episode_steps`` if set. Every
                 episode lasts exactly ``H`` steps (unless the reward model ends it early with
                 ``terminated``, a failure); step ``H`` is the verdict step: the reward model is
                 told (``RewardInput.last``) and its ``success`` there is the episode's success,
                 judged on the final predicted frame as the simulator judges the final state
                 (`psi_gym.sim.tasks.Task.is_success`).

A step is all or nothing: everything (prediction, reward, verdict) is computed first and the row's
state (frame history, joints, step count, records, noise generator) is committed only once the
reward model has returned and its output was checked; a step that raises leaves the env as it was.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from psi_gym.data.episode import Episode
from psi_gym.envs.demo_set import (
    DEFAULT_DEMOS,
    DemoSet,
    DemoStart,
    load_demo_set,
    resize_frame,
    select_demo,
)
from psi_gym.rewards.base import EpisodeContext, RewardInput, RewardModel, as_reward_output
from psi_gym.rewards.resolve import resolve_reward_model
from psi_gym.sim.hands import hand_spec, residual_joint_targets, residual_scale
from psi_gym.sim.tasks import TASKS
from psi_gym.sim.tasks import EPISODE_SLACK
from psi_gym.world_model.config import INFERENCE_DTYPES, INSTRUCTION_DIM
from psi_gym.world_model.loading import load_world_model
from psi_gym.world_model.model import WorldModel, WorldModelOutput
from psi_gym.world_model.world_state import WorldState, matrix_to_quaternion

ACTION_MODES = ("residual", "absolute")
DEVICE_FORMS = "None (CUDA if available, else the CPU), 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device"
IDENTITY_QUATERNION = np.array([1.0, 0.0, 0.0, 0.0], np.float32)  # w, x, y, z
TASK_NAMES = tuple(sorted(TASKS))
"""What ``info["task_index"]`` indexes (the estimator's success heads use the same order)."""


@runtime_checkable
class WorldStepper(Protocol):
    """What the core steps its rows with: `WorldModel` satisfies it, and so does the simulator
    twin's `psi_gym.envs.sim_retarget.SimulatorStepper` (the ground truth in W0's place).

    The core calls ``initial_state`` once per reset (the rows being reset, in order) and
    ``predict`` once per batched step (the rows being stepped, in order), handing back the
    `WorldState` rows it got; see `WorldModel.initial_state` and `WorldModel.predict` for the
    shapes."""

    image_size: int
    """frames are ``image_size x image_size`` RGB."""
    num_context_frames: int
    """how many of the newest frames ``predict`` reads."""
    device: torch.device
    """where the per-row noise generators live."""

    def initial_state(self, frames: np.ndarray, joint_state: np.ndarray) -> WorldState:
        """The state of ``B`` episodes at their start: first frames (B, H, W, 3) uint8, joints (B, 22)."""

    def predict(self, context_frames: np.ndarray, context_state: np.ndarray, action: np.ndarray,
                instruction: str | Sequence[str] | np.ndarray | torch.Tensor,
                generator: torch.Generator | list[torch.Generator] | None = None,
                num_inference_steps: int | None = None, output_type: str | None = None,
                world_state: WorldState | None = None) -> WorldModelOutput:
        """Frame, joints, object position and `WorldState` of the rows at t+1."""


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
    episode_slack: int = EPISODE_SLACK
    """steps past the demo's length in every episode: the horizon is ``T + episode_slack``."""
    max_episode_steps: int | None = None
    """if set, every episode lasts this many steps (the horizon) instead of demo length + slack."""
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
        for name in ("max_episode_steps", "num_inference_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
                                      or value < 1):
                raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
        for name in ("channels_first", "successful_demos_only"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}")
        gain = self.residual_gain
        if isinstance(gain, (bool, np.bool_)) or not isinstance(gain, (int, float, np.integer, np.floating)) \
                or not (np.isfinite(gain) and gain >= 0):
            raise ValueError(f"residual_gain must be a finite number >= 0, got {gain!r}")
        check_device(self.device)

    @classmethod
    def from_kwargs(cls, config: PsiW0RetargetConfig | None = None, **overrides: Any) -> PsiW0RetargetConfig:
        """``config`` (or the defaults) with keyword overrides.

        Raises:
            TypeError: an unknown keyword, worded as Python words it ("got an unexpected keyword
                argument 'name'"): TorchRL's ``GymEnv`` offers ``frameskip`` and, told so, skips
                frames itself.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [name for name in overrides if name not in names]
        if unknown:
            others = f" (also unknown: {', '.join(map(repr, unknown[1:]))})" if len(unknown) > 1 else ""
            raise TypeError(f"PsiW0-Retarget got an unexpected keyword argument {unknown[0]!r}{others}; "
                            f"the options are {sorted(names)}")
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"config must be a {cls.__name__} or None, got {type(config).__name__}")
        return dataclasses.replace(config or cls(), **overrides)


def check_device(device: Any) -> None:
    """Raise a ValueError naming ``device=`` and its valid forms if ``device`` names no usable device."""
    if device is None or isinstance(device, torch.device):
        parsed = device
    elif isinstance(device, str):
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"device must be {DEVICE_FORMS}, got {device!r}") from None
    else:
        raise ValueError(f"device must be {DEVICE_FORMS}, got {type(device).__name__} {device!r}")
    if parsed is not None and parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}, but CUDA is not available here; pass device='cpu' or None")


@dataclass
class StepResult:
    """What `PsiW0RetargetCore.step` returns for the stepped rows."""

    reward: np.ndarray  # (n,) float32
    terminated: np.ndarray  # (n,) bool: the verdict step (the horizon) or an early failure
    truncated: np.ndarray  # (n,) bool: always False here (the horizon is part of the task)
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


@dataclass
class EpisodeRecord:
    """What one row's episode was, step by step (``t`` = steps taken; arrays hold ``t`` or ``t+1`` rows)."""

    start: DemoStart
    seed: int
    """the seed of the row's world-model noise for this episode."""
    horizon: int
    """H: the steps the episode lasts unless it fails early."""
    frames: np.ndarray  # (t+1, S, S, 3) uint8: the real first frame, then W0's predictions
    state: np.ndarray  # (t+1, 22) float32: start joints, then W0's predicted joint states
    actions: np.ndarray  # (t, 22) float32: the policy's actions, clipped to [-1, 1]
    targets: np.ndarray  # (t, 22) float32: the absolute joint targets they were mapped to
    object_pose: np.ndarray  # (t+1, 7) float32: the object's pose W0 tracks (read off the first frame, then predicted)
    ended: bool
    success: bool


class PsiW0RetargetCore:
    """N episodes in the world model, stepped together (see the module doc).

    Args:
        config: the env options (its ``world_model``, ``reward_model``, ``estimator`` and ``demos``
            are not read: the objects below are what it uses).
        world_model: the `WorldModel` that predicts every step (or any other `WorldStepper`:
            the simulator twin steps the ground truth through the same rules).
        reward_model: a `RewardModel` (``batch -> RewardOutput``).
        demos: the `DemoSet` episodes start from.
        num_envs: N rows.

    Each row records its current episode (frames, joint states, actions, joint targets, W0's
    object positions) and keeps a copy of the last one that ended; `episode` hands either out as
    an `Episode`. Memory stays bounded: two episodes per row.
    """

    def __init__(self, config: PsiW0RetargetConfig, world_model: WorldStepper, reward_model: RewardModel,
                 demos: DemoSet, num_envs: int = 1) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if not isinstance(world_model, WorldStepper):
            raise TypeError(f"world_model must be a WorldModel or another WorldStepper (image_size, "
                            f"num_context_frames, device, initial_state, predict; names resolve in "
                            f"PsiW0RetargetCore.from_config), got {type(world_model).__name__}")
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
        if isinstance(world_model, WorldModel):
            model_config = world_model.config
            if model_config.state_dim != self.num_joints or model_config.action_dim != self.num_joints:
                raise ValueError(f"the world model takes state/action of {model_config.state_dim}/"
                                 f"{model_config.action_dim} dims; the robot has {self.num_joints} joints")
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
        # Joint values lie in the joint ranges; the spaces' bounds also hold 0 (only the wrist's
        # height, 2..40 cm, does not: its bound starts at the table top). TorchRL's GymEnv(num_envs=N)
        # fills the final observation of sub-envs that did not end with zeros and checks it against
        # these bounds (check_env_specs).
        space_low, space_high = np.minimum(self.joint_low, 0.0), np.maximum(self.joint_high, 0.0)
        self.single_observation_space = spaces.Dict({
            "pixels": spaces.Box(0, 255, pixel_shape, np.uint8),
            "agent_pos": spaces.Box(space_low, space_high, dtype=np.float32),
            # flattened, row-major: ref[t+1] (22 values), then ref[t+2], ...
            "reference": spaces.Box(np.tile(space_low, horizon), np.tile(space_high, horizon), dtype=np.float32),
            "instruction": spaces.Box(-1.0, 1.0, (INSTRUCTION_DIM,), np.float32),
            # steps taken / H: with a fixed horizon, how many steps remain is part of the state
            "progress": spaces.Box(0.0, 1.0, (1,), np.float32),
        })
        self.single_action_space = spaces.Box(-1.0, 1.0, (self.num_joints,), np.float32)

        # Per-row episode state.
        self.history = np.zeros((n, self.history_length, size, size, 3), np.uint8)  # oldest first
        self.world_state = WorldState.empty(n, size, self.device)  # what W0 tracks per row
        self.state = np.zeros((n, self.num_joints), np.float32)
        self.joint_target = np.zeros((n, self.num_joints), np.float32)  # what the robot was last told
        self.step_count = np.zeros(n, np.int64)
        self.limit = np.zeros(n, np.int64)  # H per row
        self.seeds = np.zeros(n, np.int64)
        self.started = np.zeros(n, bool)
        self.ended = np.zeros(n, bool)
        self.success = np.zeros(n, bool)
        self.instruction_embedding = torch.zeros(n, INSTRUCTION_DIM)
        self.starts: list[DemoStart | None] = [None] * n
        self.references = np.zeros((n, 1, self.num_joints), np.float32)  # per row: clipped ref, padded
        self.generators = [torch.Generator(device=self.device) for _ in range(n)]
        self._embeddings: dict[str, torch.Tensor] = {}
        self.profile = StepProfile()
        # Episode records, (n, L(+1), ...) with L the longest horizon of a running row (grown at reset).
        self._allocate_records(1)
        self.finished: list[EpisodeRecord | None] = [None] * n  # each row's last ended episode (a copy)
        self.provenance = {"world_model": _describe(world_model, config), "reward_model": repr(reward_model)}

    @classmethod
    def from_config(cls, config: PsiW0RetargetConfig, num_envs: int = 1) -> PsiW0RetargetCore:
        """A core for ``config``, its names resolved once here (the edge): the world model by
        `load_world_model` (``device``, ``world_model_dtype``), the reward model by
        `resolve_reward_model` (with ``estimator``), the demos by `load_demo_set`. Objects in the
        config are used as they are (a `WorldModel` is put in eval mode; any other `WorldStepper`,
        e.g. a wrapper around W0, is stepped as it is)."""
        world_model = config.world_model
        if isinstance(world_model, WorldModel) or not isinstance(world_model, WorldStepper):
            world_model = load_world_model(world_model, config.device, config.world_model_dtype)
        reward_model = resolve_reward_model(config.reward_model, config.estimator)
        demos = load_demo_set(config.demos, config.successful_demos_only)
        return cls(config, world_model, reward_model, demos, num_envs)

    # ----------------------------------------------------------------------------- reset
    def reset(self, rows: np.ndarray, rngs: list[np.random.Generator], demos: list[Any],
              horizons: list[int | None] | None = None, object_shifts: Any = None) -> None:
        """Start a new episode in each of ``rows``: demo ``demos[j]`` (see `select_demo`) drawn
        with ``rngs[j]``, which also seeds the row's world-model noise. ``horizons[j]``, if given
        and not None, caps the row's horizon H (the single env passes the step limit of a
        Gymnasium ``TimeLimit`` wrapper around it). ``object_shifts`` (len(rows), 2), if given:
        the world model's reading of each row's object start moved by that much (metres along x
        and y, `WorldState.shift_object`): the episode plays as if W0 had seen the object there.

        Every demo is chosen (and its instruction embedded) before any row changes, so a bad
        choice leaves all rows as they were.
        """
        horizons = [None] * len(rows) if horizons is None else list(horizons)
        shifts = self.check_object_shifts(object_shifts, len(rows))
        chosen = []
        for rng, choice, horizon in zip(rngs, demos, horizons, strict=True):
            start = select_demo(self.demos, choice, rng, self.config.successful_demos_only)
            seed = int(rng.integers(0, 2**63 - 1))
            limit = self.config.max_episode_steps or start.context.num_steps + self.config.episode_slack
            if horizon is not None:
                limit = min(limit, int(horizon))
            chosen.append((start, seed, int(limit), self._embedding(start.context.instruction)))
        first_frames = np.stack([resize_frame(start.first_frame, self.image_size) for start, _, _, _ in chosen])
        start_states = np.stack([np.clip(start.start_state, self.joint_low, self.joint_high) for start, _, _, _ in chosen])
        first_frames = self.start_rows(np.asarray(rows, np.int64), [start for start, _, _, _ in chosen], first_frames)
        initial = self.world_model.initial_state(first_frames, start_states)  # W0 reads the object off the frame
        if shifts is not None:
            initial = initial.shift_object(shifts)
        longest = max(limit for _, _, limit, _ in chosen)
        if longest > self.record_length:  # the other rows' episodes fit already: they are kept
            self._allocate_records(longest)
        self.world_state.assign(rows, initial)
        start_object = _poses(initial)
        for j, (row, (start, seed, limit, embedding)) in enumerate(zip(rows, chosen)):
            if self.started[row] and self.ended[row]:
                self.finished[row] = self._record(row, copy=True)
            first_frame, start_state = first_frames[j], start_states[j]
            self.generators[row].manual_seed(seed)
            self.seeds[row] = seed
            self.starts[row] = start
            self.history[row] = first_frame
            self.state[row] = start_state
            self.joint_target[row] = start_state  # the robot holds its start joints
            self.step_count[row] = 0
            self.limit[row] = limit
            self.instruction_embedding[row] = embedding
            self.started[row] = True
            self.ended[row] = False
            self.success[row] = False
            self.record_frames[row, 0] = first_frame
            self.record_state[row, 0] = start_state
            self.record_object[row, 0] = start_object[j]  # where W0 sees the object
        self._stack_references()

    def check_object_shifts(self, object_shifts: Any, rows: int) -> np.ndarray | None:
        """``object_shifts`` as a (rows, 2) float32 array (None stays None), or a ValueError that
        says what was expected."""
        if object_shifts is None:
            return None
        shifts = np.asarray(object_shifts, dtype=np.float64)
        if shifts.shape != (rows, 2) or not np.isfinite(shifts).all():
            raise ValueError(f"object_shift must be finite metres along x and y, shape ({rows}, 2) for {rows} reset "
                             f"row(s) (or (2,) for all of them), got shape {shifts.shape}"
                             + ("" if np.isfinite(shifts).all() else " with NaN/inf"))
        return shifts.astype(np.float32)

    def start_rows(self, rows: np.ndarray, starts: list[DemoStart], first_frames: np.ndarray) -> np.ndarray:
        """Called by `reset` once the demos of ``rows`` are chosen and before the stepper reads
        their start (``initial_state``): the first frames (n, H, W, 3) uint8 the episodes start
        from. W0 starts from the demos' recorded frames as they are; a stepper with state of its
        own per row (the simulator twin) is put at ``starts`` here and answers with its frames."""
        return first_frames

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

    def _allocate_records(self, length: int) -> None:
        """(Re)allocate the per-row records for episodes of up to ``length`` steps, keeping what they hold."""
        n, size, joints = self.num_envs, self.image_size, self.num_joints
        old = getattr(self, "record_frames", None)
        frames = np.zeros((n, length + 1, size, size, 3), np.uint8)
        state = np.zeros((n, length + 1, joints), np.float32)
        actions = np.zeros((n, length, joints), np.float32)
        targets = np.zeros((n, length, joints), np.float32)
        object_pose = np.zeros((n, length + 1, 7), np.float32)
        object_pose[..., 3:] = IDENTITY_QUATERNION
        if old is not None:
            kept = self.record_length
            frames[:, : kept + 1] = self.record_frames
            state[:, : kept + 1] = self.record_state
            actions[:, :kept] = self.record_actions
            targets[:, :kept] = self.record_targets
            object_pose[:, : kept + 1] = self.record_object
        self.record_frames, self.record_state, self.record_object = frames, state, object_pose
        self.record_actions, self.record_targets = actions, targets
        self.record_length = length

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
        """Advance ``rows`` (running episodes) by one step with checked ``actions`` (n, 22).

        All or nothing: if the world model or the reward model raises (or returns something
        `as_reward_output` refuses), the rows are left exactly as they were, noise generators
        included.
        """
        if len(rows) == 0:
            empty = np.zeros(0, np.float32)
            return StepResult(empty, empty.astype(bool), empty.astype(bool), {})
        rows = np.asarray(rows, dtype=np.int64)
        targets = self.joint_targets(rows, actions).astype(np.float32)
        taken = self.step_count[rows]
        steps = taken + 1
        last = steps >= self.limit[rows]
        generators = [self.generators[row] for row in rows]
        generator_states = [generator.get_state() for generator in generators]
        try:
            start = time.perf_counter()
            K = self.num_context_frames
            prediction = self.world_model.predict(
                self.history[rows, -K:],
                self.state[rows],
                targets,
                self.instruction_embedding[rows],
                generator=generators,  # per-row noise: batching changes nothing
                num_inference_steps=self.config.num_inference_steps,
                output_type="np",
                world_state=self.world_state.select(rows),
            )
            middle = time.perf_counter()
            frames = np.asarray(prediction.frames, dtype=np.uint8)
            state = np.clip(np.asarray(prediction.state, dtype=np.float32), self.joint_low, self.joint_high)
            object_position = (np.full((len(rows), 3), np.nan, np.float32) if prediction.object_position is None
                               else np.asarray(prediction.object_position, dtype=np.float32))
            batch = RewardInput(  # copies: whatever the reward model does to them, the env keeps its own
                frames=frames.copy(),
                state=state.copy(),
                action=actions.copy(),
                target=targets.copy(),
                step=steps.copy(),
                object_position=object_position.copy(),
                episodes=[self.starts[row].context for row in rows],
                last=last.copy(),
                object_path=self._object_path(rows, steps, object_position),
            )
            output = as_reward_output(self.reward_model(batch), len(rows), source=f"reward model {self.reward_model!r}")
        except BaseException:
            for generator, generator_state in zip(generators, generator_states):
                generator.set_state(generator_state)
            raise
        end = time.perf_counter()

        failed = output.terminated if output.terminated is not None else np.zeros(len(rows), bool)
        verdict = output.success if output.success is not None else np.zeros(len(rows), bool)
        success = last & verdict & ~failed  # judged at the end only; an early failure never succeeds
        terminated = last | failed
        truncated = np.zeros(len(rows), bool)

        # Commit.
        self.world_state.assign(rows, prediction.world_state)
        self.history[rows, :-1] = self.history[rows, 1:]
        self.history[rows, -1] = frames
        self.state[rows] = state
        self.joint_target[rows] = targets
        self.step_count[rows] = steps
        self.success[rows] = success
        self.ended[rows] = terminated
        self.record_actions[rows, taken] = actions
        self.record_targets[rows, taken] = targets
        self.record_frames[rows, steps] = frames
        self.record_state[rows, steps] = state
        self.record_object[rows, steps] = _poses(prediction.world_state)
        self.profile.world_model_s += middle - start
        self.profile.reward_model_s += end - middle
        self.profile.steps += 1
        self.profile.env_steps += len(rows)
        return StepResult(output.reward, terminated, truncated, output.info)

    def _object_path(self, rows: np.ndarray, steps: np.ndarray, object_position: np.ndarray) -> np.ndarray:
        """(n, L+1, 3) the object's path of ``rows`` up to this step (``object_position`` after
        ``steps``), NaN past it: `RewardInput.object_path`."""
        path = self.record_object[rows, :, :3].copy()
        path[np.arange(len(rows)), steps] = object_position
        path[np.arange(path.shape[1])[None, :] > steps[:, None]] = np.nan
        path[~np.isfinite(object_position).all(axis=1)] = np.nan  # a world model that predicts no object
        return path

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
            "progress": np.array([min(self.step_count[row] / self.limit[row], 1.0)], np.float32),
        }

    def info(self, row: int) -> dict[str, Any]:
        """Row ``row``'s info, numbers only (TorchRL and vector envs batch every info value; text
        would break them; the text is in `context`): ``task_index`` (into `TASK_NAMES`),
        ``demo_index``, ``step``, ``success`` (the verdict, False before the end),
        ``joint_targets`` (the joint targets of the last step; after a reset the start joints,
        which the robot holds)."""
        context = self.starts[row].context
        return {
            "task_index": TASK_NAMES.index(context.task) if context.task in TASK_NAMES else -1,
            "demo_index": int(context.demo_index),
            "step": int(self.step_count[row]),
            "success": bool(self.success[row]),
            "joint_targets": self.joint_target[row].copy(),
        }

    def context(self, row: int) -> EpisodeContext:
        """What row ``row``'s episode is about: task, instruction, scene, the demo's reference
        and object trajectory, its id and index (`psi_gym.rewards.EpisodeContext`)."""
        if not self.started[row]:
            raise ResetNeeded("call reset() first: no episode has started")
        return self.starts[row].context

    def frame(self, row: int) -> np.ndarray:
        """Row ``row``'s latest (predicted) frame, (H, W, 3) uint8."""
        return self.history[row, -1].copy()

    # --------------------------------------------------------------------------- episodes
    def _record(self, row: int, copy: bool = False) -> EpisodeRecord:
        t = int(self.step_count[row])
        take = (lambda array: array.copy()) if copy else (lambda array: array)
        return EpisodeRecord(
            start=self.starts[row],
            seed=int(self.seeds[row]),
            horizon=int(self.limit[row]),
            frames=take(self.record_frames[row, : t + 1]),
            state=take(self.record_state[row, : t + 1]),
            actions=take(self.record_actions[row, :t]),
            targets=take(self.record_targets[row, :t]),
            object_pose=take(self.record_object[row, : t + 1]),
            ended=bool(self.ended[row]),
            success=bool(self.success[row]),
        )

    def episode(self, row: int, finished: bool = False) -> Episode:
        """Row ``row``'s episode as an `Episode` (``source="generated"``, ``embodiment="robot"``).

        Args:
            row: the row.
            finished: False: the row's current episode, running (``success`` False so far) or
                ended; True: its latest ended episode (the current one if it has ended, else the
                one before the last reset: what an autoreset replaced).

        The episode holds ``frames`` (t+1: the demo's real first frame, then W0's predictions),
        ``state`` (W0's joint states), ``action`` (the absolute joint targets applied, what
        `psi_gym.sim.replay.replay_targets` replays from ``state[0]`` in ``scene``),
        ``object_pose`` (the object pose W0 tracks: row 0 read off the first frame, then predicted),
        ``success`` (the env's verdict), ``scene`` (the demo's),
        ``parent`` (the demo id) and ``metadata``: ``demo_id``, ``demo_index``,
        ``policy_actions`` (the policy's actions in [-1, 1]), ``action_mode``, ``residual_gain``,
        ``reference`` and ``human_object_pose`` (the demo's: the episode is itself a demo the env
        can start from), ``world_model`` and ``reward_model`` (what made it), ``seed`` (of W0's
        noise), ``horizon``, ``ended``.

        Raises:
            ValueError: no such row, a row never reset, or no ended episode yet (``finished``).
        """
        if isinstance(row, (bool, np.bool_)) or not isinstance(row, (int, np.integer)) or not 0 <= row < self.num_envs:
            raise ValueError(f"row must be an int in [0, {self.num_envs}), got {row!r}")
        if not self.started[row]:
            raise ValueError(f"row {row} has no episode: call reset() first")
        if finished and not self.ended[row]:
            record = self.finished[row]
            if record is None:
                raise ValueError(f"row {row} has not finished an episode yet")
        else:
            record = self._record(int(row), copy=True)
        context = record.start.context
        return Episode(
            task=context.task,
            instruction=context.instruction,
            embodiment="robot",
            frames=record.frames,
            state=record.state,
            action=record.targets,
            object_pose=record.object_pose,
            success=record.success,
            scene=context.scene.to_dict(),
            seed=record.seed,
            source="generated",
            parent=context.demo_id,
            metadata={
                "demo_id": context.demo_id,
                "demo_index": int(context.demo_index),
                "policy_actions": record.actions.tolist(),
                "action_mode": self.config.action_mode,
                "residual_gain": float(self.config.residual_gain),
                "reference": np.asarray(context.reference).tolist(),
                "human_object_pose": np.asarray(context.human_object_pose).tolist(),
                **self.provenance,
                "seed": record.seed,
                "horizon": record.horizon,
                "ended": record.ended,
            },
        ).validate()


def _describe(world_model: WorldStepper, config: PsiW0RetargetConfig) -> str:
    """What stepped an episode, for its metadata."""
    if not isinstance(world_model, WorldModel):
        return repr(world_model)
    parameters = sum(p.numel() for p in world_model.parameters())
    source = config.world_model if isinstance(config.world_model, str) else None
    source = source or world_model.config.get("_name_or_path") or "a WorldModel object"
    return f"WorldModel({source}; {parameters} parameters, {str(world_model.dtype).removeprefix('torch.')})"


def _poses(state: WorldState) -> np.ndarray:
    """(B, 7) float32 object position + quaternion (w, x, y, z) of a world state."""
    quaternion = matrix_to_quaternion(state.object_rotation.float())
    return torch.cat([state.object_position.float(), quaternion], dim=-1).cpu().numpy().astype(np.float32)

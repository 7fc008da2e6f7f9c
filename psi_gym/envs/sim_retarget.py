"""PsiSim-Retarget-v0: the same task as PsiW0-Retarget-v0, stepped in the ground-truth simulator."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from psi_gym.data.episode import Episode
from psi_gym.envs.demo_set import DemoSet, load_demo_set
from psi_gym.envs.psi_w0_retarget import PsiW0RetargetEnv
from psi_gym.envs.psi_w0_retarget_core import PsiW0RetargetConfig, PsiW0RetargetCore
from psi_gym.envs.psi_w0_retarget_vector import PsiW0RetargetVectorEnv
from psi_gym.rewards.base import RewardInput, RewardModel, RewardOutput, as_reward_output
from psi_gym.rewards.resolve import resolve_reward_model
from psi_gym.rewards.state_tracking import StateTrackingReward
from psi_gym.sim.world import SimulationUnstable, World
from psi_gym.world_model.model import WorldModelOutput
from psi_gym.world_model.world_state import WorldState, object_descriptor, quaternion_to_matrix

ROLES = ("robot", "judge")
STATE_REWARDS = ("object_tracking", "state_tracking")  # the same rule: read off the true state
UNSTABLE_POSITION = np.array([0.0, 0.0, -1.0], np.float32)  # below the table: outside the workspace


class SimVerdict:
    """Another reward model, run on the simulator's true frames, with its verdict replaced by the
    simulator's (`Task.is_success` on the true object position at the last step)."""

    def __init__(self, reward_model: RewardModel) -> None:
        self.reward_model = reward_model

    def __call__(self, batch: RewardInput) -> RewardOutput:
        output = as_reward_output(self.reward_model(batch), len(batch), source=f"reward model {self.reward_model!r}")
        truth = StateTrackingReward()(batch).success
        return RewardOutput(reward=output.reward, success=truth, terminated=output.terminated, info=output.info)

    def __repr__(self) -> str:
        return f"SimVerdict({self.reward_model!r})"


class SimulatorStepper:
    """A `psi_gym.envs.psi_w0_retarget_core.WorldStepper` answered by the ground truth: one MuJoCo
    `World` per row instead of W0's prediction.

    The core tells it which rows each call is for (`SimRetargetCore`): `start` puts the rows being
    reset at their demos' starts (before the core asks for their ``initial_state``), and ``rows``
    names the rows a ``predict`` steps. Its `WorldState` is the simulator's true state: the joints
    and the object's pose (position and orientation) after every step, the kind and size of the
    scene's object."""

    num_context_frames = 1

    def __init__(self, num_envs: int, image_size: int) -> None:
        self.image_size = int(image_size)
        self.device = torch.device("cpu")
        self.rows = np.zeros(0, np.int64)
        self._worlds: list[dict[str, World]] = [{} for _ in range(num_envs)]
        self.current: list[World | None] = [None] * num_envs
        self.unstable = np.zeros(num_envs, bool)

    def start(self, rows: np.ndarray, starts: list[Any]) -> np.ndarray:
        """Put each of ``rows`` at the start of its demo (`DemoStart`); their first frames (n, H, W, 3)."""
        self.rows = np.asarray(rows, np.int64)
        frames = []
        for row, start in zip(self.rows, starts, strict=True):
            scene = start.context.scene
            worlds = self._worlds[row]
            if scene.object_kind not in worlds:  # one world per row: rows step independently
                worlds[scene.object_kind] = World("robot", scene.object_kind, self.image_size)
            world = worlds[scene.object_kind]
            world.reset(scene, np.asarray(start.start_state, np.float64))
            self.current[row] = world
            self.unstable[row] = False
            frames.append(world.render())
        return np.stack(frames)

    def initial_state(self, frames: np.ndarray, joint_state: np.ndarray) -> WorldState:
        """The true start state of the rows `start` just reset (``frames`` become the scene frames)."""
        if len(frames) != len(self.rows) or len(joint_state) != len(self.rows):
            raise ValueError(f"initial_state is for the {len(self.rows)} rows `start` reset, got {len(frames)} frames "
                             f"and {len(joint_state)} joint states")
        joints = torch.from_numpy(np.stack([self.current[row].joint_positions() for row in self.rows]))
        poses = np.stack([self.current[row].object_pose() for row in self.rows])
        position = torch.from_numpy(poses[:, :3].copy())
        rotation = quaternion_to_matrix(poses[:, 3:])
        descriptor = torch.from_numpy(np.stack([object_descriptor(self.current[row].scene.to_dict()) for row in self.rows]))
        return WorldState(joint_state=joints, previous_joint_state=joints.clone(), previous_joint_target=joints.clone(),
                          object_position=position,
                          previous_object_position=position.clone(), object_rotation=rotation,
                          previous_object_rotation=rotation.clone(), object_descriptor=descriptor,
                          scene_frame=torch.as_tensor(np.asarray(frames, np.uint8)).clone())

    def predict(self, context_frames: np.ndarray, context_state: np.ndarray, action: np.ndarray, instruction: Any,
                generator: Any = None, num_inference_steps: int | None = None, output_type: str | None = None,
                world_state: WorldState | None = None) -> WorldModelOutput:
        """Step each of ``self.rows`` to its absolute joint target ``action[j]``; the true frames,
        joints, object positions and the true next `WorldState` (``world_state``: the rows' current
        one, which becomes the previous)."""
        if world_state is None or len(world_state) != len(self.rows) or len(action) != len(self.rows):
            raise ValueError(f"predict steps the {len(self.rows)} rows the core named, with their world_state")
        frames, joints, poses = [], [], []
        for j, row in enumerate(self.rows):
            world = self.current[row]
            if not self.unstable[row]:
                try:
                    world.step(action[j])
                except SimulationUnstable:
                    self.unstable[row] = True  # a failure: frozen, the object reported out of the workspace
            frames.append(world.render())
            joints.append(world.joint_positions())
            pose = world.object_pose().copy()
            if self.unstable[row]:
                pose[:3] = UNSTABLE_POSITION
            poses.append(pose)
        poses_array = np.stack(poses).astype(np.float32)
        joint_state = torch.from_numpy(np.stack(joints).astype(np.float32))
        position = torch.from_numpy(poses_array[:, :3].copy())
        state = WorldState(joint_state=joint_state, previous_joint_state=world_state.joint_state.clone(),
                           previous_joint_target=torch.as_tensor(np.asarray(action, np.float32)).clone(),
                           object_position=position, previous_object_position=world_state.object_position.clone(),
                           object_rotation=quaternion_to_matrix(poses_array[:, 3:]),
                           previous_object_rotation=world_state.object_rotation.clone(),
                           object_descriptor=world_state.object_descriptor.clone(),
                           scene_frame=world_state.scene_frame.clone())
        return WorldModelOutput(frames=np.stack(frames), state=joint_state.numpy().copy(),
                                object_position=poses_array[:, :3].copy(), world_state=state)

    def object_pose(self, row: int) -> np.ndarray:
        return self.current[row].object_pose()

    def __repr__(self) -> str:
        return "MuJoCo simulator (ground truth)"


class SimRetargetCore(PsiW0RetargetCore):
    """`PsiW0RetargetCore` (every rule of the env: actions, observations, horizon, records) with the
    simulator in place of the world model: its stepper is a `SimulatorStepper`, told which rows a
    reset (`start_rows`) or a step is for. ``role`` ("robot" or "judge") is recorded in every
    episode's metadata.
    """

    def __init__(self, config: PsiW0RetargetConfig, reward_model: RewardModel, demos: DemoSet, num_envs: int = 1,
                 role: str = "judge", image_size: int = 64) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES} (the robot: a deployment budget whose episodes may train; "
                             f"the judge: evaluation only), got {role!r}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        super().__init__(config, SimulatorStepper(int(num_envs), image_size), reward_model, demos, num_envs)
        self.role = role
        self.provenance = {"world_model": repr(self.world_model), "reward_model": repr(reward_model), "role": role}

    @classmethod
    def from_config(cls, config: PsiW0RetargetConfig, num_envs: int = 1, role: str = "judge",
                    image_size: int = 64) -> SimRetargetCore:
        """Names resolved once, here: the reward model (``"object_tracking"``, the default, and
        ``"state_tracking"`` are `StateTrackingReward`: the same rule on the true state; any other is
        run on the true frames under `SimVerdict`) and the demos."""
        if isinstance(config.reward_model, str) and config.reward_model in STATE_REWARDS:
            reward_model: RewardModel = StateTrackingReward()
        else:
            reward_model = SimVerdict(resolve_reward_model(config.reward_model, config.estimator))
        demos = load_demo_set(config.demos, config.successful_demos_only)
        return cls(config, reward_model, demos, num_envs, role, image_size)

    def check_object_shifts(self, object_shifts: Any, rows: int) -> np.ndarray | None:
        if object_shifts is not None:
            raise ValueError("object_shift moves a world model's reading of the object's start; the simulator's object "
                             "is where its scene puts it (reset PsiSim-Retarget without object_shift)")
        return None

    def start_rows(self, rows: np.ndarray, starts: list[Any], first_frames: np.ndarray) -> np.ndarray:
        # the simulator's own first frames (the demos' recorded ones, rendered again from the same state)
        return self.world_model.start(rows, starts)

    def step(self, rows: np.ndarray, actions: np.ndarray):
        self.world_model.rows = np.asarray(rows, np.int64)
        return super().step(rows, actions)

    def episode(self, row: int, finished: bool = False) -> Episode:
        episode = super().episode(row, finished)
        episode.metadata["role"] = self.role
        return episode


class PsiSimRetargetEnv(PsiW0RetargetEnv):
    """
    ## Description

    PsiW0-Retarget-v0 with the ground-truth MuJoCo world in place of Psi-W0: the same observation
    and action spaces (`PsiW0RetargetConfig`, `PsiW0RetargetCore`'s spaces), the same residual rule
    (`psi_gym.sim.hands.residual_joint_targets`), the same horizon ``H = T + episode_slack`` and the
    same verdict (`Task.is_success` on the object's pose after the last step), but true frames,
    joints and object poses. See `PsiW0RetargetEnv` for the spaces table.

    It plays one of two roles, fixed when it is made and recorded in every episode's metadata
    (``env.episode().metadata["role"]``):

    * ``role="robot"``: the robot of a deployment budget: its episodes, successes and failures
      with their true frames, may train W0 and R2, as real rollouts would;
    * ``role="judge"`` (default): evaluation only — the closed-loop success of a policy on held-out
      demos. Nothing that trains or refines may read it (the refiners refuse a judge).

    ## Rewards

    ``reward_model="object_tracking"`` (the default) or ``"state_tracking"`` is `StateTrackingReward`:
    the default W0 reward's rule, ``exp(-|p - q| / 0.02 m)`` per step + 10 on a successful last
    step, with ``p`` the object's *true* position (no estimator). Any other reward model runs on the true frames, its verdict
    replaced by the simulator's (`SimVerdict`).

    ## Episode End

    As PsiW0-Retarget-v0: every episode lasts ``H`` steps; the last returns ``terminated=True`` and
    ``info["success"]`` = the simulator's verdict. A run that goes unstable in MuJoCo freezes and
    fails.

    ## Arguments

    Every keyword of `PsiW0RetargetConfig` (``world_model``, ``world_model_dtype``,
    ``num_inference_steps`` and ``device`` are unused), plus ``role`` and ``image_size`` (64)::

        judge = gym.make("PsiSim-Retarget-v0", demos="runs/heldout", role="judge")
        robot = gym.make_vec("PsiSim-Retarget-v0", num_envs=8, role="robot")

    ## Version History

    * v0: initial version.
    """

    def __init__(self, render_mode: str | None = None, config: PsiW0RetargetConfig | None = None,
                 role: str = "judge", image_size: int = 64, **options: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.config = PsiW0RetargetConfig.from_kwargs(config, **options)
        self.core = SimRetargetCore.from_config(self.config, num_envs=1, role=role, image_size=image_size)
        self.role = role
        self.observation_space = self.core.single_observation_space
        self.action_space = self.core.single_action_space
        self._row = np.zeros(1, np.int64)


class PsiSimRetargetVectorEnv(PsiW0RetargetVectorEnv):
    """N copies of `PsiSimRetargetEnv` (one MuJoCo world per sub-env), the same API as
    `PsiW0RetargetVectorEnv`: ``gym.make_vec("PsiSim-Retarget-v0", num_envs=N, role=...)``."""

    def __init__(self, num_envs: int = 1, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 render_mode: str | None = None, config: PsiW0RetargetConfig | None = None,
                 role: str = "judge", image_size: int = 64, **options: Any) -> None:
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(f"autoreset_mode must be one of {[m.value for m in AutoresetMode]} "
                             f"(gymnasium.vector.AutoresetMode), got {autoreset_mode!r}") from None
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.config = PsiW0RetargetConfig.from_kwargs(config, **options)
        self.core = SimRetargetCore.from_config(self.config, num_envs=num_envs, role=role, image_size=image_size)
        self.role = role
        self.num_envs = self.core.num_envs
        self.autoreset_mode = autoreset_mode
        self.metadata = {**self.metadata, "autoreset_mode": autoreset_mode}
        self.render_mode = render_mode
        self.single_observation_space = self.core.single_observation_space
        self.single_action_space = self.core.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._rngs = [seeding.np_random(None)[0] for _ in range(self.num_envs)]
        self._autoreset = np.zeros(self.num_envs, bool)


def is_judge(env: Any) -> bool:
    """Whether ``env`` (or what it wraps) is the simulator in its judge role (evaluation only)."""
    unwrapped = getattr(env, "unwrapped", env)
    return getattr(getattr(unwrapped, "core", None), "role", None) == "judge"


__all__ = ["PsiSimRetargetEnv", "PsiSimRetargetVectorEnv", "SimRetargetCore", "SimVerdict",
           "SimulatorStepper", "is_judge"]

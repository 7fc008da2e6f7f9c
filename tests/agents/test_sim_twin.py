"""PsiSim-Retarget-v0: the W0 env's contract (spaces, horizon, verdict) stepped in MuJoCo, its role recorded."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import psi_gym  # noqa: F401
from psi_gym.envs.sim_retarget import is_judge
from psi_gym.sim.hands import hand_spec
from psi_gym.sim.replay import replay_targets
from psi_gym.sim.scene import SceneParams
from psi_gym.sim.verify import verify
from psi_gym.sim.world import get_world


def test_same_spaces_as_the_w0_env():
    sim = gym.make("PsiSim-Retarget-v0", role="robot")
    w0 = gym.make("PsiW0-Retarget-v0", world_model="random:debug", estimator="random")
    assert sim.observation_space == w0.observation_space and sim.action_space == w0.action_space
    assert not is_judge(sim) and is_judge(gym.make("PsiSim-Retarget-v0"))  # the judge is the default role
    check_env(sim.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("role", ["robot", "judge"])
def test_an_episode_lasts_the_horizon_and_is_judged_by_the_sim(role):
    env = gym.make("PsiSim-Retarget-v0", role=role)
    obs, info = env.reset(seed=0, options={"demo": 1})
    rng = np.random.default_rng(0)
    steps, terminated = 0, False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-0.3, 0.3, 22).astype(np.float32))
        steps += 1
        assert not truncated
    episode = env.unwrapped.episode()
    assert steps == episode.num_steps == 40 and obs["progress"][0] == 1.0
    assert episode.metadata["role"] == role and episode.source == "generated"
    assert info["success"] == episode.success == verify(episode).success
    # the twin records the simulator's true state: the same object poses as a replay of its joint targets
    scene = SceneParams.from_dict(episode.scene)
    replay = replay_targets(get_world("robot", scene.object_kind), scene, episode.action, start_qpos=episode.state[0],
                            render=False)
    np.testing.assert_allclose(episode.object_pose[:, :3], replay.object_pose[:, :3], atol=1e-6)
    sign = np.where(replay.object_pose[:, 3:4] < 0, -1.0, 1.0)  # the twin writes quaternions with w >= 0
    np.testing.assert_allclose(episode.object_pose[:, 3:], sign * replay.object_pose[:, 3:], atol=1e-4)
    ranges = hand_spec("robot").joint_ranges()
    np.testing.assert_allclose(episode.state, np.clip(replay.state, ranges[:, 0], ranges[:, 1]), atol=1e-6)  # as the env clips


def test_the_simulator_stepper_is_a_world_stepper_with_the_true_state():
    from psi_gym.envs.psi_w0_retarget_core import WorldStepper
    from psi_gym.envs.sim_retarget import SimulatorStepper
    from psi_gym.world_model.world_state import object_descriptor

    env = gym.make("PsiSim-Retarget-v0", role="robot")
    core = env.unwrapped.core
    assert isinstance(core.world_model, SimulatorStepper) and isinstance(core.world_model, WorldStepper)
    env.reset(seed=0, options={"demo": 5})
    context = core.starts[0].context
    state = core.world_state
    world = core.world_model.current[0]
    np.testing.assert_allclose(state.object_position[0].numpy(), world.object_pose()[:3], atol=1e-6)
    np.testing.assert_allclose(state.object_descriptor[0].numpy(), object_descriptor(context.scene.to_dict()))
    np.testing.assert_array_equal(state.scene_frame[0].numpy(), env.unwrapped.core.frame(0))  # the sim's own frame
    before = state.object_rotation[0].clone()
    np.testing.assert_array_equal(state.previous_joint_target[0].numpy(), state.joint_state[0].numpy())  # at rest
    env.step(np.zeros(22, np.float32))
    after = core.world_state
    np.testing.assert_array_equal(after.previous_object_rotation[0].numpy(), before.numpy())
    np.testing.assert_allclose(after.previous_joint_target[0].numpy(), env.unwrapped.episode().action[-1])  # commanded
    rotation = after.object_rotation[0].numpy()
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(after.object_position[0].numpy(), world.object_pose()[:3], atol=1e-6)


def test_the_core_refuses_what_is_no_world_stepper():
    from psi_gym.envs.demo_set import load_demo_set
    from psi_gym.envs.psi_w0_retarget_core import PsiW0RetargetConfig, PsiW0RetargetCore

    with pytest.raises(TypeError, match="world_model must be a WorldModel or another WorldStepper"):
        PsiW0RetargetCore(PsiW0RetargetConfig(), object(), lambda batch: np.zeros(len(batch)), load_demo_set("default"))


def test_unknown_role_is_refused():
    with pytest.raises(ValueError, match="role"):
        gym.make("PsiSim-Retarget-v0", role="teacher")

"""Adapters: Stable-Baselines3 VecEnv over the native vector env; TorchRL GymWrapper specs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from psi_gym.envs.sb3 import SB3VecEnv

from .helpers import SucceedAt

ENV_ID = "PsiW0-Retarget-v0"


@pytest.mark.parametrize("mode", [AutoresetMode.DISABLED, AutoresetMode.SAME_STEP])
def test_sb3_vec_env_autoresets_the_sb3_way(env_kwargs, mode):
    envs = SB3VecEnv(gym.make_vec(ENV_ID, num_envs=2, max_episode_steps=2, autoreset_mode=mode, **env_kwargs))
    assert envs.num_envs == 2 and envs.observation_space["pixels"].shape == (64, 64, 3)
    envs.seed(3)
    obs = envs.reset()
    assert obs["agent_pos"].shape == (2, 22) and envs.reset_infos[0]["step"] == 0
    actions = np.zeros((2, 22), np.float32)
    envs.step_async(actions)
    obs, rewards, dones, infos = envs.step_wait()
    assert not dones.any() and rewards.dtype == np.float32 and infos[0]["step"] == 1
    before_end = obs
    obs, rewards, dones, infos = envs.step(actions)
    assert dones.all() and len(infos) == 2
    for i in range(2):
        assert infos[i]["TimeLimit.truncated"] is True and infos[i]["step"] == 2
        terminal = infos[i]["terminal_observation"]
        assert set(terminal) == set(obs) and not np.array_equal(terminal["pixels"], before_end["pixels"][i])
    assert envs.get_attr("num_envs") == [2, 2]
    # obs are the new episodes'
    assert envs.step(actions)[3][0]["step"] == 1


def test_sb3_vec_env_reports_termination(world_model_path):
    envs = SB3VecEnv(gym.make_vec(ENV_ID, num_envs=2, world_model=str(world_model_path), reward_model=SucceedAt(1),
                                  autoreset_mode=AutoresetMode.DISABLED))
    envs.reset()
    _, rewards, dones, infos = envs.step(np.zeros((2, 22), np.float32))
    assert dones.all() and (rewards == 1).all() and infos[0]["TimeLimit.truncated"] is False and infos[0]["success"]


def test_sb3_vec_env_refuses_next_step_autoreset(env_kwargs):
    with pytest.raises(ValueError, match="DISABLED or SAME_STEP"):
        SB3VecEnv(gym.make_vec(ENV_ID, num_envs=2, **env_kwargs))


def test_torchrl_check_env_specs_single_env(env_kwargs):
    from torchrl.envs import GymWrapper
    from torchrl.envs.utils import check_env_specs

    env = GymWrapper(gym.make(ENV_ID, **env_kwargs))
    assert set(env.observation_spec.keys()) == {"pixels", "agent_pos", "reference", "instruction"}
    check_env_specs(env, seed=0)


def test_torchrl_check_env_specs_vector_env(env_kwargs):
    from torchrl.envs import GymWrapper
    from torchrl.envs.utils import check_env_specs

    env = GymWrapper(gym.make_vec(ENV_ID, num_envs=3, max_episode_steps=2, autoreset_mode=AutoresetMode.DISABLED,
                                  **env_kwargs))
    assert tuple(env.batch_size) == (3,)
    check_env_specs(env, seed=0)
    rollout = env.rollout(5, break_when_any_done=False)  # TorchRL resets ended envs with reset_mask
    assert rollout["next", "truncated"].shape == (3, 5, 1)
    assert rollout["next", "truncated"][:, 1].all() and not rollout["next", "truncated"][:, 2].any()

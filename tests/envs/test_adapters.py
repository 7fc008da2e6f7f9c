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
        assert infos[i]["TimeLimit.truncated"] is False and infos[i]["step"] == 2  # the horizon: terminated
        terminal = infos[i]["terminal_observation"]
        assert set(terminal) == set(obs) and not np.array_equal(terminal["pixels"], before_end["pixels"][i])
    assert envs.get_attr("num_envs") == [2, 2]
    # obs are the new episodes'
    assert envs.step(actions)[3][0]["step"] == 1


def test_sb3_vec_env_reports_the_verdict(world_model_path):
    envs = SB3VecEnv(gym.make_vec(ENV_ID, num_envs=2, world_model=str(world_model_path), reward_model=SucceedAt(1),
                                  max_episode_steps=2, autoreset_mode=AutoresetMode.DISABLED))
    envs.reset()
    _, _, dones, infos = envs.step(np.zeros((2, 22), np.float32))
    assert not dones.any() and not infos[0]["success"]  # early success does not end the episode
    _, rewards, dones, infos = envs.step(np.zeros((2, 22), np.float32))
    assert dones.all() and (rewards == 1).all() and infos[0]["TimeLimit.truncated"] is False and infos[0]["success"]


def test_sb3_vec_env_builds_the_vector_env_it_needs(env_kwargs):
    envs = SB3VecEnv(ENV_ID, num_envs=2, max_episode_steps=2, **env_kwargs)
    assert envs.env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP and envs.num_envs == 2
    envs.reset()
    envs.step(np.zeros((2, 22), np.float32))
    _, _, dones, infos = envs.step(np.zeros((2, 22), np.float32))
    assert dones.all() and infos[1]["terminal_observation"]["progress"].tolist() == [1.0]
    assert SB3VecEnv(num_envs=1, autoreset_mode="Disabled", **env_kwargs).env.metadata["autoreset_mode"] == \
        AutoresetMode.DISABLED
    with pytest.raises(ValueError, match="SAME_STEP \\(the default\\) or DISABLED, got NextStep"):
        SB3VecEnv(ENV_ID, num_envs=2, autoreset_mode=AutoresetMode.NEXT_STEP, **env_kwargs)


def test_sb3_vec_env_refuses_a_built_next_step_env_and_says_how(env_kwargs):
    with pytest.raises(ValueError, match="SAME_STEP or DISABLED, got NextStep.*SB3VecEnv\\('PsiW0-Retarget-v0'"):
        SB3VecEnv(gym.make_vec(ENV_ID, num_envs=2, **env_kwargs))
    with pytest.raises(TypeError, match="only with an env id"):
        SB3VecEnv(gym.make_vec(ENV_ID, num_envs=2, autoreset_mode=AutoresetMode.SAME_STEP, **env_kwargs), num_envs=2)


def test_sb3_adapter_without_stable_baselines3_names_the_extra(monkeypatch):
    import importlib
    import sys

    for name in [name for name in sys.modules if name == "stable_baselines3" or name.startswith("stable_baselines3.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    monkeypatch.delitem(sys.modules, "psi_gym.envs.sb3", raising=False)
    with pytest.raises(ImportError, match='needs Stable-Baselines3, the "sb3" extra: pip install "psi_gym\\[sb3\\]"'):
        importlib.import_module("psi_gym.envs.sb3")


# ------------------------------------------------------------------------------ TorchRL
def test_torchrl_gym_env_single(env_kwargs):
    pytest.importorskip("torchrl")
    from torchrl.envs import GymEnv
    from torchrl.envs.utils import check_env_specs

    # GymEnv offers `frameskip`; told "unexpected keyword argument 'frameskip'", it skips frames itself
    env = GymEnv(ENV_ID, max_episode_steps=3, **env_kwargs)
    assert set(env.observation_spec.keys()) == {"pixels", "agent_pos", "reference", "instruction", "progress"}
    check_env_specs(env, seed=0)
    rollout = env.rollout(10)  # stops at the first done: the verdict step, H = 3 (gym.make's TimeLimit)
    assert rollout.batch_size == (3,) and rollout["next", "terminated"][:, 0].tolist() == [False, False, True]
    np.testing.assert_allclose(rollout["next", "progress"][:, 0].numpy(), [1 / 3, 2 / 3, 1.0], rtol=1e-6)
    env = GymEnv(ENV_ID, frame_skip=2, max_episode_steps=4, **env_kwargs)  # TorchRL's own frame skip
    assert env.rollout(10).batch_size == (2,)


def test_torchrl_gym_env_from_pixels(env_kwargs):
    pytest.importorskip("torchrl")
    from torchrl.envs import GymEnv
    from torchrl.envs.utils import check_env_specs

    env = GymEnv(ENV_ID, from_pixels=True, max_episode_steps=3, **env_kwargs)
    assert env.observation_spec["pixels"].shape == (64, 64, 3)
    check_env_specs(env, seed=0)
    rollout = env.rollout(3)
    assert rollout["next", "pixels"].shape == (3, 64, 64, 3) and rollout["next", "terminated"][-1].all()
    np.testing.assert_array_equal(rollout["next", "pixels"][-1].numpy(), env._env.unwrapped.core.frame(0))


# GymEnv(num_envs=N) runs N single envs in an AsyncVectorEnv whose workers TorchRL *spawns*: they
# know the env id because they import the user's script, which imports psi_gym (as every script
# that uses the env does). A pytest process cannot show that, so the test runs such a script.
# Each worker loads torch, diffusers and W0 (several seconds): 2 workers here; 4 work the same way.
TORCHRL_BATCHED_SCRIPT = """
import sys

import psi_gym  # registers the env; the workers TorchRL spawns import this script's top level too

if __name__ == "__main__":
    from torchrl.envs import GymEnv  # (inside main: the workers need not import TorchRL)
    from torchrl.envs.utils import check_env_specs

    env = GymEnv("PsiW0-Retarget-v0", num_envs=2, world_model=sys.argv[1], estimator=sys.argv[2], max_episode_steps=2)
    check_env_specs(env, seed=0)
    rollout = env.rollout(5, break_when_any_done=False)
    terminated = rollout["next", "terminated"][..., 0].int().tolist()
    print("RESULT", tuple(env.batch_size), terminated, sorted(rollout["next"].keys()))
    env.close()
"""


@pytest.mark.slow
def test_torchrl_gym_env_batched(tmp_path, world_model_path, estimator_path):
    pytest.importorskip("torchrl")
    import os
    import subprocess
    import sys

    script = tmp_path / "batched.py"
    script.write_text(TORCHRL_BATCHED_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(world_model_path), str(estimator_path)],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("RESULT")][-1]
    assert "(2,) [[0, 1, 0, 1, 0], [0, 1, 0, 1, 0]]" in line
    assert "'success'" in line and "'joint_targets'" in line  # numeric infos reach the tensordict


@pytest.mark.parametrize("mode", [AutoresetMode.DISABLED, AutoresetMode.SAME_STEP])
def test_torchrl_wraps_the_native_vector_env(env_kwargs, mode):
    pytest.importorskip("torchrl")
    from torchrl.envs import GymWrapper
    from torchrl.envs.utils import check_env_specs

    env = GymWrapper(gym.make_vec(ENV_ID, num_envs=3, max_episode_steps=2, autoreset_mode=mode, **env_kwargs))
    assert tuple(env.batch_size) == (3,)
    check_env_specs(env, seed=0)
    rollout = env.rollout(5, break_when_any_done=False)  # TorchRL resets ended envs
    assert rollout["next", "terminated"].shape == (3, 5, 1)
    assert rollout["next", "terminated"][..., 0].int().tolist() == [[0, 1, 0, 1, 0]] * 3

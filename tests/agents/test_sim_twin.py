"""PsiSim-Retarget-v0: the W0 env's contract (spaces, horizon, verdict) stepped in MuJoCo, its role recorded."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import psi_gym  # noqa: F401
from psi_gym.envs.sim_retarget import is_judge
from psi_gym.sim.verify import verify


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


def test_unknown_role_is_refused():
    with pytest.raises(ValueError, match="role"):
        gym.make("PsiSim-Retarget-v0", role="teacher")

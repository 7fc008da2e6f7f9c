"""One PPO iteration of R2 on the W0 vector env (untrained debug W0, random estimator)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from gymnasium.vector import AutoresetMode

import psi_gym  # noqa: F401
from psi_gym.agents.policy import PsiR2Policy, debug_policy_config
from psi_gym.agents.ppo import PPOConfig, ppo_refine


def test_one_ppo_iteration_on_the_vector_env(tiny_env_kwargs, tmp_path):
    envs = gym.make_vec("PsiW0-Retarget-v0", num_envs=2, max_episode_steps=3, autoreset_mode=AutoresetMode.DISABLED,
                        **tiny_env_kwargs)
    policy = PsiR2Policy.from_policy_config(debug_policy_config())
    before = {name: value.clone() for name, value in policy.state_dict().items()}
    summary = ppo_refine(envs, policy, PPOConfig(iterations=1, epochs=1, minibatch_size=3, checkpoint_every=1,
                                                 progress=False), out=tmp_path)
    assert summary.iterations == 1 and summary.frames == 2 * 3
    record = summary.history[0]
    assert record["episodes"] == 2 and set(record) >= {"w0_return", "w0_success", "loss_objective", "loss_critic"}
    assert any(not torch.equal(before[name], value) for name, value in policy.state_dict().items())
    assert (tmp_path / "final" / "config.json").is_file() and (tmp_path / "checkpoint-0001" / "config.json").is_file()
    assert PsiR2Policy.from_pretrained(tmp_path / "final").policy_config.architecture == "wan"


def test_ppo_refuses_the_judge():
    envs = gym.make_vec("PsiSim-Retarget-v0", num_envs=1, max_episode_steps=2, autoreset_mode=AutoresetMode.DISABLED,
                        role="judge")
    with pytest.raises(ValueError, match="judge"):
        ppo_refine(envs, PsiR2Policy.from_policy_config(debug_policy_config()), PPOConfig(iterations=1, progress=False))

"""Psi-R2's TorchRL modules: specs, deterministic deployment, save/load, the synergy action map."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from tensordict import TensorDict

import psi_gym  # noqa: F401
from psi_gym.agents.modules import make_actor, make_critic, make_torchrl_env
from psi_gym.agents.policy import (
    PsiR2Config,
    PsiR2Policy,
    debug_policy_config,
    joints_to_synergy,
    synergy_matrix,
)
from psi_gym.sim.residuals import residual_actions


def observation(batch: int, config: PsiR2Config) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    size = config.image_size
    return {
        "pixels": torch.randint(0, 255, (batch, size, size, 3 * config.frame_stack), dtype=torch.uint8, generator=generator),
        "agent_pos": torch.zeros(batch, 22),
        "reference": torch.rand(batch, 22 * config.reference_horizon, generator=generator) * 0.1,
        "instruction": torch.randn(batch, 384, generator=generator),
        "progress": torch.rand(batch, 1, generator=generator),
    }


@pytest.mark.parametrize("architecture", ["wan", "cnn"])
def test_actor_and_critic_specs(architecture):
    config = debug_policy_config(architecture=architecture)
    policy = PsiR2Policy.from_policy_config(config)
    actor, critic = make_actor(policy), make_critic(config)
    spec = actor.spec["action"]
    assert tuple(spec.shape) == (10,)
    assert (spec.space.low == -1).all() and (spec.space.high == 1).all()
    td = actor(TensorDict(observation(5, config), [5]))
    assert td["action"].shape == (5, 10) and td["action_log_prob"].shape == (5,)
    assert td["action"].abs().max() <= 1
    assert critic(td)["state_value"].shape == (5, 1)
    # leading (N, T) batch dims pass through
    td2 = actor(TensorDict({k: v.reshape(5, 1, *v.shape[1:]) for k, v in observation(5, config).items()}, [5, 1]))
    assert td2["action"].shape == (5, 1, 10)


def test_deterministic_mode_is_tanh_of_the_mean():
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    config = debug_policy_config()
    policy = PsiR2Policy.from_policy_config(config)
    torch.nn.init.normal_(policy.action_head.weight, std=0.5)
    actor = make_actor(policy)
    obs = observation(3, config)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        first = actor(TensorDict(obs, [3]))["action"]
        second = actor(TensorDict(obs, [3]))["action"]
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, torch.tanh(policy(**obs).action_loc[:, 0]))
    np.testing.assert_allclose(policy.act(obs), (first @ policy.synergy).detach().numpy(), atol=1e-6)


def test_fresh_policy_replays_the_raw_retarget():
    policy = PsiR2Policy.from_policy_config(debug_policy_config())
    assert np.abs(policy.act(observation(2, policy.policy_config))).max() == 0.0


@pytest.mark.parametrize("architecture", ["wan", "cnn"])
def test_save_pretrained_round_trip_without_pickle(tmp_path, architecture):
    config = debug_policy_config(architecture=architecture, action_space="joint", frame_stack=2)
    policy = PsiR2Policy.from_policy_config(config)
    torch.nn.init.normal_(policy.action_head.weight, std=0.1)
    policy.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architecture"] == architecture and saved["action_space"] == "joint"
    loaded = PsiR2Policy.from_pretrained(tmp_path)
    obs = observation(2, config)
    torch.testing.assert_close(loaded(**obs).action_loc, policy(**obs).action_loc)
    assert loaded.act(obs).shape == (2, 22)


def test_synergy_map_is_the_residual_parameterisation():
    matrix = synergy_matrix()
    assert matrix.shape == (10, 22)
    theta = np.random.default_rng(0).uniform(-1, 1, (2, 10))  # a constant curve
    np.testing.assert_allclose(theta[0] @ matrix, residual_actions(theta[[0, 0]], 1, 1)[0], atol=1e-6)
    np.testing.assert_allclose(joints_to_synergy(theta @ matrix), theta, atol=1e-5)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="architecture"):
        PsiR2Config(architecture="lstm")
    with pytest.raises(ValueError, match="action_space"):
        PsiR2Config(action_space="torque")


def test_torchrl_env_specs(tiny_env_kwargs):
    from torchrl.envs.utils import check_env_specs

    vector = gym.make_vec("PsiW0-Retarget-v0", num_envs=2, max_episode_steps=2, autoreset_mode=AutoresetMode.DISABLED,
                          **tiny_env_kwargs)
    env = make_torchrl_env(vector, "synergy")
    assert tuple(env.action_spec.shape) == (2, 10)
    assert {"pixels", "agent_pos", "reference", "instruction", "progress"} <= set(env.observation_spec.keys())
    check_env_specs(env, seed=0)
    policy = PsiR2Policy.from_policy_config(debug_policy_config())
    rollout = env.rollout(3, make_actor(policy), break_when_any_done=False)
    assert rollout["action"].shape == (2, 3, 10) and rollout["next", "episode_reward"].shape == (2, 3, 1)

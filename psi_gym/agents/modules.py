"""Psi-R2 as TorchRL modules, and the TorchRL view of the envs it acts in.

* `make_actor(policy)`: a `ProbabilisticActor` over `PsiR2Policy` — a `TensorDictModule` reading
  the observation keys and writing ``loc``/``scale`` of the first chunk row, a `TanhNormal` with
  ``low=-1, high=1``; ``action`` and ``action_log_prob`` out. Deterministic mode
  (``set_exploration_type(ExplorationType.DETERMINISTIC)``) gives ``tanh(loc)``: deployment.
* `make_critic(config)`: a `ValueOperator` (``state_value``) on a small network of its own (the
  ``"cnn"`` trunk of R2's family): actor and critic share nothing, as in CleanRL's PPO.
* `make_torchrl_env(env)`: TorchRL's `GymWrapper` around a Gymnasium (vector) env, plus
  `SynergyAction` when the policy acts in the 10 synergies of `psi_gym.sim.residuals` (the env still
  receives its 22 joint residuals) and `RewardSum` (``episode_reward``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Bounded, Composite
from torchrl.envs import Compose, EnvBase, GymWrapper, RewardSum, TransformedEnv
from torchrl.envs.transforms import Transform
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator

from psi_gym.agents.policy import NUM_JOINTS, PsiR2Config, PsiR2Policy, synergy_matrix


class ActorHead(nn.Module):
    """`PsiR2Policy` -> (loc, scale) of the action executed now (the chunk's first row)."""

    def __init__(self, policy: PsiR2Policy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.policy(*inputs, return_dict=True)
        loc = out.action_loc[..., 0, :]
        return loc, out.log_std.exp().expand_as(loc)


def make_actor(policy: PsiR2Policy) -> ProbabilisticActor:
    """R2's stochastic actor (see the module doc); its spec is ``Bounded(-1, 1, (A,))``."""
    config = policy.policy_config
    module = TensorDictModule(ActorHead(policy), in_keys=list(policy.input_keys), out_keys=["loc", "scale"])
    return ProbabilisticActor(
        module,
        in_keys=["loc", "scale"],
        spec=Bounded(-1.0, 1.0, (config.action_dim,)),
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )


class ValueNetwork(nn.Module):
    """The critic: R2's ``"cnn"`` trunk with one scalar out (its own weights)."""

    def __init__(self, config: PsiR2Config) -> None:
        super().__init__()
        self.trunk = PsiR2Policy.from_policy_config(dataclasses.replace(config, architecture="cnn", chunk_size=1))
        self.head = nn.Linear(config.hidden_dim, 1)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch_shape = inputs[1].shape[:-1]
        flat = [x.reshape(-1, *x.shape[len(batch_shape):]) for x in inputs]
        features, _ = self.trunk.encode(*flat, predict_frame=False)
        return self.head(features).reshape(*batch_shape, 1)


def make_critic(config: PsiR2Config) -> ValueOperator:
    """A `ValueOperator` writing ``state_value`` (see the module doc)."""
    keys = ["pixels", "agent_pos", "reference", "instruction"] + (["progress"] if config.use_progress else [])
    return ValueOperator(ValueNetwork(config), in_keys=keys)


class SynergyAction(Transform):
    """The policy acts in the 10 synergies (wrist 6 + finger closure 4); the env receives
    ``a_joint = a_synergy @ M`` (22,), ``M`` = `synergy_matrix` (values stay in [-1, 1])."""

    def __init__(self) -> None:
        super().__init__(in_keys_inv=["action"], out_keys_inv=["action"])
        self.register_buffer("matrix", torch.as_tensor(synergy_matrix()))

    def _inv_apply_transform(self, action: torch.Tensor) -> torch.Tensor:
        return action.to(self.matrix.dtype) @ self.matrix

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        input_spec = input_spec.clone()
        action = input_spec["full_action_spec", "action"]
        if action.shape[-1] != NUM_JOINTS:
            raise ValueError(f"SynergyAction needs an env with {NUM_JOINTS} joint actions, got {tuple(action.shape)}")
        shape = (*action.shape[:-1], self.matrix.shape[0])
        input_spec["full_action_spec", "action"] = Bounded(-1.0, 1.0, shape, dtype=action.dtype, device=action.device)
        return input_spec


def make_torchrl_env(env: Any, action_space: str = "synergy") -> EnvBase:
    """A Gymnasium env or vector env (DISABLED autoreset) as a TorchRL env for R2 (see the module doc)."""
    base = env if isinstance(env, EnvBase) else GymWrapper(env)
    if action_space not in ("synergy", "joint"):
        raise ValueError(f"action_space must be 'synergy' or 'joint', got {action_space!r}")
    transforms: list[Transform] = [SynergyAction()] if action_space == "synergy" else []
    return TransformedEnv(base, Compose(*transforms, RewardSum()))


__all__ = ["ActorHead", "SynergyAction", "ValueNetwork", "make_actor", "make_critic", "make_torchrl_env"]

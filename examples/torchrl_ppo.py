"""PPO on Psi-R2 inside Psi-W0, written out with TorchRL's own pieces, top to bottom.

The env is the native batched vector env (one Psi-W0 call steps all N rows) wrapped by TorchRL's
`GymWrapper`; R2 is a `ProbabilisticActor` (TanhNormal over 10 synergies: wrist x, y, z, yaw, pitch,
roll and a closure per finger; the `SynergyAction` transform hands the env its 22 joint residuals) and
a `ValueOperator` critic; a `Collector` gathers one episode per row, `GAE` computes advantages,
`ClipPPOLoss` is minimised. (`psi_gym.agents.ppo.ppo_refine` is the same loop as a function.)

    python examples/torchrl_ppo.py                                          # shipped W0 and demos
    python examples/torchrl_ppo.py --world-model random:debug --estimator random --iterations 1 --num-envs 2
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
import tyro
from gymnasium.vector import AutoresetMode
from torchrl.collectors import Collector
from torchrl.data import Unbounded
from torchrl.envs import Compose, GymWrapper, RewardSum, TransformedEnv
from torchrl.envs.gym_like import default_info_dict_reader
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

import psi_gym  # noqa: F401  (registers PsiW0-Retarget-v0)
from psi_gym.agents.modules import SynergyAction, make_actor, make_critic
from psi_gym.agents.policy import PsiR2Config, PsiR2Policy


@dataclass
class Args:
    world_model: str = "default"
    """Psi-W0: 'default', a folder, or 'random:debug' (untrained, smoke tests)."""
    estimator: str = "default"
    """object-state estimator of the reward: 'default', a folder or 'random'."""
    demos: str = "default"
    """demos the episodes start from."""
    policy: str | None = None
    """R2 folder to start from (psi-gym train-r2); None: a fresh R2."""
    architecture: str = "cnn"
    """a fresh R2's trunk: 'wan' or 'cnn'."""
    num_envs: int = 8
    """W0 env rows (one batched W0 call per step)."""
    max_episode_steps: int | None = None
    """shorter episodes (smoke tests only)."""
    iterations: int = 5
    """collect-and-update rounds."""
    epochs: int = 4
    """PPO passes over each batch."""
    minibatch_size: int = 64
    """PPO minibatch."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    threads: int | None = 1
    """torch CPU threads."""
    seed: int = 0
    """seeds TorchRL, the env and torch."""


def main(args: Args) -> list[dict[str, float]]:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    # 1. The env: N rows in W0; TorchRL resets ended rows itself (autoreset DISABLED), reads the verdict.
    vector = gym.make_vec("PsiW0-Retarget-v0", num_envs=args.num_envs, autoreset_mode=AutoresetMode.DISABLED,
                          world_model=args.world_model, estimator=args.estimator, demos=args.demos,
                          max_episode_steps=args.max_episode_steps)
    base = GymWrapper(vector)
    base.set_info_dict_reader(default_info_dict_reader(["success"], spec={"success": Unbounded((args.num_envs,), dtype=torch.bool)}))
    env = TransformedEnv(base, Compose(SynergyAction(), RewardSum()))
    env.set_seed(args.seed)
    horizon = args.max_episode_steps or 40  # the shipped demos: T = 32 steps + 8 of slack

    # 2. R2: actor (behaviour-cloned or fresh) and critic.
    policy = PsiR2Policy.from_pretrained(args.policy) if args.policy else PsiR2Policy.from_policy_config(
        PsiR2Config(architecture=args.architecture))
    actor, critic = make_actor(policy), make_critic(policy.policy_config)

    # 3. Collector, advantage, loss, optimiser.
    frames_per_batch = args.num_envs * horizon
    collector = Collector(env, actor, frames_per_batch=frames_per_batch, total_frames=frames_per_batch * args.iterations,
                          auto_register_policy_transforms=False)
    advantage = GAE(gamma=0.99, lmbda=0.95, value_network=critic, average_gae=True)
    loss_module = ClipPPOLoss(actor, critic, clip_epsilon=0.2, entropy_coeff=1e-3, critic_coeff=0.5,
                              normalize_advantage=True)
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=args.learning_rate)

    # 4. Train.
    history = []
    for iteration, data in enumerate(collector):
        with torch.no_grad():
            advantage(data)
        flat = data.reshape(-1)
        for _ in range(args.epochs):
            for batch in flat[torch.randperm(len(flat))].split(args.minibatch_size):
                losses = loss_module(batch)
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), 0.5)
                optimizer.step()
        collector.update_policy_weights_()
        done = flat["next", "done"].squeeze(-1)
        record = {"iteration": iteration,
                  "w0_return": float(flat["next", "episode_reward"].squeeze(-1)[done].mean()),
                  "w0_success": float(flat["next", "success"][done].float().mean())}
        history.append(record)
        print(f"iteration {iteration}: W0 return {record['w0_return']:.2f}, W0 success {record['w0_success']:.2f} "
              "(W0's opinion; the simulator decides: examples/evaluate_policy.py)")
    collector.shutdown()
    return history


if __name__ == "__main__":
    main(tyro.cli(Args))

"""Write your own reward model for PsiW0-Retarget-v0 and run a few env steps with it.

A reward model is any callable on a batch of predicted steps (`psi_gym.rewards.RewardInput`:
predicted frames, joint state, action, joint target, step, each env's episode context, and
``last``: which envs are on their episode's last step) that returns one reward per env, or a
`RewardOutput` whose ``success`` gives the verdict on those last steps (success is judged at the
end of the episode; an episode always lasts its horizon).

    python examples/custom_reward.py --steps 8
    python examples/custom_reward.py --world-model random:debug   # no trained checkpoint needed
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import tyro

import psi_gym  # noqa: F401  (registers PsiW0-Retarget-v0)
from psi_gym.rewards import RewardInput, RewardOutput


@dataclass
class Args:
    world_model: str = "default"
    """Psi-W0 checkpoint: 'default' (shipped), a folder, or 'random:debug' (untrained, for a try-out)."""
    steps: int = 8
    """env steps to run."""
    num_envs: int = 2
    """envs stepped together (one batched world-model call per step)."""
    seed: int = 0
    """seeds the demo draw and the world model's noise."""


# 1. A function: reward the wrist for staying close to the retargeted reference (a few lines).
def stay_near_reference(batch: RewardInput) -> np.ndarray:
    goal = np.stack([episode.reference[min(int(t), episode.num_steps)] for episode, t in zip(batch.episodes, batch.step)])
    return -np.abs(batch.state[:, :3] - goal[:, :3]).sum(axis=1)  # metres off, wrist x, y, z


# 2. An object with a verdict: a success if the wrist ends 5 cm above where it started.
class WristLift:
    def __init__(self, height: float = 0.05) -> None:
        self.height = height

    def __call__(self, batch: RewardInput) -> RewardOutput:
        start = np.array([episode.reference[0, 2] for episode in batch.episodes])
        lifted = batch.state[:, 2] - start > self.height
        # reward every lifted step; success only counts on the last step (batch.last)
        return RewardOutput(reward=lifted.astype(np.float32), success=lifted & batch.last)


def main(args: Args) -> dict[str, float]:
    returns = {}
    for name, reward_model in (("stay_near_reference", stay_near_reference), ("wrist_lift", WristLift())):
        envs = gym.make_vec("PsiW0-Retarget-v0", num_envs=args.num_envs, world_model=args.world_model,
                            reward_model=reward_model)
        envs.action_space.seed(args.seed)
        envs.reset(seed=args.seed)
        total = np.zeros(args.num_envs)
        for _ in range(args.steps):
            _, reward, _, _, _ = envs.step(envs.action_space.sample())
            total += reward
        demos = [envs.context(i).demo_id for i in range(args.num_envs)]
        envs.close()
        returns[name] = float(total.mean())
        print(f"{name}: mean return over {args.steps} steps = {returns[name]:.3f} (demos {demos})")
    return returns


if __name__ == "__main__":
    main(tyro.cli(Args))

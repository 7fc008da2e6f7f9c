"""Refine retargeted demos inside Psi-W0 with Stable-Baselines3 PPO (MultiInputPolicy).

The native vector env (one batched world-model call for all envs per step) goes to SB3 through
`psi_gym.envs.sb3.SB3VecEnv`; the policy sees the predicted frame, the joint state, the upcoming
reference, the instruction embedding and the episode's progress, and outputs a residual on the
reference.

    python examples/sb3_ppo.py                                   # shipped world model and reward
    python examples/sb3_ppo.py --world-model random:debug --estimator random --total-timesteps 256
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import tyro
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecMonitor

import psi_gym  # noqa: F401  (registers PsiW0-Retarget-v0)
from psi_gym.envs.sb3 import SB3VecEnv


@dataclass
class Args:
    world_model: str = "default"
    """Psi-W0 checkpoint: 'default' (shipped), a folder, or 'random:debug' (untrained, smoke tests)."""
    estimator: str = "default"
    """object-state estimator for the reward: 'default', a folder, or 'random' (untrained)."""
    reward_model: str = "object_tracking"
    """'object_tracking', 'success_classifier' or 'package.module:Name'."""
    num_envs: int = 8
    """envs stepped together by one batched world-model call."""
    total_timesteps: int = 4096
    """env steps of PPO training (all envs together)."""
    n_steps: int = 64
    """steps per env between PPO updates."""
    batch_size: int = 128
    """minibatch size of the PPO update."""
    n_epochs: int = 4
    """passes over each rollout."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    eval_episodes: int = 8
    """episodes for the mean return before and after training."""
    max_episode_steps: int | None = None
    """every episode's length (the horizon) instead of demo length + slack (for quick runs)."""
    threads: int | None = None
    """torch CPU threads (default: torch's own)."""
    seed: int = 0
    """seeds the envs (demo draw, world-model noise) and PPO."""


def make_env(args: Args, seed: int) -> SB3VecEnv:
    env = SB3VecEnv(  # builds the native vector env with the autoreset mode SB3 needs (SAME_STEP)
        "PsiW0-Retarget-v0",
        num_envs=args.num_envs,
        world_model=args.world_model,
        estimator=args.estimator,
        reward_model=args.reward_model,
        max_episode_steps=args.max_episode_steps,
    )
    env.seed(seed)
    return env


def mean_return(model: PPO, args: Args, seed: int) -> float:
    env = VecMonitor(make_env(args, seed))
    returns, _ = evaluate_policy(model, env, n_eval_episodes=args.eval_episodes, deterministic=True,
                                 return_episode_rewards=True)
    env.close()
    return float(np.mean(returns))


def main(args: Args) -> dict[str, float]:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = VecMonitor(make_env(args, args.seed))
    model = PPO("MultiInputPolicy", env, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs,
                learning_rate=args.learning_rate, seed=args.seed, device="cpu", verbose=0)
    eval_seed = args.seed + 10_000  # evaluation episodes differ from training ones
    before = mean_return(model, args, eval_seed)
    print(f"mean episode return before training: {before:.3f}")
    start = time.perf_counter()
    model.learn(total_timesteps=args.total_timesteps)
    seconds = time.perf_counter() - start
    after = mean_return(model, args, eval_seed)
    print(f"mean episode return after {args.total_timesteps} steps ({seconds:.0f} s): {after:.3f}")
    env.close()
    return {"mean_return_before": before, "mean_return_after": after, "train_seconds": seconds}


if __name__ == "__main__":
    main(tyro.cli(Args))

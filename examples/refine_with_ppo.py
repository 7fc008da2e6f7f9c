"""Refine retargeted demos inside Psi-W0 with PPO on Psi-R2, then ask the simulator what it is worth.

PPO (TorchRL: Collector, GAE, ClipPPOLoss; `psi_gym.agents.ppo.ppo_refine`) fine-tunes R2 on the W0
vector env: one batched world-model call per step for all envs, W0's reward. Then R2, deterministic,
is run on the same demos twice: in W0 (what W0 believes) and closed loop in the ground-truth simulator
in its judge role (what is true). Only the second is a success.

    python examples/refine_with_ppo.py --demos outputs/r2/heldout-9001 --policy outputs/r2/bc-wan/final
    python examples/refine_with_ppo.py --world-model random:debug --estimator random --iterations 1   # smoke
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import torch
import tyro
from gymnasium.vector import AutoresetMode

import psi_gym  # noqa: F401  (registers PsiW0-Retarget-v0 and PsiSim-Retarget-v0)
from psi_gym.agents.policy import PsiR2Config, PsiR2Policy
from psi_gym.agents.ppo import PPOConfig, ppo_refine
from psi_gym.agents.rollouts import demo_refs, run_in_env, select_demos


@dataclass
class Args:
    demos: str = "default"
    """demos to refine: 'default' (48 shipped) or a dataset folder (retargeted or human demos)."""
    num_demos: int = 8
    """how many of them (the first whose human demo succeeded)."""
    world_model: str = "default"
    """Psi-W0: 'default', a folder, or 'random:debug' (untrained, smoke tests)."""
    estimator: str = "default"
    """object-state estimator of the reward: 'default', a folder or 'random'."""
    policy: str | None = None
    """R2 folder to start from (psi-gym train-r2 ... --out DIR: DIR/final); None: a fresh R2."""
    architecture: str = "wan"
    """a fresh R2's trunk: 'wan' (tiny WanTransformer3DModel) or 'cnn'."""
    num_envs: int = 8
    """W0 env rows stepped together by PPO's collector."""
    iterations: int = 10
    """PPO iterations (one episode per env row each)."""
    epochs: int = 4
    """PPO passes over each batch."""
    minibatch_size: int = 64
    """PPO minibatch."""
    learning_rate: float = 3e-4
    """actor learning rate (the critic's is 3x)."""
    log_std: float = -1.0
    """exploration noise (pre-tanh log std) PPO starts from."""
    max_episode_steps: int | None = None
    """shorter episodes than the demo's horizon (quick runs only: the verdict is at the end)."""
    threads: int | None = 1
    """torch CPU threads."""
    seed: int = 0
    """seeds PPO, the envs and the evaluation episodes."""


def main(args: Args) -> dict[str, float]:
    if args.threads:
        torch.set_num_threads(args.threads)
    episodes = select_demos(args.demos, args.num_demos)  # both envs hold exactly these demos
    options = dict(demos=episodes, max_episode_steps=args.max_episode_steps)
    w0 = gym.make_vec("PsiW0-Retarget-v0", num_envs=args.num_envs, autoreset_mode=AutoresetMode.DISABLED,
                      world_model=args.world_model, estimator=args.estimator, **options)
    judge = gym.make_vec("PsiSim-Retarget-v0", num_envs=min(args.num_envs, 8), autoreset_mode=AutoresetMode.DISABLED,
                         role="judge", **options)
    demos = demo_refs(w0)
    policy = (PsiR2Policy.from_pretrained(args.policy) if args.policy
              else PsiR2Policy.from_policy_config(PsiR2Config(architecture=args.architecture)))
    seeds = list(range(args.seed + 10_000, args.seed + 10_000 + len(demos)))

    def act(obs, rows):
        return policy.act(obs, deterministic=True)

    def measure() -> tuple[float, float]:
        in_w0 = run_in_env(w0, demos, seeds, act=act)
        in_sim = run_in_env(judge, demos, seeds, act=act)
        return float(in_w0.success.mean()), float(in_sim.success.mean())

    w0_before, sim_before = measure()
    print(f"before PPO: W0 says {w0_before:.2f}, the simulator {sim_before:.2f}")
    start = time.perf_counter()
    summary = ppo_refine(w0, policy, PPOConfig(iterations=args.iterations, epochs=args.epochs,
                                               minibatch_size=args.minibatch_size, learning_rate=args.learning_rate,
                                               log_std=args.log_std, seed=args.seed))
    seconds = time.perf_counter() - start
    w0_after, sim_after = measure()
    print(f"after {summary.iterations} PPO iterations ({seconds:.0f} s): W0 says {w0_after:.2f}, the simulator {sim_after:.2f}")
    return {"w0_success_before": w0_before, "sim_success_before": sim_before, "w0_success_after": w0_after,
            "sim_success_after": sim_after, "train_seconds": seconds}


if __name__ == "__main__":
    main(tyro.cli(Args))

"""Estimate policies' success inside Psi-W0 and check the estimate against the simulator.

Each policy runs closed loop on the same held-out demos with the same seeds, in the W0 vector env (its
verdict at the end of the episode: the estimate) and in the simulator twin as judge (the truth). Across
policies, the Pearson and Spearman correlations say whether W0 ranks policies the way the world does.

    python examples/evaluate_policy.py --policies raw random:0.3 random:1.0 outputs/r2/bc-wan/final \\
        outputs/r2/bc-wan/final@0.5 --demos outputs/r2/heldout-9001
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import tyro

from psi_gym.agents.evaluation import EvaluateConfig, evaluate_policies


@dataclass
class Args:
    policies: list[str] = field(default_factory=lambda: ["raw", "random:0.3", "random:0.6", "random:1.0"])
    """R2 folders (FOLDER, or FOLDER@NOISE: sampling with that pre-tanh std), 'raw', 'random:SIZE'."""
    demos: str = "default"
    """held-out demos: 'default' or a dataset folder."""
    num_demos: int = 24
    """how many of them (the first whose human demo succeeded)."""
    world_model: str = "default"
    """Psi-W0: 'default', a folder, or 'random:debug'."""
    estimator: str = "default"
    """object-state estimator of W0's verdict: 'default', a folder or 'random'."""
    num_envs: int = 24
    """W0 env rows stepped together."""
    threads: int | None = 1
    """torch CPU threads."""
    seed: int = 0
    """seeds the episodes (same seeds in W0 and in the simulator)."""


def main(args: Args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    result = evaluate_policies(EvaluateConfig(policies=args.policies, demos=args.demos, num_demos=args.num_demos,
                                              world_model=args.world_model, estimator=args.estimator,
                                              num_envs=args.num_envs, seed=args.seed))
    for row in result["policies"]:
        print(f"{row['policy']:>40}: W0 {row['w0_success']:.2f}  sim {row['sim_success']:.2f}")
    print(f"success, W0 vs sim: {result['success']}")
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))

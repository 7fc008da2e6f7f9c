"""The rewards part's subcommand, ``psi-gym train-estimator``: train the object-state / success
estimator that reads outcomes off (predicted) frames (`psi_gym.rewards.estimator_training`).

`psi_gym.cli` lists it from `COMMANDS`; nothing here imports the CLI.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    from psi_gym.rewards.estimator_training import EstimatorTrainConfig

    defaults = EstimatorTrainConfig()
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="robot-rollout dataset folder(s) (psi-gym collect)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the trained estimator (save_pretrained)")
    parser.add_argument("--eval-data", type=Path, nargs="*", default=None,
                        help="extra dataset folder(s) only evaluated at the end (e.g. rollouts of a fresh seed)")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction, help="fraction of episodes held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def run(args: argparse.Namespace) -> Any:
    from psi_gym.rewards.estimator_training import EstimatorTrainConfig, train_estimator

    config = EstimatorTrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                                  val_fraction=args.val_fraction, device=args.device)
    return train_estimator(args.data, config, out_dir=args.out, seed=args.seed, eval_data=args.eval_data or None)


COMMANDS = {
    "train-estimator": ("train the object-state / success estimator that reads outcomes off (predicted) frames",
                        configure, run),
}
"""name -> (help, configure(parser), run(args) -> summary), listed by `psi_gym.cli`."""

"""The rewards part's subcommand, ``psi-gym train-estimator``: train the object-state / success
estimator that reads outcomes off (predicted) frames (`psi_gym.rewards.estimator_training`).

`psi_gym.cli` lists it from `COMMANDS`; nothing here imports the CLI.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from psi_gym.data.arguments import (
    ArgumentProblem,
    check_output_parent,
    device,
    log_with,
    number_in,
    positive_int,
    seed,
)

def configure(parser: argparse.ArgumentParser) -> None:
    from psi_gym.rewards.estimator_training import EstimatorTrainConfig

    defaults = EstimatorTrainConfig()
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="robot-rollout dataset folder(s) (psi-gym collect)")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the trained estimator (save_pretrained), swapped in when training ends")
    parser.add_argument("--eval-data", type=Path, nargs="*", default=None,
                        help="extra dataset folder(s) only evaluated at the end (e.g. rollouts of a fresh seed)")
    parser.add_argument("--steps", type=positive_int, default=defaults.steps)
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=number_in(0, low_open=True), default=defaults.learning_rate)
    parser.add_argument("--val-fraction", type=number_in(0, 1, high_open=True), default=defaults.val_fraction,
                        help="fraction of episodes held out, in [0, 1)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--device", type=device, default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--log-with", type=log_with, default="auto", metavar="{auto,csv,tensorboard,none}",
                        help="loss curves through accelerate's trackers into OUT.logs/: tensorboard, csv "
                             "(metrics.csv + loss.png), none; auto: tensorboard if installed, else csv")


def _check_datasets(roots: list[Path], flag: str) -> None:
    from psi_gym.data.lerobot import DatasetError, EpisodeDataset

    for root in roots:
        try:
            EpisodeDataset(root)
        except DatasetError as error:
            raise ArgumentProblem(flag, str(error)) from None


def run(args: argparse.Namespace) -> Any:
    from psi_gym.data.atomic import TargetLockedError
    from psi_gym.rewards.estimator_training import EstimatorTrainConfig, train_estimator

    check_output_parent(args.out, "--out")
    if args.out.exists() and not args.out.is_dir():
        raise ArgumentProblem("--out", f"{args.out} is a file; expected a folder")
    if args.out.is_dir() and any(args.out.iterdir()) and not (args.out / "config.json").is_file():
        raise ArgumentProblem("--out", f"refusing to replace {args.out}: it holds files but no config.json, so it is "
                                       "no estimator")
    _check_datasets(args.data, "--data")
    _check_datasets(args.eval_data or [], "--eval-data")
    config = EstimatorTrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                                  val_fraction=args.val_fraction, device=args.device)
    try:
        return train_estimator(args.data, config, out_dir=args.out, seed=args.seed, eval_data=args.eval_data or None,
                               log_with=args.log_with)
    except TargetLockedError as error:
        raise ArgumentProblem("--out", str(error)) from None


COMMANDS = {
    "train-estimator": ("train the object-state / success estimator that reads outcomes off (predicted) frames",
                        configure, run),
}
"""name -> (help, configure(parser), run(args) -> summary), listed by `psi_gym.cli`."""

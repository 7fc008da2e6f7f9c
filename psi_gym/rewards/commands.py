"""Subcommands of the rewards part; importing this module registers them with `psi_gym.cli`."""

from psi_gym.rewards import estimator_training  # noqa: F401  (registers `train-estimator`)

"""Tiny models and reward functions for env tests (CPU, a few milliseconds per step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from psi_gym.rewards import RewardInput, RewardOutput


def save_tiny_world_model(folder: Path, seed: int = 0) -> Path:
    """A debug-size Psi-W0 whose frames and states depend on the action and the sampling noise.

    Fresh, W0 says "nothing moves" (the renderer's output projection and the dynamics' last layer
    start at zero); both are given small random weights so that they do not."""
    from psi_gym.world_model import WorldModel, debug_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WorldModel.from_model_config(debug_config())
        with torch.no_grad():
            torch.nn.init.normal_(model.transformer.proj_out.weight, std=0.02)
            torch.nn.init.normal_(model.dynamics.out.weight, std=0.02)
    model.save_pretrained(folder)
    return folder


def save_tiny_estimator(folder: Path, success_bias: float = -10.0, seed: int = 0) -> Path:
    """A small untrained estimator whose success head says "not done" (bias -10) or "done" (+10)."""
    from psi_gym.rewards.object_state import (
        ObjectStateEstimator,
        ObjectStateEstimatorConfig,
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        estimator = ObjectStateEstimator.from_estimator_config(ObjectStateEstimatorConfig(channels=(8, 8, 16, 16), hidden_dim=16))
    # The layer that outputs one value per task (the success head) decides alone: zero weights,
    # bias of the wanted sign (whatever the head's units, +-10 is far from the boundary).
    heads = [m for name, m in estimator.named_modules() if isinstance(m, torch.nn.Linear)
             and m.out_features == len(estimator.task_names) and "position" not in name]
    assert len(heads) == 1, heads
    with torch.no_grad():
        heads[0].weight.zero_()
        heads[0].bias.fill_(success_bias)
    estimator.save_pretrained(folder)
    return folder


def action_penalty(batch: RewardInput) -> np.ndarray:
    """A reward function: small actions are good."""
    return -np.abs(batch.action).mean(axis=1)


class SucceedAt:
    """Success (and reward 1) once an episode has taken ``step`` steps."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.calls: list[RewardInput] = []

    def __call__(self, batch: RewardInput) -> RewardOutput:
        self.calls.append(batch)
        success = batch.step >= self.step
        return RewardOutput(reward=success.astype(np.float32), success=success)

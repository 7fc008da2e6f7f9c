"""The learning-rate schedule of every trainer: linear warmup, then cosine decay to a floor.

Notation: ``s`` the step (0-based), ``W`` warmup steps, ``N`` total steps, ``eta_max`` the peak
and ``eta_min`` the floor:

* ``s < W``:  ``eta = eta_max (s + 1) / W``;
* else:       ``p = min((s - W) / max(N - W, 1), 1)``,
              ``eta = eta_min + (eta_max - eta_min) (1 + cos(pi p)) / 2``.

Used by `psi_gym.world_model.training` and `psi_gym.rewards.estimator_training` (rewards sits
above the world model, so both import it from here).
"""

from __future__ import annotations

import math


def warmup_cosine_learning_rate(step: int, peak: float, minimum: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate at ``step`` (see the module doc for the formula)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return minimum + (peak - minimum) * cosine

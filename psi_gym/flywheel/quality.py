"""Data quality of a human demo, scored by W0 (the report scores its human data with W0).

A demo's retargeted reference is rolled out raw (residual 0) in W0; W0 predicts, step by step,
where the robot's joints end up when told to follow it. The quality is how closely that prediction
follows the reference:

    e = mean_t mean_j |q_hat[t+1, j] - q*[t, j]| / s_j          q_hat  W0's predicted joints
    quality = exp(-e / e0)                                       q*     the joint targets applied
                                                                 s      the env's residual scale
                                                                        (3 cm, 0.15 rad, 0.4 rad)

``q_hat`` is W0's joint state (``WorldModelOutput.state``, what the env records as the episode's
``state``), advanced by W0's learned dynamics from the demo's start joints; it does not depend on
the renderer's noise, so one raw rollout per demo gives the demo's quality.

A hand track from a video pose estimator (the *generalization* tier: jitter, drift, outlier
frames) retargets into commands the robot's dynamics cannot follow, and W0, which learned those
dynamics, predicts the robot falling behind: lower quality than a motion-capture track (the
*precision* tier) of the same motion. Measured with the earlier, frame-only W0 (fresh seed 31, 12
demos per tier): e = 0.046 (precision) vs 0.092 (generalization), every generalization demo below
its precision twin (the shipped state-grounded W0 on the flywheel's training demos, seed 5101:
quality 0.22-0.50 precision, 0.14-0.22 generalization). W0's predicted object trajectory against the human's did not separate the tiers
there (precision 0.39, generalization 0.43, Mann-Whitney p = 0.44).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from psi_gym.data.episode import Episode
from psi_gym.sim.hands import hand_spec, residual_scale

DEFAULT_ERROR_SCALE = 0.1
"""e0: the tracking error (residual units) at which the quality is 1/e."""


def tracking_error(episode: Episode) -> float:
    """e of a W0 rollout (see the module doc): its predicted joints ``state[1:]`` against the joint
    targets it applied (``action``)."""
    scale = residual_scale(hand_spec("robot")).astype(np.float64)
    predicted = np.asarray(episode.state[1:], np.float64)
    targets = np.asarray(episode.action, np.float64)
    if predicted.shape != targets.shape or predicted.shape[1] != len(scale):
        raise ValueError(f"expected a robot episode, state[1:] and action of (T, {len(scale)}), got "
                         f"{predicted.shape} and {targets.shape}")
    return float(np.mean(np.abs(predicted - targets) / scale))


def demo_quality(raw_rollouts: Sequence[Episode], error_scale: float = DEFAULT_ERROR_SCALE) -> np.ndarray:
    """Quality in (0, 1] of each demo from a W0 rollout of its raw retarget (one per demo)."""
    return np.array([np.exp(-tracking_error(e) / error_scale) for e in raw_rollouts])


__all__ = ["DEFAULT_ERROR_SCALE", "demo_quality", "tracking_error"]

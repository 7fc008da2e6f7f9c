"""A low-dimensional, time-smooth residual on a retargeted reference: what refinement searches over.

A retargeted human demo is *almost* right for the robot: the hand is a few centimetres off, the
grip closes too early or too little. Such errors are smooth in time and shared across joints, so
refinement searches a small space instead of 22 joints x 40 steps:

Notation (``K`` knots, ``T`` the demo's length in steps, ``H`` the episode's length):

* ``theta``  (K, 10) parameters in [-1, 1]: per knot, the wrist's x, y, z, yaw, pitch, roll and a
  closure per finger (thumb, index, middle, ring);
* knots sit at ``t_k = k T / (K - 1)``; between knots the residual is linearly interpolated, past
  ``T`` it holds the last knot;
* action ``a_t`` (22,): wrist joints take the wrist values, each finger's three flexion joints
  (j1..j3) take that finger's closure, the swing joints (j0) stay 0;
* the joint target is the env's residual rule on the reference, `psi_gym.sim.hands.residual_joint_targets`
  (``clip(ref[t+1] + scale * a_t)``), so ``theta = 0`` replays the raw retarget.
"""

from __future__ import annotations

import numpy as np

NUM_WRIST = 6
NUM_FINGERS = 4
NUM_PARAMETERS = NUM_WRIST + NUM_FINGERS  # per knot
DEFAULT_KNOTS = 3
RESIDUAL_SIZES = (0.15, 0.3, 0.5, 0.75, 1.0)
"""sizes of random residuals (theta uniform in [-size, size]) that collection and evaluation draw:
near misses to large; refinement searches within them."""


def residual_actions(theta: np.ndarray, num_steps: int, demo_steps: int) -> np.ndarray:
    """``theta`` (K, 10) or (B, K, 10) -> actions (num_steps, 22) or (B, num_steps, 22) in [-1, 1].

    Raises:
        ValueError: ``theta`` is not (K >= 2, 10), holds NaN/inf, or the lengths are not >= 1.
    """
    theta = np.asarray(theta, dtype=np.float64)
    batched = theta.ndim == 3
    if not batched:
        theta = theta[None]
    if theta.ndim != 3 or theta.shape[1] < 2 or theta.shape[2] != NUM_PARAMETERS:
        raise ValueError(f"theta must be (K >= 2, {NUM_PARAMETERS}) or (B, K, {NUM_PARAMETERS}), got {np.shape(theta)}")
    if not np.isfinite(theta).all():
        raise ValueError("theta contains NaN or inf")
    if num_steps < 1 or demo_steps < 1:
        raise ValueError(f"num_steps and demo_steps must be >= 1, got {num_steps}, {demo_steps}")
    knots = theta.shape[1]
    grid = np.linspace(0.0, float(demo_steps), knots)
    time = np.minimum(np.arange(num_steps, dtype=np.float64), demo_steps)
    # linear interpolation weights, shared by every batch row and dimension
    right = np.clip(np.searchsorted(grid, time, side="right"), 1, knots - 1)
    left = right - 1
    alpha = ((time - grid[left]) / (grid[right] - grid[left]))[None, :, None]
    curve = (1 - alpha) * theta[:, left] + alpha * theta[:, right]  # (B, steps, 10)
    actions = np.zeros((theta.shape[0], num_steps, NUM_WRIST + 4 * NUM_FINGERS))
    actions[..., :NUM_WRIST] = curve[..., :NUM_WRIST]
    for finger in range(NUM_FINGERS):
        first = NUM_WRIST + 4 * finger
        actions[..., first + 1: first + 4] = curve[..., NUM_WRIST + finger: NUM_WRIST + finger + 1]
    actions = np.clip(actions, -1.0, 1.0).astype(np.float32)
    return actions if batched else actions[0]


def random_theta(rng: np.random.Generator, size: float, knots: int = DEFAULT_KNOTS, batch: int | None = None) -> np.ndarray:
    """Uniform parameters in [-size, size]: a random residual of a given size (the control)."""
    shape = (knots, NUM_PARAMETERS) if batch is None else (batch, knots, NUM_PARAMETERS)
    return rng.uniform(-size, size, size=shape)

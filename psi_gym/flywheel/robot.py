"""The robot budget: R2 deployed on the robot, its episodes back as data.

The simulator plays the robot here (``PsiSim-Retarget-v0`` with ``role="robot"``): a limited number
of episodes per flywheel iteration, R2 run closed loop on the iteration's *training* demos (never
held-out ones) with smooth exploration noise, as a real robot would be tried. Each episode comes back
whole — the camera's true frames, joints, object pose and the outcome, success or failure — as real
rollouts would, and may train W0 (failures included: they are what W0 needs to stop predicting
successes that do not happen) and R2 (its successes).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from psi_gym.flywheel.rollouts import Rollout, run_episodes


def make_robot_env(demos: Sequence[Any], num_envs: int) -> Any:
    """The simulator twin in its robot role holding ``demos`` (training demos, as `Episode`)."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    import psi_gym  # noqa: F401  (registers the envs)

    return gym.make_vec("PsiSim-Retarget-v0", num_envs=num_envs, autoreset_mode=AutoresetMode.DISABLED,
                        demos=list(demos), role="robot", successful_demos_only=False)


def deploy_policy(robot_env: Any, policy: Any, episodes: int, seed: int, exploration: float) -> list[Rollout]:
    """``episodes`` episodes of R2 on the robot, the env's demos taken in turn, each with its own seed.

    R2 acts deterministically (``tanh`` of its mean); exploration is a smooth random residual of
    size ``exploration`` added to its action (per episode, ``theta ~ U(-x, x)^(K x 10)`` on the
    search's knots, `psi_gym.sim.residuals`): time-correlated, as the corrections that fix a
    retarget are, where independent per-step noise would mostly average out. ``exploration=0``:
    R2 as deployed. Returns the robot's episodes (``episode.metadata["role"] == "robot"``)."""
    from psi_gym.agents.rollouts import demo_refs
    from psi_gym.envs.sim_retarget import is_judge
    from psi_gym.sim.residuals import random_theta, residual_actions

    if is_judge(robot_env) or getattr(robot_env.unwrapped.core, "role", None) != "robot":
        raise ValueError("deploy_policy needs the simulator in its robot role (PsiSim-Retarget-v0, role='robot')")
    if episodes <= 0:
        return []
    demos = demo_refs(robot_env)
    rng = np.random.default_rng(seed)
    chosen = [demos[i % len(demos)] for i in range(episodes)]
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=episodes)]
    noise = [residual_actions(random_theta(rng, exploration), d.horizon, d.demo_steps) if exploration > 0
             else np.zeros((d.horizon, 22), np.float32) for d in chosen]
    actor = copy.deepcopy(policy).eval()

    def act(obs: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        actions = actor.act(obs, deterministic=True)
        for j, i in enumerate(rows):  # the step each row is at: progress = t / H
            t = min(int(round(float(obs["progress"][j, 0]) * chosen[i].horizon)), chosen[i].horizon - 1)
            actions[j] = actions[j] + noise[i][t]
        return np.clip(actions, -1.0, 1.0)

    return run_episodes(robot_env, chosen, seeds, act=act)


__all__ = ["deploy_policy", "make_robot_env"]

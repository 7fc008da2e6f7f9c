"""Episodes out of a PsiW0-Retarget-style vector env, whole: what the flywheel stores.

`psi_gym.agents.rollouts.run_in_env` returns what refiners need (returns, verdicts, actions); the
flywheel keeps the trajectories themselves, so `run_episodes` runs the same episodes (open-loop
plans or a closed-loop policy, every row to its horizon, in batches of the env's rows) and hands
each one out as the env's own `Episode` (``envs.episode(row)``: frames, joint states, joint
targets, object pose, the env's verdict, the demo's reference) with its return and its plan.

It works on the W0 env (W0's frames and verdict) and on the simulator twin in its robot role (true
frames and outcome: the robot's episodes). It refuses the judge: what it returns is training data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from psi_gym.agents.rollouts import DemoRef
from psi_gym.data.episode import Episode


@dataclass
class Rollout:
    """One episode of the env."""

    episode: Episode
    """the env's episode (``success``: the env's verdict at the end)."""
    env_return: float
    """sum of the env's rewards (a W0 return in the W0 env)."""
    plan: np.ndarray
    """(H, 22) the residual actions applied, in [-1, 1]."""
    demo: DemoRef
    seed: int


def run_episodes(vector_env: Any, demos: Sequence[DemoRef], seeds: Sequence[int],
                 plans: Sequence[np.ndarray] | None = None,
                 act: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray] | None = None) -> list[Rollout]:
    """One episode per ``demos[i]`` with reset seed ``seeds[i]``: ``plans[i]`` open loop, or
    ``act(obs, rows)`` closed loop (``rows``: the index into ``demos`` each env row holds). The env
    must have ``autoreset_mode=DISABLED``; a short last batch is padded with its first row."""
    from psi_gym.envs.sim_retarget import is_judge

    if is_judge(vector_env):
        raise ValueError("run_episodes makes training data; it refuses the simulator in its judge role")
    if (plans is None) == (act is None):
        raise ValueError("give exactly one of plans= (open loop) or act= (closed loop)")
    if len(seeds) != len(demos) or (plans is not None and len(plans) != len(demos)):
        raise ValueError(f"demos, seeds (and plans) must have the same length, got {len(demos)}, {len(seeds)}"
                         + (f", {len(plans)}" if plans is not None else ""))
    env = vector_env.unwrapped
    n = vector_env.num_envs
    out: list[Rollout | None] = [None] * len(demos)
    for first in range(0, len(demos), n):
        rows = list(range(first, min(first + n, len(demos))))
        padded = np.asarray(rows + [rows[0]] * (n - len(rows)))
        reset_seeds = [int(seeds[i]) for i in padded]
        reset_demos = [demos[i].index for i in padded]
        obs, _ = vector_env.reset(seed=reset_seeds, options={"demo": reset_demos})
        horizon = max(demos[i].horizon for i in padded)
        returns = np.zeros(n, np.float64)
        applied = np.zeros((n, horizon, 22), np.float32)
        alive = np.ones(n, bool)
        steps = np.zeros(n, np.int64)
        for t in range(horizon):
            if plans is not None:
                actions = np.stack([plans[i][min(t, len(plans[i]) - 1)] for i in padded])
            else:
                actions = act(obs, padded)
            actions = np.clip(np.asarray(actions, np.float32), -1.0, 1.0)
            obs, reward, terminated, truncated, _ = vector_env.step(actions)
            live = np.flatnonzero(alive)
            returns[live] += reward[live]
            applied[live, t] = actions[live]
            steps[live] += 1
            ended = (np.asarray(terminated) | np.asarray(truncated)) & alive
            for j in np.flatnonzero(ended):
                if j < len(rows):
                    i = rows[j]
                    out[i] = Rollout(env.episode(int(j)), float(returns[j]), applied[j, : steps[j]].copy(), demos[i],
                                     int(seeds[i]))
            alive &= ~ended
            if not alive.any():
                break
            if ended.any():  # DISABLED autoreset refuses to step an ended row: restart it, unrecorded
                obs, _ = vector_env.reset(seed=reset_seeds, options={"demo": reset_demos, "reset_mask": ended.copy()})
    missing = [i for i, rollout in enumerate(out) if rollout is None]
    if missing:
        raise RuntimeError(f"episodes {missing[:5]} did not end within their horizon")
    return out  # type: ignore[return-value]


__all__ = ["Rollout", "run_episodes"]

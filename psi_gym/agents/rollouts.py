"""Open-loop plans run through the batched W0 env and through the simulator, the same way.

A *plan* is a residual action sequence ``a`` (H, 22) in [-1, 1] for one demo: the env's own action,
a residual on the demo's retargeted reference (``a = 0`` is the raw retarget). Refiners search over
plans; the judge replays a plan's joint targets in the simulator.

* `run_plans_in_env`: B plans on B rows of a `PsiW0RetargetVectorEnv` (``autoreset_mode=DISABLED``):
  one batched world-model call per step for all of them; returns, the env's verdict
  (``info["success"]`` on the last step), the joint targets it applied and, on request, the frames.
* `run_plans_in_sim`: the same plans replayed in MuJoCo; the same tracking return read off the true
  object pose (`sim_tracking_return`), the simulator's verdict at the end of the episode.

Notation: ``T`` the demo's length, ``H`` the episode's (``T + episode_slack``), ``q`` the human
demo's object trajectory, ``p`` the object's position; ``sigma`` and the bonus are
`ObjectTrackingRewardConfig`'s, so a sim return and a W0 return are the same quantity.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from psi_gym.rewards.object_tracking import ObjectTrackingRewardConfig
from psi_gym.sim.verify import Verdict, horizon_targets, replay_verdict


@dataclass(frozen=True)
class DemoRef:
    """One demo as a refiner sees it (an index into the env's demo set, and what the sim needs)."""

    index: int
    demo_id: str
    task: str
    scene: dict[str, Any]
    start_state: np.ndarray  # (22,) float32
    reference: np.ndarray  # (T+1, 22) float32
    human_object_pose: np.ndarray  # (T+1, 7) float32
    horizon: int  # H
    gain: float = 1.0  # the env's residual_gain

    @property
    def demo_steps(self) -> int:
        return int(self.reference.shape[0]) - 1


def episode_horizon(config: Any, demo_steps: int) -> int:
    """H of PsiW0-Retarget-v0 for a demo of ``demo_steps`` (its config's ``max_episode_steps`` or
    ``T + episode_slack``)."""
    return int(config.max_episode_steps or demo_steps + config.episode_slack)


def select_demos(source: Any, count: int) -> list[Any]:
    """The first ``count`` demos of a demo set (``"default"``, a folder) whose human demo succeeded,
    taking the tasks in turn, as `Episode` objects: hand them to an env as ``demos=`` (its demo
    indices are then 0 .. count-1)."""
    from collections import defaultdict

    from psi_gym.data.lerobot import EpisodeDataset
    from psi_gym.envs.demo_set import DEMO_SET_ASSET, DemoSet

    dataset = EpisodeDataset(DEMO_SET_ASSET.resolve(source)) if isinstance(source, (str, os.PathLike)) else source
    demo_set = DemoSet(dataset)
    by_task: dict[str, list[int]] = defaultdict(list)
    for index in demo_set.eligible:
        by_task[dataset[int(index)].task].append(int(index))
    queues = [list(group) for _, group in sorted(by_task.items())]
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return [dataset[i] for i in sorted(chosen)]


def demo_refs(vector_env: Any, indices: Sequence[int] | None = None) -> list[DemoRef]:
    """`DemoRef` of the env's demos ``indices`` (default: all of its demo set)."""
    core = vector_env.unwrapped.core
    if core.config.action_mode != "residual":
        raise ValueError(f"refiners search residual plans; the env has action_mode={core.config.action_mode!r}")
    demos = core.demos
    indices = range(len(demos)) if indices is None else indices
    refs = []
    for index in indices:
        start = demos[int(index)]
        context = start.context
        refs.append(DemoRef(
            index=int(index), demo_id=context.demo_id, task=context.task, scene=context.scene.to_dict(),
            start_state=np.asarray(start.start_state, np.float32), reference=np.asarray(context.reference, np.float32),
            human_object_pose=np.asarray(context.human_object_pose, np.float32),
            horizon=episode_horizon(core.config, context.num_steps), gain=float(core.config.residual_gain),
        ))
    return refs


@dataclass
class PlanResults:
    """What running B episodes gave (per row)."""

    returns: np.ndarray  # (B,) float32, sum of rewards
    success: np.ndarray  # (B,) bool, the env's verdict at the end of the episode
    actions: list[np.ndarray]  # B x (H, 22) float32 residual actions applied (clipped to [-1, 1]): plans
    joint_targets: list[np.ndarray]  # B x (H, 22) float32 absolute targets applied
    frames: list[np.ndarray] | None = None  # B x (H+1, h, w, 3) uint8, when asked for
    episodes: list[Any] | None = None  # B generated `Episode` (the env's record: frames, W0's states), when asked for


def run_plans_in_env(vector_env: Any, demos: Sequence[DemoRef], plans: Sequence[np.ndarray],
                     seeds: Sequence[int], record_frames: bool = False, record_episodes: bool = False,
                     object_shifts: np.ndarray | None = None) -> PlanResults:
    """Run ``plans[i]`` (H_i, 22) open loop on demo ``demos[i]`` in the vector env (see `run_in_env`)."""
    if len(plans) != len(demos):
        raise ValueError(f"demos and plans must have the same length, got {len(demos)}, {len(plans)}")
    return run_in_env(vector_env, demos, seeds, plans=plans, record_frames=record_frames, record_episodes=record_episodes,
                      object_shifts=object_shifts)


def run_in_env(vector_env: Any, demos: Sequence[DemoRef], seeds: Sequence[int], plans: Sequence[np.ndarray] | None = None,
               act: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray] | None = None,
               record_frames: bool = False, record_episodes: bool = False,
               object_shifts: np.ndarray | None = None) -> PlanResults:
    """One episode per demo in a PsiW0-Retarget-style vector env (``autoreset_mode=DISABLED``; the
    W0 env or its simulator twin), in batches of its ``num_envs`` rows (a short last batch is padded
    with copies of its first row, then dropped), every row to its horizon.

    Actions come from ``plans[i]`` (open loop) or from ``act(obs, rows)`` (closed loop: the batch's
    observation and which demo each row holds). Rows that end before the others (an early
    ``terminated``) are reset and no longer recorded. ``object_shifts`` (len(demos), 2): episode
    ``i`` starts with W0's reading of its object moved by ``object_shifts[i]`` m (the env's
    ``object_shift`` reset option).
    """
    if (plans is None) == (act is None):
        raise ValueError("give exactly one of plans= (open loop) or act= (closed loop)")
    n = vector_env.num_envs
    count = len(demos)
    if len(seeds) != count:
        raise ValueError(f"demos and seeds must have the same length, got {count}, {len(seeds)}")
    if object_shifts is not None:
        object_shifts = np.asarray(object_shifts, np.float64)
        if object_shifts.shape != (count, 2):
            raise ValueError(f"object_shifts must be ({count}, 2) metres (one per demo), got shape {object_shifts.shape}")
    returns = np.zeros(count, np.float32)
    success = np.zeros(count, bool)
    actions_out: list[np.ndarray] = [np.zeros(0)] * count
    targets_out: list[np.ndarray] = [np.zeros(0)] * count
    frames_out: list[np.ndarray] = [np.zeros(0)] * count
    episodes_out: list[Any] = [None] * count
    for first in range(0, count, n):
        rows = list(range(first, min(first + n, count)))
        padded = np.asarray(rows + [rows[0]] * (n - len(rows)))
        reset_seeds = [int(seeds[i]) for i in padded]
        reset_demos = [demos[i].index for i in padded]
        reset_options: dict[str, Any] = {"demo": reset_demos}
        if object_shifts is not None:
            reset_options["object_shift"] = object_shifts[padded]
        obs, _ = vector_env.reset(seed=reset_seeds, options=reset_options)
        horizon = max(demos[i].horizon for i in padded)
        batch_return = np.zeros(n, np.float32)
        batch_success = np.zeros(n, bool)
        batch_actions = np.zeros((n, horizon, 22), np.float32)
        batch_targets = np.zeros((n, horizon, 22), np.float32)
        batch_frames = np.zeros((n, horizon + 1, *obs["pixels"].shape[1:3], 3), np.uint8) if record_frames else None
        if record_frames:
            batch_frames[:, 0] = obs["pixels"][..., -3:]
        steps = np.zeros(n, np.int64)
        alive = np.ones(n, bool)
        for t in range(horizon):
            if plans is not None:
                actions = np.stack([plans[i][min(t, len(plans[i]) - 1)] for i in padded]).astype(np.float32)
            else:
                actions = np.asarray(act(obs, padded), np.float32)
            actions = np.clip(actions, -1.0, 1.0)
            obs, reward, terminated, truncated, info = vector_env.step(actions)
            live = np.flatnonzero(alive)
            batch_return[live] += reward[live]
            batch_actions[live, t] = actions[live]
            batch_targets[live, t] = np.asarray(info["joint_targets"])[live]
            if record_frames:
                batch_frames[live, t + 1] = obs["pixels"][live][..., -3:]
            steps[live] += 1
            ended = (np.asarray(terminated) | np.asarray(truncated)) & alive
            batch_success[ended] = np.asarray(info["success"])[ended]
            alive &= ~ended
            if record_episodes:
                for j in np.flatnonzero(ended):
                    if j < len(rows):
                        episodes_out[first + j] = vector_env.unwrapped.episode(int(j))
            if not alive.any():
                break
            if ended.any():  # DISABLED autoreset refuses to step an ended row: restart it, unrecorded
                obs, _ = vector_env.reset(seed=reset_seeds, options={**reset_options, "reset_mask": ended.copy()})
        for j, i in enumerate(rows):
            returns[i], success[i] = batch_return[j], batch_success[j]
            actions_out[i] = batch_actions[j, :steps[j]].copy()
            targets_out[i] = batch_targets[j, :steps[j]].copy()
            if record_frames:
                frames_out[i] = batch_frames[j, :steps[j] + 1].copy()
    return PlanResults(returns, success, actions_out, targets_out, frames_out if record_frames else None,
                       episodes_out if record_episodes else None)


def sim_tracking_return(object_positions: np.ndarray, demo: DemoRef, success: bool,
                        config: ObjectTrackingRewardConfig | None = None) -> float:
    """The object-tracking return of one episode read off the true object positions (H+1, 3):
    ``sum_t exp(-|p_{t+1} - q[min(t+1, T)]| / sigma) + bonus * success`` (the default reward's rule)."""
    config = config or ObjectTrackingRewardConfig()
    steps = len(object_positions) - 1
    goal = demo.human_object_pose[np.minimum(np.arange(1, steps + 1), demo.demo_steps), :3]
    distance = np.linalg.norm(object_positions[1:, :3] - goal, axis=-1)
    return float(np.exp(-distance / config.sigma).sum() + (config.success_bonus if success else 0.0))


@dataclass
class SimResults:
    """The simulator's view of B plans."""

    returns: np.ndarray  # (B,) float32, `sim_tracking_return`
    success: np.ndarray  # (B,) bool, the verdict at the end of the episode
    verdicts: list[Verdict]


def plan_targets(demo: DemoRef, plan: np.ndarray) -> np.ndarray:
    """The joint targets (H, 22) the env applies for ``plan`` on ``demo``."""
    return horizon_targets(demo.reference, plan, gain=demo.gain)


def run_plans_in_sim(demos: Sequence[DemoRef], plans: Sequence[np.ndarray], render: bool = False,
                     config: ObjectTrackingRewardConfig | None = None) -> SimResults:
    """Replay each plan's joint targets in MuJoCo from its demo's scene and start joints."""
    returns, success, verdicts = [], [], []
    for demo, plan in zip(demos, plans, strict=True):
        verdict = replay_verdict(demo.scene, demo.start_state, plan_targets(demo, plan), render=render)
        verdicts.append(verdict)
        success.append(verdict.success)
        if verdict.recording is None:  # unstable: no trajectory to track, no success
            returns.append(0.0)
        else:
            returns.append(sim_tracking_return(verdict.recording.object_pose, demo, verdict.success, config))
    return SimResults(np.asarray(returns, np.float32), np.asarray(success, bool), verdicts)


__all__ = ["DemoRef", "PlanResults", "SimResults", "demo_refs", "episode_horizon", "plan_targets", "run_in_env", "select_demos",
           "run_plans_in_env", "run_plans_in_sim", "sim_tracking_return"]

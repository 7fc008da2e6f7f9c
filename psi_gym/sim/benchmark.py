"""Speed of the ground-truth world: physics control steps and 64 px renders per second.

This is the baseline the world-model env is measured against (`psi-gym bench`): an env step in
the simulator is one control step (50 physics steps) plus one rendered frame.

`sim_steps_per_second` steps N worlds one after another on one core; `parallel_sim_steps_per_second`
splits them over worker processes (one per core, as a subprocess vector env of MuJoCo does), so
that the simulator gets the same cores as the world model it is compared with.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import time
from collections.abc import Callable

import numpy as np

from psi_gym.sim.scripted import plan_task
from psi_gym.sim.tasks import get_task
from psi_gym.sim.world import World, start_qpos


def sim_steps_per_second(num_envs: int = 1, steps: int = 32, image_size: int = 64, task: str = "lift_apple",
                         seed: int = 0, render: bool = True,
                         before_timing: Callable[[], object] | None = None) -> dict[str, float]:
    """Step `num_envs` independent worlds (one after another, as a CPU vector env of MuJoCo
    does on one core) through a scripted episode; returns env steps/s and the split between
    physics and rendering. ``before_timing`` is called once the worlds are built."""
    rng = np.random.default_rng(seed)
    spec_task = get_task(task)
    worlds, plans = [], []
    for _ in range(num_envs):
        world = World("robot", spec_task.object_kind, image_size)
        scene = spec_task.sample_scene(rng)
        world.reset(scene, start_qpos(world.spec, scene))
        world.render()  # open the GL context outside the timed loop
        worlds.append(world)
        plans.append(plan_task(scene, "robot", rng))
    if before_timing is not None:
        before_timing()
    physics = rendering = 0.0
    for t in range(steps):
        for world, plan in zip(worlds, plans):
            start = time.perf_counter()
            world.step(plan[t % len(plan)])
            middle = time.perf_counter()
            if render:
                world.render()
            physics += middle - start
            rendering += time.perf_counter() - middle
    for world in worlds:
        world.close()
    total = num_envs * steps
    seconds = physics + rendering
    return {
        "sim_steps_per_s": total / seconds,
        "physics_steps_per_s": total / physics,
        "renders_per_s": total / rendering if render else float("nan"),
        "physics_ms_per_step": 1000 * physics / total,
        "render_ms_per_frame": 1000 * rendering / total if render else float("nan"),
    }


def _sim_worker(num_envs: int, steps: int, image_size: int, task: str, seed: int, barrier, queue) -> None:
    """One worker process: build its worlds, wait for the others, then run the timed loop."""
    result = sim_steps_per_second(num_envs, steps, image_size, task, seed, before_timing=barrier.wait)
    queue.put({**result, "env_steps": num_envs * steps})


def parallel_sim_steps_per_second(num_envs: int = 1, workers: int = 2, steps: int = 32, image_size: int = 64,
                                  task: str = "lift_apple", seed: int = 0) -> dict[str, float]:
    """`sim_steps_per_second` with the N worlds split over ``min(workers, N)`` processes started
    together; env steps/s = all env steps / the slowest worker's timed seconds (world building and
    GL start-up excluded: the timed loops start together at a barrier)."""
    if num_envs < 1 or workers < 1:
        raise ValueError(f"num_envs and workers must be >= 1, got {num_envs} and {workers}")
    workers = min(workers, num_envs)
    if workers == 1:
        return {**sim_steps_per_second(num_envs, steps, image_size, task, seed), "workers": 1}
    # spawn: a forked child must not inherit the parent's GL contexts
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(workers, timeout=300), context.Queue()
    shares = [num_envs // workers + (i < num_envs % workers) for i in range(workers)]
    processes = [context.Process(target=_sim_worker, args=(share, steps, image_size, task, seed + i, barrier, queue))
                 for i, share in enumerate(shares)]
    for process in processes:
        process.start()
    results: list[dict[str, float]] = []
    try:
        while len(results) < workers:
            try:
                results.append(queue.get(timeout=1.0))
            except queue_module.Empty:
                failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                if failed:
                    raise RuntimeError(f"a simulator benchmark worker exited with code {failed[0]}") from None
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
    # the timed loops start together, so the slowest worker's busy time bounds them all
    env_steps = sum(r["env_steps"] for r in results)
    busy = max(r["env_steps"] / r["sim_steps_per_s"] for r in results)
    physics_ms = sum(r["physics_ms_per_step"] * r["env_steps"] for r in results) / env_steps
    render_ms = sum(r["render_ms_per_frame"] * r["env_steps"] for r in results) / env_steps
    return {
        "sim_steps_per_s": env_steps / busy,
        "physics_ms_per_step": physics_ms,
        "render_ms_per_frame": render_ms,
        "workers": workers,
    }

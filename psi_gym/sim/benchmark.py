"""Speed of the ground-truth world: physics control steps and 64 px renders per second.

This is the baseline the world-model env is measured against (`psi-gym bench`): an env step in
the simulator is one control step (50 physics steps) plus one rendered frame.
"""

from __future__ import annotations

import time

import numpy as np

from psi_gym.data.scripted import plan_task
from psi_gym.sim.tasks import get_task
from psi_gym.sim.world import World, start_qpos


def sim_steps_per_second(num_envs: int = 1, steps: int = 32, image_size: int = 64, task: str = "lift_apple",
                         seed: int = 0, render: bool = True) -> dict[str, float]:
    """Step `num_envs` independent worlds (one after another, as a CPU vector env of MuJoCo
    does on one core) through a scripted episode; returns env steps/s and the split between
    physics and rendering."""
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

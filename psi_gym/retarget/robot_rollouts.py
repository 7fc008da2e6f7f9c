"""Robot rollouts: robot episodes collected in the simulator for training, successes and (at least
30%) labelled failures (``psi-gym collect``).

Each rollout starts from a freshly sampled scene and follows one of these sources:

==================== ==================================================================
source               joint targets
==================== ==================================================================
``scripted``         the scripted planner on the robot hand (stands in for teleoperated
                     robot data: mostly successes)
``retarget``         a human demo retargeted to the robot, replayed raw (mostly failures:
                     the embodiment gap)
``explore``          the retargeted reference plus a smooth random residual, the kind of
                     action an RL policy tries inside the world model
``perturbed``        a scripted plan with a structured perturbation: ``offset``,
                     ``timing_shift``, ``noise``, ``early_release``, ``missed_grasp``,
                     ``stop_early``
``residual``         what refinement searches: a retargeted demo (precision or
                     generalization tier) plus a smooth low-dimensional residual
                     (`psi_gym.sim.residuals`, sizes 0.15 - 1), applied with the env's own
                     rule over the env's horizon (T + `EPISODE_SLACK` steps)
==================== ==================================================================

`make_rollout` draws the source by ``sources`` (default `SOURCE_WEIGHTS`; ``psi-gym collect
--sources residual`` collects only what refinement searches).

Success or failure is read off the simulator, never assumed from the perturbation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from psi_gym.data.episode import Episode
from psi_gym.retarget.human_demos import episode_rng, make_demo
from psi_gym.retarget.pipeline import reference_from_demo
from psi_gym.sim.hands import hand_spec, residual_joint_targets, residual_scale
from psi_gym.sim.replay import replay_targets
from psi_gym.sim.residuals import RESIDUAL_SIZES, random_theta, residual_actions
from psi_gym.sim.scene import SceneParams
from psi_gym.sim.scripted import plan_task
from psi_gym.sim.tasks import EPISODE_SLACK, TASKS, get_task
from psi_gym.sim.verify import horizon_targets
from psi_gym.sim.world import SimulationUnstable, get_world, start_qpos

SOURCE_WEIGHTS = {"scripted": 0.30, "retarget": 0.15, "explore": 0.30, "perturbed": 0.25}
SOURCES = (*SOURCE_WEIGHTS, "residual")
GENERALIZATION_FRACTION = 0.25
"""share of ``residual`` rollouts whose demo is of the generalization tier (noisy hand pose)."""
PERTURBATIONS = ("offset", "timing_shift", "noise", "early_release", "missed_grasp", "stop_early")


def check_sources(sources: dict[str, float] | None) -> dict[str, float]:
    """Source weights (`SOURCE_WEIGHTS` when None), normalised.

    Raises:
        ValueError: an unknown source, a negative weight or all weights zero.
    """
    if sources is None:
        return dict(SOURCE_WEIGHTS)
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown rollout source(s) {unknown}: expected some of {list(SOURCES)}")
    weights = {name: float(weight) for name, weight in sources.items()}
    if any(not np.isfinite(w) or w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"source weights must be finite, >= 0 and not all 0, got {weights}")
    total = sum(weights.values())
    return {name: weight / total for name, weight in weights.items()}


def make_rollout(seed: int, index: int, task_name: str | None = None, image_size: int = 64,
                 sources: dict[str, float] | None = None) -> Episode:
    """One labelled robot rollout, reproducible from (seed, index, sources).

    A perturbation can drive the simulation unstable (a finger rammed into the table); such a
    run is useless as data, so it is drawn again from the next random stream."""
    weights = check_sources(sources)
    for attempt in range(3):
        try:
            return _make_rollout(seed, index, task_name, image_size, attempt, weights)
        except SimulationUnstable:
            continue
    raise SimulationUnstable(f"rollout {index} of seed {seed} was unstable three times")


def _make_rollout(seed: int, index: int, task_name: str | None, image_size: int, attempt: int,
                  weights: dict[str, float]) -> Episode:
    rng = episode_rng(seed, index, stream=2 + 10 * attempt)
    task = get_task(task_name) if task_name else get_task(sorted(TASKS)[index % len(TASKS)])
    kind = rng.choice(list(weights), p=list(weights.values()))
    spec = hand_spec("robot")
    perturbation = ""
    if kind == "residual":
        return _residual_rollout(seed, index, task, image_size, attempt, rng)
    if kind in ("retarget", "explore"):
        # A human demo of the same task from its own stream; the robot replays its retarget.
        demo = make_demo(task.name, seed, 1_000_000 + index, "precision", image_size)
        scene = SceneParams.from_dict(demo.scene)
        reference = reference_from_demo(demo)
        start, targets = reference[0], reference[1:].astype(np.float64)
        if kind == "explore":
            # unclipped, as recorded since the first datasets: the world clips what it executes
            targets = residual_joint_targets(targets, smooth_noise(rng, targets.shape, rng.uniform(0.1, 0.6)), residual_scale(spec))
    else:
        scene = task.sample_scene(rng)
        start = start_qpos(spec, scene)
        targets = plan_task(scene, "robot", rng)
        if kind == "perturbed":
            perturbation = str(rng.choice(PERTURBATIONS))
            targets = perturb(targets, perturbation, rng, spec.num_joints)
    recording = replay_targets(get_world("robot", task.object_kind, image_size), scene, targets, start_qpos=start)
    return Episode.from_recording(
        recording, task, scene, "robot", seed=int(seed), source="rollout", perturbation=perturbation,
        metadata={"index": int(index), "kind": str(kind), "attempt": attempt},
    )


def _residual_rollout(seed: int, index: int, task, image_size: int, attempt: int, rng: np.random.Generator) -> Episode:
    tier = "generalization" if rng.random() < GENERALIZATION_FRACTION else "precision"
    demo = make_demo(task.name, seed, 1_000_000 + index, tier, image_size)
    reference = reference_from_demo(demo)
    size = float(rng.choice(RESIDUAL_SIZES))
    theta = random_theta(rng, size)
    demo_steps = len(reference) - 1
    actions = residual_actions(theta, demo_steps + EPISODE_SLACK, demo_steps)
    targets = horizon_targets(reference, actions)
    scene = SceneParams.from_dict(demo.scene)
    recording = replay_targets(get_world("robot", task.object_kind, image_size), scene, targets, start_qpos=reference[0])
    return Episode.from_recording(
        recording, task, scene, "robot", seed=int(seed), source="rollout", tier=tier,
        parent=str(demo.metadata.get("id", "")),
        metadata={"index": int(index), "kind": "residual", "attempt": attempt, "size": size,
                  "theta": np.asarray(theta, dtype=float).round(6).tolist()},
    )


def iter_rollouts(num: int, seed: int, task_names: list[str] | None = None, image_size: int = 64,
                  progress: Callable[[int], None] | None = None, start: int = 0,
                  sources: dict[str, float] | None = None) -> Iterator[Episode]:
    for index in range(start, start + num):
        task = task_names[index % len(task_names)] if task_names else None
        yield make_rollout(seed, index, task, image_size, sources)
        if progress is not None:
            progress(1)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], amplitude: float, knots: int = 5) -> np.ndarray:
    """Smooth random curves in [-amplitude, amplitude]: random values at a few knots, linearly
    interpolated over time (an exploring policy's residual is correlated in time)."""
    steps, dims = shape
    values = rng.uniform(-amplitude, amplitude, size=(knots, dims))
    grid = np.linspace(0, steps - 1, knots)
    return np.stack([np.interp(np.arange(steps), grid, values[:, d]) for d in range(dims)], axis=1)


def perturb(targets: np.ndarray, name: str, rng: np.random.Generator, num_joints: int) -> np.ndarray:
    """A structured perturbation of a (T, J) joint-target plan."""
    out = targets.copy()
    steps = len(out)
    fingers = slice(6, num_joints)
    if name == "offset":  # the whole hand misplaced by 2-4 cm
        angle = rng.uniform(0, 2 * np.pi)
        out[:, :2] += rng.uniform(0.02, 0.04) * np.array([np.cos(angle), np.sin(angle)])
    elif name == "timing_shift":  # fingers late (or early) relative to the arm
        shift = int(rng.choice([-4, -3, 3, 4, 5]))
        out[:, fingers] = np.roll(out[:, fingers], shift, axis=0)
        if shift > 0:
            out[:shift, fingers] = targets[0, fingers]
        else:
            out[shift:, fingers] = targets[-1, fingers]
    elif name == "noise":  # jittery joint targets
        out += rng.normal(0.0, 1.0, size=out.shape) * residual_scale(hand_spec("robot")) * 0.25
    elif name == "early_release":  # fingers open again partway through
        release = int(rng.integers(steps // 2, steps - 4))
        out[release:, fingers] = targets[0, fingers]
    elif name == "missed_grasp":  # the hand stops 2-5 cm short of the object
        out[:, 2] += rng.uniform(0.02, 0.05)
    elif name == "stop_early":  # the arm stops partway (and may drift up): no lift, push short
        stop = int(rng.integers(steps // 3, steps - 6))
        out[stop:, :6] = targets[stop, :6]
        out[stop:, 2] += np.linspace(0.0, rng.uniform(0.0, 0.06), steps - stop)
    else:
        raise ValueError(f"unknown perturbation {name!r}: expected one of {PERTURBATIONS}")
    return out


def make_counterfactual_pair(seed: int, index: int, task_name: str | None = None, image_size: int = 64) -> tuple[Episode, Episode, int]:
    """Two robot episodes that share a start and differ in actions from `branch` on: the first
    succeeds in the simulator, the second fails. Returns (success, failure, branch).

    Both follow the same scripted plan until `branch` (so frames 0..branch are identical); then
    the failure branch lets go (lift tasks: the fingers open again) or breaks off the push (the
    hand rises and stops). Scenes are redrawn until the simulator confirms one success and one
    failure, so the pair tests whether a world model predicts the *outcome* of the actions.
    """
    task = get_task(task_name) if task_name else get_task(sorted(TASKS)[index % len(TASKS)])
    world = get_world("robot", task.object_kind, image_size)
    spec = world.spec
    for attempt in range(20):
        rng = episode_rng(seed, index, stream=3 + 10 * attempt)
        scene = task.sample_scene(rng)
        plan = plan_task(scene, "robot", rng)
        start = start_qpos(spec, scene)
        failure = plan.copy()
        if task.name.startswith("lift"):
            branch = int(rng.integers(14, 19))
            release = branch + int(rng.integers(0, 3))
            failure[release:, 6:] = start[6:]
            label = "early_release"
        else:
            branch = int(rng.integers(12, 17))
            failure[branch:, :2] = plan[branch, :2]  # stop pushing where the hand is
            failure[branch:, 2] = plan[branch:, 2] + np.linspace(0.0, 0.06, len(plan) - branch)
            label = "stopped_push"
        try:
            good = replay_targets(world, scene, plan, start_qpos=start)
            bad = replay_targets(world, scene, failure, start_qpos=start)
        except SimulationUnstable:
            continue
        if good.success and not bad.success:
            metadata = {"index": int(index), "kind": "counterfactual", "branch": branch}
            success, failed = (
                Episode.from_recording(recording, task, scene, "robot", seed=int(seed), source="rollout",
                                       perturbation=name, metadata=metadata)
                for recording, name in ((good, ""), (bad, label))
            )
            return success, failed, branch
    raise RuntimeError(f"no success/failure pair found for {task.name} (seed {seed}, index {index})")

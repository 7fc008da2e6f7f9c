"""A cheap 2-D stand-in for the MuJoCo scene, for developing and testing the world model.

Top-down-ish view of a table (static textured background with a target mark). The "hand" is a
square whose centre follows the wrist joints (x, y), whose size grows with the wrist height z,
and whose inner colour shows the finger closure. One object (red apple disk, blue box, yellow
can) lies on the table. It follows the hand when grasped (hand low, over the object, fingers
closed), falls back when released, and is pushed when the open hand runs into it. The joints are
position controlled with a first-order lag, like the sim's actuators: ``s' = s + 0.5 (a - s)``.

Episodes carry the `psi_gym.data.episode.Episode` robot schema (22 joints, object pose (T+1, 7)),
with scripted successes and the same kinds of failures the sim collects (missed grasps, early
releases, offsets). Nothing here is used at run time by the env; it exists so the world model can
be trained and checked before the real rollouts exist.
"""

from __future__ import annotations

import numpy as np

from psi_gym.data.episode import Episode

TASKS = {
    "lift_apple": ("lift the apple", (220, 40, 40), "disk"),
    "lift_can": ("lift the can", (230, 200, 40), "tall"),
    "push_box": ("push the box to the mark", (40, 70, 220), "square"),
}
NUM_JOINTS = 22
WORKSPACE = 0.3  # wrist x, y in [-0.3, 0.3] m
MAX_HEIGHT = 0.3  # wrist z in [0, 0.3] m
MARK = np.array([0.15, -0.15], np.float32)
GAIN = 0.5  # position-control lag per 10 Hz step


def _background(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.stack([150 + 40 * xx, 120 + 30 * yy, 90 + 20 * xx * yy], axis=-1)
    image += 6.0 * np.sin(xx * 40.0)[..., None]  # wood grain: texture the model must copy
    mark = _to_pixel(MARK, size)
    image[max(mark[1] - 4, 0):mark[1] + 5, max(mark[0] - 4, 0):mark[0] + 5] = (90, 160, 90)
    return np.clip(image, 0, 255).astype(np.uint8)


def _to_pixel(xy: np.ndarray, size: int) -> np.ndarray:
    # table x in [-0.3, 0.3] -> columns, y -> rows
    scaled = (np.asarray(xy, np.float32) / WORKSPACE * 0.5 + 0.5) * (size - 16) + 8
    return np.round(scaled).astype(int)


def render(state: np.ndarray, object_position: np.ndarray, task: str, size: int = 64,
           background: np.ndarray | None = None) -> np.ndarray:
    """Draw one (size, size, 3) uint8 frame from joint state and object position."""
    image = (background if background is not None else _background(size)).copy()
    _, color, shape = TASKS[task]
    scale = size / 64.0
    # object: lifted objects are drawn higher on the image (smaller row) and a little larger
    ox, oy = _to_pixel(object_position[:2], size)
    lift = object_position[2]
    oy = int(oy - lift / MAX_HEIGHT * 10 * scale)
    radius = int(round((3 + 2 * lift / MAX_HEIGHT) * scale))
    rows, cols = np.ogrid[0:size, 0:size]
    if shape == "disk":
        mask = (rows - oy) ** 2 + (cols - ox) ** 2 <= radius**2
    elif shape == "tall":
        mask = (abs(rows - oy) <= radius + 1) & (abs(cols - ox) <= max(radius - 1, 1))
    else:
        mask = (abs(rows - oy) <= radius) & (abs(cols - ox) <= radius)
    image[mask] = color
    # hand: square, bigger when higher (closer to the camera), inner shade = finger closure
    hx, hy = _to_pixel(state[:2], size)
    height = float(np.clip(state[2], 0.0, MAX_HEIGHT))
    half = int(round((4 + 3 * height / MAX_HEIGHT) * scale))
    closure = float(np.clip(state[6:].mean() / 1.5, 0.0, 1.0))
    top, left = max(hy - half, 0), max(hx - half, 0)
    image[top:hy + half + 1, left:hx + half + 1] = (235, 205, 180)
    inner = max(half - 2, 1)
    shade = int(200 - 150 * closure)
    image[max(hy - inner, 0):hy + inner + 1, max(hx - inner, 0):hx + inner + 1] = (shade, shade // 2, shade // 3)
    return image


def _object_step(obj: np.ndarray, prev_state: np.ndarray, state: np.ndarray, held: bool, task: str) -> tuple[np.ndarray, bool]:
    obj = obj.copy()
    hand_xy, hand_z = state[:2], state[2]
    closure = state[6:].mean() / 1.5
    near = np.linalg.norm(hand_xy - obj[:2]) < 0.05
    if task != "push_box" and held and closure > 0.4:
        obj[:2] = hand_xy
        obj[2] = max(hand_z - 0.02, 0.0)
        return obj, True
    if task != "push_box" and near and hand_z < 0.06 and closure > 0.6:
        obj[:2] = hand_xy
        obj[2] = max(hand_z - 0.02, 0.0)
        return obj, True
    obj[2] = 0.0  # released or never held: on the table
    if task == "push_box" and hand_z < 0.08 and np.linalg.norm(hand_xy - obj[:2]) < 0.07:
        motion = hand_xy - prev_state[:2]
        obj[:2] = np.clip(obj[:2] + motion, -WORKSPACE, WORKSPACE)
    return obj, False


def _scripted_targets(task: str, obj_xy: np.ndarray, rng: np.random.Generator, failure: str, steps: int) -> np.ndarray:
    """Joint targets of a pick-and-lift or a push, with the failure mode baked in."""
    offset = rng.normal(0.0, 0.01, 2)
    if failure == "offset":
        offset += rng.choice([-1, 1], 2) * rng.uniform(0.06, 0.1, 2)
    targets = np.zeros((steps, NUM_JOINTS), np.float32)
    targets[:, 3:6] = rng.normal(0.0, 0.05, 3)
    open_fingers, closed_fingers = 0.1, 1.4
    if failure == "missed_grasp":
        closed_fingers = 0.5
    for t in range(steps):
        phase = t / steps
        if task == "push_box":
            direction = MARK - obj_xy
            direction = direction / (np.linalg.norm(direction) + 1e-6)
            start = obj_xy - 0.07 * direction + offset
            goal = MARK - 0.03 * direction + offset
            if phase < 0.3:
                xy, z = start, 0.2 * (1 - phase / 0.3) + 0.03
            else:
                xy, z = start + (goal - start) * min((phase - 0.3) / 0.6, 1.0), 0.03
            fingers = open_fingers
        else:
            xy = obj_xy + offset
            if phase < 0.3:
                z, fingers = 0.2, open_fingers
            elif phase < 0.45:
                z, fingers = 0.02, open_fingers
            elif phase < 0.6:
                z, fingers = 0.02, closed_fingers
            else:
                z, fingers = 0.25, closed_fingers
                if failure == "early_release" and phase > 0.75:
                    fingers = open_fingers
        targets[t, :2] = xy
        targets[t, 2] = z
        targets[t, 6:] = fingers + rng.normal(0.0, 0.03, NUM_JOINTS - 6)
    targets[:, :3] += rng.normal(0.0, 0.005, (steps, 3))
    return targets


def make_synthetic_episode(task: str, rng: np.random.Generator, num_steps: int = 32, image_size: int = 64,
                           failure: str = "", seed: int = 0) -> Episode:
    """One scripted robot episode; ``failure`` in ``("", "offset", "missed_grasp", "early_release")``."""
    instruction, _, _ = TASKS[task]
    background = _background(image_size)
    obj_xy = rng.uniform(-0.15, 0.1, 2).astype(np.float32)
    state = np.zeros((num_steps + 1, NUM_JOINTS), np.float32)
    state[0, :2] = rng.uniform(-0.25, 0.25, 2)
    state[0, 2] = 0.2
    state[0, 6:] = 0.1
    targets = _scripted_targets(task, obj_xy, rng, failure, num_steps)
    objects = np.zeros((num_steps + 1, 7), np.float32)
    objects[:, 3] = 1.0  # identity quaternion (w, x, y, z)
    objects[0, :2] = obj_xy
    held = False
    for t in range(num_steps):
        state[t + 1] = state[t] + GAIN * (targets[t] - state[t])
        objects[t + 1, :3], held = _object_step(objects[t, :3], state[t], state[t + 1], held, task)
    frames = np.stack([render(state[t], objects[t, :3], task, image_size, background) for t in range(num_steps + 1)])
    if task == "push_box":
        success = bool(np.linalg.norm(objects[-1, :2] - MARK) < 0.05)
    else:
        success = bool(objects[-1, 2] > 0.15)
    return Episode(
        task=task, instruction=instruction, embodiment="robot", frames=frames, state=state, action=targets,
        object_pose=objects, success=success, scene={"synthetic": True, "task": task}, seed=seed,
        source="rollout", perturbation=failure,
    ).validate()


def make_synthetic_episodes(num_episodes: int, seed: int = 0, num_steps: int = 32, image_size: int = 64,
                            failure_rate: float = 0.35, tasks: tuple[str, ...] = tuple(TASKS)) -> list[Episode]:
    """Mixed-task episodes, about ``failure_rate`` of them with a scripted failure mode."""
    rng = np.random.default_rng(seed)
    episodes = []
    for index in range(num_episodes):
        task = tasks[index % len(tasks)]
        failure = ""
        if rng.random() < failure_rate:
            failure = str(rng.choice(["offset"] if task == "push_box" else ["offset", "missed_grasp", "early_release"]))
        episodes.append(make_synthetic_episode(task, rng, num_steps, image_size, failure, seed=seed * 100003 + index))
    return episodes

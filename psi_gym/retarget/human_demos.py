"""Human demonstrations: the scripted human hand performs a task in the ground-truth world.

Two tiers, as in the report:
- ``precision``: exact keypoints and wrist pose (as from a motion-capture glove) — replayable;
- ``generalization``: what a video hand-pose estimator would give — keypoints and wrist pose
  with per-frame jitter, slow drift and occasional outlier frames.
The hand's actual motion is identical in both tiers; only the recorded hand pose differs.

Demos are made here, next to the retargeting they feed (``psi-gym demos``), not in `psi_gym.data`,
which only holds the episode schema and its files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from psi_gym.data.episode import Episode
from psi_gym.sim.replay import replay_targets
from psi_gym.sim.rotations import axis_angle_quat, quat_mul
from psi_gym.sim.scripted import plan_task
from psi_gym.sim.tasks import get_task
from psi_gym.sim.world import get_world

TIERS = ("precision", "generalization")


def episode_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Independent, reproducible random stream for episode `index` of a run seeded `seed`."""
    return np.random.default_rng([int(seed), int(index), int(stream)])


def make_demo(task_name: str, seed: int, index: int = 0, tier: str = "precision", image_size: int = 64) -> Episode:
    """One human demonstration of `task_name`, reproducible from (seed, index)."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}: expected one of {TIERS}")
    task = get_task(task_name)
    rng = episode_rng(seed, index)
    scene = task.sample_scene(rng)
    targets = plan_task(scene, "human", rng)
    recording = replay_targets(get_world("human", task.object_kind, image_size), scene, targets)
    keypoints, wrist_pose = recording.keypoints, recording.wrist_pose
    if tier == "generalization":
        keypoints, wrist_pose = estimator_noise(keypoints, wrist_pose, episode_rng(seed, index, stream=1))
    return Episode.from_recording(
        recording, task, scene, "human", seed=int(seed), source="demo", tier=tier,
        wrist_pose=wrist_pose.astype(np.float32), keypoints=keypoints.astype(np.float32),
        metadata={"index": int(index), "id": demo_id(task.name, tier, seed, index)},
    )


def demo_id(task: str, tier: str, seed: int, index: int) -> str:
    return f"{task}-{tier}-s{seed}-{index:04d}"


def iter_demos(
    task_names: list[str], num: int, seed: int, tier: str = "precision", image_size: int = 64, progress: Callable[[int], None] | None = None
) -> Iterator[Episode]:
    """`num` demonstrations cycling through `task_names` (episode i does task i mod len)."""
    for index in range(num):
        yield make_demo(task_names[index % len(task_names)], seed, index, tier, image_size)
        if progress is not None:
            progress(1)


def estimator_noise(keypoints: np.ndarray, wrist_pose: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt a clean hand track the way a monocular hand-pose estimator does.

    keypoints (T, 21, 3), wrist_pose (T, 7) -> noisy copies:
    - i.i.d. per-keypoint jitter, sigma 4 mm;
    - a slow per-episode drift of the whole hand (random walk, 1.5 mm/step), which also moves
      the wrist;
    - 5% outlier frames where the fingers are re-estimated badly (sigma 12 mm);
    - wrist orientation jitter, sigma 2 degrees about a random axis.
    """
    steps = len(keypoints)
    drift = np.cumsum(rng.normal(0.0, 0.0015, size=(steps, 3)), axis=0)
    noisy = keypoints + drift[:, None, :] + rng.normal(0.0, 0.004, size=keypoints.shape)
    outliers = rng.random(steps) < 0.05
    noisy[outliers, 1:] += rng.normal(0.0, 0.012, size=(int(outliers.sum()), 20, 3))
    wrist = wrist_pose.copy()
    wrist[:, :3] += drift + rng.normal(0.0, 0.002, size=(steps, 3))
    for t in range(steps):
        delta = axis_angle_quat(rng.normal(size=3), np.deg2rad(rng.normal(0.0, 2.0)))
        wrist[t, 3:] = quat_mul(delta, wrist[t, 3:])
    return noisy, wrist

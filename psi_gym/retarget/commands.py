"""The retarget part's subcommands: making episodes in the ground-truth world and looking at them.

* ``psi-gym demos``: human demonstrations (`psi_gym.retarget.human_demos`);
* ``psi-gym retarget``: their raw retargets replayed on the robot (`psi_gym.retarget.pipeline`);
* ``psi-gym collect``: labelled robot rollouts for W0 training (`psi_gym.retarget.robot_rollouts`);
* ``psi-gym render``: an episode's video, human demo | robot replay side by side.

`psi_gym.cli` lists them from `COMMANDS`; nothing here imports the CLI. Each ``run_*`` returns a
typed summary that the CLI prints as JSON. Heavy imports (MuJoCo, the dataset writer) happen when
a job runs, so that ``psi-gym --help`` stays fast.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psi_gym.sim.tasks import TASKS


def task_list(value: str) -> list[str]:
    """``--task``: ``"all"`` or a comma list of task names."""
    names = sorted(TASKS) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        if name not in TASKS:
            raise argparse.ArgumentTypeError(f"unknown task {name!r}: expected 'all' or one of {sorted(TASKS)}")
    return names


def _rate(values: list[bool]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _per_task(records: dict[str, list[bool]]) -> dict[str, dict[str, float]]:
    return {task: {"episodes": len(v), "success": _rate(v)} for task, v in sorted(records.items())}


# ------------------------------------------------------------------------------------- demos
@dataclass
class DemosSummary:
    """What ``psi-gym demos`` made."""

    episodes: int
    human_success: float
    per_task: dict[str, dict[str, float]]
    tier: str
    seed: int
    out: str
    seconds: float


def configure_demos(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", type=task_list, default=task_list("all"), help="task name, comma list or 'all'")
    p.add_argument("--num", type=int, default=32, help="number of demonstrations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tier", choices=["precision", "generalization"], default="precision")
    p.add_argument("--out", type=Path, required=True, help="dataset folder (LeRobot v3 layout)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")


def run_demos(args: argparse.Namespace) -> DemosSummary:
    from psi_gym.data.writer import produce, write_stream
    from psi_gym.retarget.human_demos import make_demo

    start = time.perf_counter()
    jobs = [(args.task[i % len(args.task)], args.seed, i, args.tier, args.image_size) for i in range(args.num)]
    records: dict[str, list[bool]] = defaultdict(list)
    write_stream(args.out, produce(make_demo, jobs, args.workers, "demos"), overwrite=args.overwrite,
                 on_episode=lambda e: records[e.task].append(e.success))
    successes = [s for v in records.values() for s in v]
    return DemosSummary(episodes=len(successes), human_success=_rate(successes), per_task=_per_task(records),
                        tier=args.tier, seed=args.seed, out=str(args.out), seconds=time.perf_counter() - start)


# ---------------------------------------------------------------------------------- retarget
@dataclass
class RetargetSummary:
    """What ``psi-gym retarget`` made: the human demos' success and their raw retargets' on the robot."""

    episodes: int
    human_success: float
    raw_retarget_success: float
    per_task: dict[str, dict[str, float]]
    out: str
    seconds: float


def configure_retarget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demos", type=Path, required=True, help="a human demo dataset (psi-gym demos)")
    p.add_argument("--out", type=Path, required=True, help="robot dataset of the raw retargeted replays")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")


def _retarget_job(root: str, index: int):
    from psi_gym.data.lerobot import EpisodeDataset
    from psi_gym.retarget.pipeline import retarget_episode

    demo = EpisodeDataset(root)[index]
    return demo.success, retarget_episode(demo)


def run_retarget(args: argparse.Namespace) -> RetargetSummary:
    from psi_gym.data.lerobot import EpisodeDataset
    from psi_gym.data.writer import produce, write_stream

    start = time.perf_counter()
    demos = EpisodeDataset(args.demos)
    if demos.info.get("robot_type") and len(demos) and demos[0].embodiment != "human":
        raise SystemExit(f"{args.demos} holds {demos[0].embodiment} episodes; retarget needs human demos")
    human: dict[str, list[bool]] = defaultdict(list)
    robot: dict[str, list[bool]] = defaultdict(list)
    pairs = produce(_retarget_job, [(str(args.demos), i) for i in range(len(demos))], args.workers, "retarget")

    def episodes():
        for human_success, episode in pairs:
            human[episode.task].append(bool(human_success))
            robot[episode.task].append(episode.success)
            yield episode

    write_stream(args.out, episodes(), overwrite=args.overwrite)
    all_human = [s for v in human.values() for s in v]
    all_robot = [s for v in robot.values() for s in v]
    per_task = {t: {"episodes": len(robot[t]), "human_success": _rate(human[t]), "raw_retarget_success": _rate(robot[t])}
                for t in sorted(robot)}
    return RetargetSummary(episodes=len(all_robot), human_success=_rate(all_human), raw_retarget_success=_rate(all_robot),
                           per_task=per_task, out=str(args.out), seconds=time.perf_counter() - start)


# ----------------------------------------------------------------------------------- collect
@dataclass
class CollectSummary:
    """What ``psi-gym collect`` made: robot rollouts, their failure fraction, per task and per source."""

    episodes: int
    failure_fraction: float
    success_fraction: float
    per_task: dict[str, dict[str, float]]
    by_source: dict[str, dict[str, float]]
    seed: int
    out: str
    seconds: float


def configure_collect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num", type=int, default=64, help="number of robot rollouts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", type=task_list, default=None, help="task name, comma list or 'all' (default: all, cycled)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")


def run_collect(args: argparse.Namespace) -> CollectSummary:
    from psi_gym.data.writer import produce, write_stream
    from psi_gym.retarget.robot_rollouts import make_rollout

    start = time.perf_counter()
    tasks = args.task
    jobs = [(args.seed, i, tasks[i % len(tasks)] if tasks else None, args.image_size) for i in range(args.num)]
    records: dict[str, list[bool]] = defaultdict(list)
    by_kind: dict[str, list[bool]] = defaultdict(list)

    def record(episode):
        records[episode.task].append(episode.success)
        label = episode.metadata.get("kind", "") + (f":{episode.perturbation}" if episode.perturbation else "")
        by_kind[label].append(episode.success)

    write_stream(args.out, produce(make_rollout, jobs, args.workers, "collect"), overwrite=args.overwrite, on_episode=record)
    successes = [s for v in records.values() for s in v]
    return CollectSummary(episodes=len(successes), failure_fraction=1.0 - _rate(successes),
                          success_fraction=_rate(successes), per_task=_per_task(records), by_source=_per_task(by_kind),
                          seed=args.seed, out=str(args.out), seconds=time.perf_counter() - start)


# ------------------------------------------------------------------------------------ render
@dataclass
class RenderSummary:
    """What ``psi-gym render`` wrote; the simulator's outcome of each replay shown (None: not shown)."""

    out: str
    panels: list[str]
    task: str
    human_success: bool | None = None
    robot_success: bool | None = None
    recorded_success: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def configure_render(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episode", required=True, help="DATASET_DIR/EPISODE_INDEX")
    p.add_argument("--out", type=Path, required=True, help="output .mp4")
    p.add_argument("--image-size", type=int, default=128, help="size of the re-rendered replay")


def run_render(args: argparse.Namespace) -> RenderSummary:
    from psi_gym.data.lerobot import EpisodeDataset
    from psi_gym.data.video import side_by_side, write_video
    from psi_gym.retarget.pipeline import reference_from_demo, replay_reference
    from psi_gym.sim.replay import replay_targets
    from psi_gym.sim.scene import SceneParams
    from psi_gym.sim.world import get_world

    root, _, index = args.episode.rpartition("/")
    if not root or not index.lstrip("-").isdigit():
        raise SystemExit(f"--episode must look like DATASET_DIR/INDEX, got {args.episode!r}")
    episode = EpisodeDataset(root)[int(index)]
    scene = SceneParams.from_dict(episode.scene)
    size = args.image_size
    if episode.embodiment == "human":
        # Re-render the human demo at the video size, and the robot replaying its retarget.
        human = replay_targets(get_world("human", scene.object_kind, size), scene, episode.action, start_qpos=episode.state[0])
        robot = replay_reference(scene, reference_from_demo(episode), size)
        panels, labels = [human.frames, robot.frames], ["human demo", "robot: raw retarget replay"]
        summary = RenderSummary(str(args.out), labels, episode.task, human_success=human.success, robot_success=robot.success)
    else:
        robot = replay_targets(get_world("robot", scene.object_kind, size), scene, episode.action, start_qpos=episode.state[0])
        panels, labels = [robot.frames], ["robot replay"]
        summary = RenderSummary(str(args.out), labels, episode.task, robot_success=robot.success,
                                recorded_success=episode.success)
    write_video(args.out, side_by_side(*panels), fps=10)
    return summary


COMMANDS = {
    "demos": ("record human demonstrations in the ground-truth world", configure_demos, run_demos),
    "retarget": ("retarget human demos to the robot and replay them in the sim", configure_retarget, run_retarget),
    "collect": ("collect labelled robot rollouts (successes and failures) for world-model training",
                configure_collect, run_collect),
    "render": ("video of an episode: human demo | robot replay of its retarget, side by side", configure_render, run_render),
}
"""name -> (help, configure(parser), run(args) -> summary), listed by `psi_gym.cli`."""

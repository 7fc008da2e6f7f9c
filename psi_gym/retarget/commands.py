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
import hashlib
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psi_gym.data.arguments import ArgumentProblem, check_output_file, check_output_parent, image_size, positive_int, seed
from psi_gym.sim.tasks import TASKS

TIERS = ("precision", "generalization")  # psi_gym.retarget.human_demos.TIERS, without its imports


def task_list(value: str) -> list[str]:
    """``--task``: ``"all"`` or a comma list of task names."""
    names = sorted(TASKS) if value.strip() == "all" else [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected 'all' or a comma list of task names from {sorted(TASKS)}, "
                                         f"got {value!r}")
    for name in names:
        if name not in TASKS:
            raise argparse.ArgumentTypeError(f"unknown task {name!r}: expected 'all' or one of {sorted(TASKS)}")
    return names


def _rate(values: list[bool]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _per_task(records: dict[str, list[bool]]) -> dict[str, dict[str, float]]:
    return {task: {"episodes": len(v), "success": _rate(v)} for task, v in sorted(records.items())}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -------------------------------------------------------------------- dataset-writing jobs
def _add_dataset_output(p: argparse.ArgumentParser, what: str) -> None:
    """``--out`` and the options every dataset-writing command shares."""
    p.add_argument("--out", type=Path, required=True,
                   help=f"{what} dataset folder (LeRobot v3 layout); an unfinished one is built in OUT.partial and "
                        "rerunning the same command resumes it")
    p.add_argument("--workers", type=positive_int, default=1, help="processes making episodes")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the dataset at --out (it stays in place until the new one is complete); also "
                        "discards an unfinished OUT.partial made with other arguments")
    p.add_argument("--video", action="store_true",
                   help="store frames as H.264 mp4 (lossy; 4:4:4 chroma below 256 px) instead of lossless PNG")
    p.add_argument("--commit-every", type=positive_int, default=256,
                   help="episodes per commit: a killed run loses at most this many (default 256)")


def _open_writer(args: argparse.Namespace, command: str, params: dict[str, Any], planned: int,
                 count_param: str | None, checks: dict[str, Any] | None = None):
    """The job's `DatasetJobWriter`, opened: every ``--out`` check runs here, before any work."""
    from psi_gym.data.atomic import TargetLockedError
    from psi_gym.data.writer import DatasetJob, DatasetJobWriter

    check_output_parent(args.out, "--out")
    job = DatasetJob(command, {**params, "video": bool(args.video)}, planned, count_param, checks or {})
    writer = DatasetJobWriter(args.out, job, overwrite=args.overwrite, video=args.video,
                              commit_every=args.commit_every)
    try:
        writer.open()
    except (TargetLockedError, FileExistsError, NotADirectoryError, PermissionError) as error:
        raise ArgumentProblem("--out", str(error)) from None
    if writer.committed:
        _log(f"psi-gym {command}: resuming {writer.partial}: {writer.committed} of {planned} episodes are committed")
    return writer


def _episodes_table(root: Path):
    from psi_gym.data.lerobot import EpisodeDataset

    return EpisodeDataset(root).episodes_table


def _open_dataset(root: Path, flag: str, **kwargs: Any):
    """An input dataset, or one line naming ``flag`` that says what is wrong with it."""
    from psi_gym.data.lerobot import DatasetError, EpisodeDataset

    try:
        return EpisodeDataset(root, **kwargs)
    except DatasetError as error:
        raise ArgumentProblem(flag, str(error)) from None


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
    resumed_from: int = 0
    """episodes an earlier, interrupted run had committed (0: a fresh run)."""


def configure_demos(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", type=task_list, default="all", help="task name, comma list or 'all'")
    p.add_argument("--num", type=positive_int, default=32, help="number of demonstrations")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--tier", choices=TIERS, default="precision")
    p.add_argument("--image-size", type=image_size, default=64)
    _add_dataset_output(p, "human-demo")


def run_demos(args: argparse.Namespace) -> DemosSummary:
    from psi_gym.data.writer import produce
    from psi_gym.retarget.human_demos import make_demo

    start = time.perf_counter()
    params = {"task": args.task, "num": args.num, "seed": args.seed, "tier": args.tier, "image_size": args.image_size}
    with _open_writer(args, "demos", params, args.num, "num") as writer:
        jobs = [(args.task[i % len(args.task)], args.seed, i, args.tier, args.image_size)
                for i in range(writer.committed, args.num)]
        writer.write(produce(make_demo, jobs, args.workers, "demos", initial=writer.committed, total=args.num))
    table = _episodes_table(args.out)
    records: dict[str, list[bool]] = defaultdict(list)
    for task, success in zip(table.column("task_name").to_pylist(), table.column("success").to_pylist()):
        records[task].append(success)
    successes = [s for v in records.values() for s in v]
    return DemosSummary(episodes=len(successes), human_success=_rate(successes), per_task=_per_task(records),
                        tier=args.tier, seed=args.seed, out=str(args.out), seconds=time.perf_counter() - start,
                        resumed_from=writer.resumed_from)


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
    _add_dataset_output(p, "robot dataset of the raw retargeted replays:")


def _retarget_job(root: str, index: int):
    from psi_gym.data.lerobot import EpisodeDataset
    from psi_gym.retarget.pipeline import retarget_episode

    return retarget_episode(EpisodeDataset(root)[index])


def run_retarget(args: argparse.Namespace) -> RetargetSummary:
    from psi_gym.data.lerobot import EPISODES_PATH
    from psi_gym.data.writer import produce

    start = time.perf_counter()
    demos = _open_dataset(args.demos, "--demos")
    embodiments = set(demos.episodes_table.column("embodiment").to_pylist())
    if embodiments != {"human"}:
        raise ArgumentProblem("--demos", f"{args.demos} holds {sorted(embodiments)} episodes; retarget needs human "
                                         "demos (psi-gym demos)")
    if args.out.resolve() == Path(args.demos).resolve():
        raise ArgumentProblem("--out", f"{args.out} is the --demos dataset itself; write the retargets elsewhere")
    # the demos are part of the job: a resumed run must retarget the very same ones
    fingerprint = hashlib.sha256((Path(args.demos) / EPISODES_PATH).read_bytes()).hexdigest()[:16]
    params = {"demos": str(Path(args.demos).resolve())}
    with _open_writer(args, "retarget", params, len(demos), None, checks={"demos_fingerprint": fingerprint}) as writer:
        jobs = [(str(args.demos), i) for i in range(writer.committed, len(demos))]
        writer.write(produce(_retarget_job, jobs, args.workers, "retarget", initial=writer.committed,
                             total=len(demos)))
    table = _episodes_table(args.out)
    human: dict[str, list[bool]] = defaultdict(list)
    robot: dict[str, list[bool]] = defaultdict(list)
    for task, human_success, robot_success in zip(table.column("task_name").to_pylist(),
                                                  demos.episodes_table.column("success").to_pylist(),
                                                  table.column("success").to_pylist()):
        human[task].append(bool(human_success))
        robot[task].append(bool(robot_success))
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
    resumed_from: int = 0
    """episodes an earlier, interrupted run had committed (0: a fresh run)."""


def configure_collect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num", type=positive_int, default=64, help="number of robot rollouts")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--task", type=task_list, default=None, help="task name, comma list or 'all' (default: all, cycled)")
    p.add_argument("--image-size", type=image_size, default=64)
    p.add_argument("--sources", type=source_weights, default=None,
                   help="rollout sources and weights, e.g. 'residual' or 'scripted=0.3,residual=0.7' "
                        "(default: scripted=0.3,retarget=0.15,explore=0.3,perturbed=0.25)")
    _add_dataset_output(p, "robot-rollout")


def source_weights(value: str) -> dict[str, float]:
    """``--sources``: ``name`` or ``name=weight`` items, comma separated."""
    from psi_gym.retarget.robot_rollouts import check_sources

    weights: dict[str, float] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        name, _, weight = item.partition("=")
        try:
            weights[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"--sources: {item!r} is not name=weight with a number") from None
    if not weights:
        raise argparse.ArgumentTypeError("--sources: expected at least one source, e.g. 'residual'")
    try:
        return check_sources(weights)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--sources: {error}") from None


def run_collect(args: argparse.Namespace) -> CollectSummary:
    import json

    from psi_gym.data.writer import produce
    from psi_gym.retarget.robot_rollouts import make_rollout

    start = time.perf_counter()
    tasks = args.task
    params = {"num": args.num, "seed": args.seed, "task": tasks, "image_size": args.image_size}
    if args.sources is not None:  # only when given: datasets collected before --sources still resume
        params["sources"] = args.sources
    with _open_writer(args, "collect", params, args.num, "num") as writer:
        jobs = [(args.seed, i, tasks[i % len(tasks)] if tasks else None, args.image_size, args.sources)
                for i in range(writer.committed, args.num)]
        writer.write(produce(make_rollout, jobs, args.workers, "collect", initial=writer.committed, total=args.num))
    table = _episodes_table(args.out)
    records: dict[str, list[bool]] = defaultdict(list)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for task, success, perturbation, metadata in zip(
            table.column("task_name").to_pylist(), table.column("success").to_pylist(),
            table.column("perturbation").to_pylist(), table.column("metadata_json").to_pylist()):
        records[task].append(success)
        by_kind[json.loads(metadata).get("kind", "") + (f":{perturbation}" if perturbation else "")].append(success)
    successes = [s for v in records.values() for s in v]
    return CollectSummary(episodes=len(successes), failure_fraction=1.0 - _rate(successes),
                          success_fraction=_rate(successes), per_task=_per_task(records), by_source=_per_task(by_kind),
                          seed=args.seed, out=str(args.out), seconds=time.perf_counter() - start,
                          resumed_from=writer.resumed_from)


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
    p.add_argument("--image-size", type=image_size, default=128, help="size of the re-rendered replay")


def run_render(args: argparse.Namespace) -> RenderSummary:
    from psi_gym.data.video import side_by_side, write_video
    from psi_gym.retarget.pipeline import reference_from_demo, replay_reference
    from psi_gym.sim.replay import replay_targets
    from psi_gym.sim.scene import SceneParams
    from psi_gym.sim.world import get_world

    root, _, index = args.episode.rpartition("/")
    if not root or not index.lstrip("-").isdigit():
        raise ArgumentProblem("--episode", f"expected DATASET_DIR/INDEX, got {args.episode!r}")
    check_output_file(args.out, "--out")
    dataset = _open_dataset(Path(root), "--episode")
    if not -len(dataset) <= int(index) < len(dataset):
        raise ArgumentProblem("--episode", f"episode {index} out of range: {root} holds {len(dataset)} episodes "
                                           f"(0..{len(dataset) - 1})")
    episode = dataset[int(index)]
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

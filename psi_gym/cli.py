"""`psi-gym`: one subcommand per job. With ``--json`` a job prints exactly one JSON object on
stdout (its summary); progress and logs go to stderr."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from psi_gym.sim.tasks import TASKS

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], dict[str, Any]], str]] = {}


def register(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None],
             run: Callable[[argparse.Namespace], dict[str, Any]]) -> None:
    """Add a subcommand: `configure(parser)` declares its arguments, `run(args)` does the job
    and returns its JSON-serialisable summary."""
    COMMANDS[name] = (configure, run, help)


def _task_list(value: str) -> list[str]:
    names = sorted(TASKS) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        if name not in TASKS:
            raise argparse.ArgumentTypeError(f"unknown task {name!r}: expected 'all' or one of {sorted(TASKS)}")
    return names


def _rate(values: list[bool]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _per_task(records: dict[str, list[bool]]) -> dict[str, dict[str, float]]:
    return {task: {"episodes": len(v), "success": _rate(v)} for task, v in sorted(records.items())}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- demos
def _configure_demos(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", type=_task_list, default=_task_list("all"), help="task name, comma list or 'all'")
    p.add_argument("--num", type=int, default=32, help="number of demonstrations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tier", choices=["precision", "generalization"], default="precision")
    p.add_argument("--out", type=Path, required=True, help="dataset folder (LeRobot v3 layout)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")


def run_demos(args: argparse.Namespace) -> dict[str, Any]:
    from psi_gym.retarget.human_demos import make_demo
    from psi_gym.data.writer import produce, write_stream

    start = time.perf_counter()
    jobs = [(args.task[i % len(args.task)], args.seed, i, args.tier, args.image_size) for i in range(args.num)]
    records: dict[str, list[bool]] = defaultdict(list)
    write_stream(args.out, produce(make_demo, jobs, args.workers, "demos"), overwrite=args.overwrite,
                 on_episode=lambda e: records[e.task].append(e.success))
    successes = [s for v in records.values() for s in v]
    return {"episodes": len(successes), "human_success": _rate(successes), "per_task": _per_task(records),
            "tier": args.tier, "seed": args.seed, "out": str(args.out), "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------------------- retarget
def _configure_retarget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demos", type=Path, required=True, help="a human demo dataset (psi-gym demos)")
    p.add_argument("--out", type=Path, required=True, help="robot dataset of the raw retargeted replays")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")


def _retarget_job(root: str, index: int):
    from psi_gym.data.lerobot import EpisodeDataset
    from psi_gym.retarget.pipeline import retarget_episode

    demo = EpisodeDataset(root)[index]
    return demo.success, retarget_episode(demo)


def run_retarget(args: argparse.Namespace) -> dict[str, Any]:
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
    per_task = {t: {"episodes": len(robot[t]), "human_success": _rate(human[t]), "raw_retarget_success": _rate(robot[t])} for t in sorted(robot)}
    return {"episodes": len(all_robot), "human_success": _rate(all_human), "raw_retarget_success": _rate(all_robot),
            "per_task": per_task, "out": str(args.out), "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------------- collect
def _configure_collect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num", type=int, default=64, help="number of robot rollouts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", type=_task_list, default=None, help="task name, comma list or 'all' (default: all, cycled)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")


def run_collect(args: argparse.Namespace) -> dict[str, Any]:
    from psi_gym.retarget.robot_rollouts import make_rollout
    from psi_gym.data.writer import produce, write_stream

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
    return {"episodes": len(successes), "failure_fraction": 1.0 - _rate(successes), "success_fraction": _rate(successes),
            "per_task": _per_task(records), "by_source": _per_task(by_kind), "seed": args.seed, "out": str(args.out),
            "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------------ render
def _configure_render(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episode", required=True, help="DATASET_DIR/EPISODE_INDEX")
    p.add_argument("--out", type=Path, required=True, help="output .mp4")
    p.add_argument("--image-size", type=int, default=128, help="size of the re-rendered replay")


def run_render(args: argparse.Namespace) -> dict[str, Any]:
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
        outcome = {"human_success": human.success, "robot_success": robot.success}
    else:
        robot = replay_targets(get_world("robot", scene.object_kind, size), scene, episode.action, start_qpos=episode.state[0])
        panels, labels = [robot.frames], ["robot replay"]
        outcome = {"robot_success": robot.success, "recorded_success": episode.success}
    write_video(args.out, side_by_side(*panels), fps=10)
    return {"out": str(args.out), "panels": labels, "task": episode.task, **outcome}


register("demos", "record human demonstrations in the ground-truth world", _configure_demos, run_demos)
register("retarget", "retarget human demos to the robot and replay them in the sim", _configure_retarget, run_retarget)
register("collect", "collect labelled robot rollouts (successes and failures) for world-model training", _configure_collect, run_collect)
register("render", "video of an episode: human demo | robot replay of its retarget, side by side", _configure_render, run_render)


# -------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="psi-gym", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (configure, _, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        configure(sub)
        sub.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    return parser


def _load_plugins() -> None:
    """Subcommands that live next to their part of the library register themselves here."""
    import importlib

    for module in ("psi_gym.world_model.commands", "psi_gym.rewards.commands", "psi_gym.envs.commands"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def main(argv: list[str] | None = None) -> int:
    _load_plugins()
    args = build_parser().parse_args(argv)
    _, run, _ = COMMANDS[args.command]
    try:
        summary = run(args)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as error:
        # Bad input (malformed dataset, unknown name, missing checkpoint...): one clear line.
        log(f"psi-gym {args.command}: error: {error}")
        return 2
    if args.json:
        print(json.dumps(summary, default=_jsonable))
    else:
        for key, value in summary.items():
            log(f"{key}: {json.dumps(value, default=_jsonable)}")
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())

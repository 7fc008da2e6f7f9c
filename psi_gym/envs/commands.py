"""The envs part's subcommand, ``psi-gym bench``: steps/s of the world-model vector env next to
the ground-truth simulator's. `psi_gym.cli` lists it from `COMMANDS`; nothing here imports the CLI.

For each N: the native vector env (``gym.make_vec("PsiW0-Retarget-v0", num_envs=N)``) stepped
with random actions, timed, and split into world-model forward / reward model / env overhead
(ms per batched step); then the ground-truth simulator for the same N, in the same run: N MuJoCo
worlds (one control step + one 64 px render each), split over ``--sim-workers`` processes as a
subprocess vector env of the simulator runs them; by default as many processes as the world
model has torch threads, so that both get the same cores (`psi_gym.sim.benchmark`).
``ratio`` = W0 env steps/s / sim steps/s.

``w0_steps_per_s`` counts the env steps the world model predicted per second of wall time (a
sub-env being autoreset that step is not counted, its reset time is); the profile's
``env_overhead`` is the rest of the step: actions, observations, infos, resets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from psi_gym.data.arguments import (
    ArgumentProblem,
    check_output_dir,
    device,
    int_at_least,
    int_list,
    positive_int,
    seed,
    threads,
)
from psi_gym.world_model.config import INFERENCE_DTYPES


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-envs", type=int_list, default=[1, 16, 64], help="comma list of vector sizes N (default 1,16,64)")
    p.add_argument("--steps", type=positive_int, default=32, help="timed steps per N (default 32)")
    p.add_argument("--warmup", type=int_at_least(0), default=2, help="untimed steps before timing (default 2)")
    p.add_argument("--world-model", default="default",
                   help="checkpoint folder, 'default' (shipped) or 'random:tiny' (untrained weights of the shipped size: "
                        "speed only)")
    p.add_argument("--reward-model", default="object_tracking",
                   help="reward model name or package.module:Name (imports and runs that module's code)")
    p.add_argument("--estimator", default="default", help="object-state estimator folder, 'default' or 'random'")
    p.add_argument("--device", type=device, default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default="float32", choices=INFERENCE_DTYPES, help="world-model weights and compute")
    p.add_argument("--threads", type=threads, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--sim-workers", type=positive_int, default=None,
                   help="simulator processes for the baseline (default: the world model's torch threads)")
    p.add_argument("--no-sim", action="store_true", help="skip the simulator baseline")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--out", type=Path, default=None, help="folder for bench.json and the plot bench.png")


def _time_vector_env(num_envs: int, args: argparse.Namespace, world_model: Any, reward_model: Any) -> dict[str, Any]:
    import gymnasium as gym

    # the objects resolved once in `run` are handed to every vector env
    env = gym.make_vec("PsiW0-Retarget-v0", num_envs=num_envs, world_model=world_model, reward_model=reward_model)
    try:
        env.action_space.seed(args.seed)
        env.reset(seed=args.seed)  # loads demos, embeds instructions: not timed
        for _ in range(args.warmup):
            env.step(env.action_space.sample())
        core = env.unwrapped.core
        core.profile.clear()
        start = time.perf_counter()
        for _ in range(args.steps):
            env.step(env.action_space.sample())
        seconds = time.perf_counter() - start
        profile = core.profile
    finally:
        env.close()
    total_ms = 1000 * seconds / args.steps
    world_model_ms = 1000 * profile.world_model_s / args.steps
    reward_ms = 1000 * profile.reward_model_s / args.steps
    # Count the env steps the world model predicted: a sub-env being autoreset takes no W0 step.
    return {
        "w0_steps_per_s": profile.env_steps / seconds,
        "autoreset_env_steps": num_envs * args.steps - profile.env_steps,
        "profile_ms_per_step": {
            "world_model": world_model_ms,
            "reward_model": reward_ms,
            "env_overhead": total_ms - world_model_ms - reward_ms,
            "total": total_ms,
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from psi_gym.rewards.object_state import load_estimator
    from psi_gym.rewards.resolve import REWARD_MODELS, resolve_reward_model
    from psi_gym.world_model.loading import load_world_model

    if args.out is not None:
        check_output_dir(args.out, "--out")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        model = load_world_model(args.world_model, args.device, args.dtype)
    except FileNotFoundError as error:
        raise ArgumentProblem("--world-model", f"{error} For a speed-only run pass --world-model random:tiny "
                                               "(untrained weights of the shipped size).") from None
    except ValueError as error:
        raise ArgumentProblem("--world-model", str(error)) from None
    estimator = args.estimator
    if args.reward_model in REWARD_MODELS:  # the built-ins read frames with the estimator: load it once, here
        try:
            estimator = load_estimator(args.estimator)
        except (FileNotFoundError, ValueError) as error:
            raise ArgumentProblem("--estimator", str(error)) from None
    try:
        reward_model = resolve_reward_model(args.reward_model, estimator)
    except (ValueError, TypeError) as error:
        raise ArgumentProblem("--reward-model", str(error)) from None
    config = model.config
    summary: dict[str, Any] = {
        "world_model": str(args.world_model),
        "world_model_parameters": sum(p.numel() for p in model.parameters()),
        "image_size": int(config.image_size),
        "num_inference_steps": int(config.num_inference_steps),
        "reward_model": str(args.reward_model),
        "estimator": str(args.estimator),
        "device": str(model.device),
        "dtype": args.dtype,
        "torch_threads": torch.get_num_threads(),
        "sim_workers": args.sim_workers or torch.get_num_threads(),
        "steps": args.steps,
        "profile_unit": "ms per batched step of N envs",
        "results": {},
    }
    for num_envs in args.num_envs:
        log(f"bench: N={num_envs}: world-model vector env ...")
        result = {"num_envs": num_envs, **_time_vector_env(num_envs, args, model, reward_model)}
        if not args.no_sim:
            from psi_gym.sim.benchmark import parallel_sim_steps_per_second

            log(f"bench: N={num_envs}: ground-truth sim ...")
            sim = parallel_sim_steps_per_second(num_envs=num_envs, workers=summary["sim_workers"], steps=args.steps,
                                                seed=args.seed)
            result["sim_steps_per_s"] = sim["sim_steps_per_s"]
            result["ratio"] = result["w0_steps_per_s"] / sim["sim_steps_per_s"]
            result["sim_workers"] = sim["workers"]
            result["sim_ms_per_env_step"] = {"physics": sim["physics_ms_per_step"], "render": sim["render_ms_per_frame"]}
        log(f"bench: N={num_envs}: {result['w0_steps_per_s']:.1f} W0 env steps/s"
            + (f", sim {result['sim_steps_per_s']:.1f}/s, ratio {result['ratio']:.2f}" if "ratio" in result else ""))
        summary["results"][str(num_envs)] = result
    if args.out is not None:
        _write_report(args.out, summary)
    return summary


def _write_report(out: Path, summary: dict[str, Any]) -> None:
    """``OUT/bench.json`` and ``OUT/bench.png``: steps/s against N, and where the W0 step's time goes."""
    from psi_gym.data.atomic import write_bytes_atomic
    from psi_gym.data.plots import Panel, plot_panels

    results = summary["results"].values()
    sizes = [r["num_envs"] for r in results]
    speed = {"W0 vector env": (sizes, [r["w0_steps_per_s"] for r in results])}
    if all("sim_steps_per_s" in r for r in results):
        speed["MuJoCo sim"] = (sizes, [r["sim_steps_per_s"] for r in results])
    parts = ("world_model", "reward_model", "env_overhead")
    profile = {part.replace("_", " "): (sizes, [r["profile_ms_per_step"][part] for r in results]) for part in parts}
    write_bytes_atomic(out / "bench.json", json.dumps(summary, indent=1).encode())
    plot_panels(out / "bench.png", [
        Panel("env steps per second", "N envs", "steps/s", speed, log_x=True, y_from_zero=True),
        Panel("W0 env: ms per batched step", "N envs", "ms", profile, log_x=True, y_from_zero=True),
    ])


COMMANDS = {
    "bench": ("steps/s of the world-model vector env vs the ground-truth sim, with a time profile", configure, run),
}
"""name -> (help, configure(parser), run(args) -> summary), listed by `psi_gym.cli`."""

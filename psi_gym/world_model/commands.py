"""The world-model part's subcommands. `psi_gym.cli` lists them from `COMMANDS`; nothing here
imports the CLI.

* ``psi-gym train-w0 --data ROOT [ROOT ...] --out DIR`` trains Psi-W0 on robot rollouts (resumes
  from the newest checkpoint in DIR; the model lands in DIR/final).
* ``psi-gym bench-w0 [--model DIR]`` times `WorldModel.predict` at a few batch sizes.
* ``psi-gym eval-w0`` reports W0's fidelity against the simulator. It reads outcomes off predicted
  frames with the object-state estimator, which lives in `psi_gym.rewards`, above this part: the
  CLI hands its loader in (`eval_w0_command`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import INFERENCE_DTYPES, TrainConfig, tiny_config  # light: no torch/diffusers until a job runs


def configure_train(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="robot-rollout dataset folder(s) (psi-gym collect)")
    parser.add_argument("--out", type=Path, required=True, help="output folder: checkpoint-*/ and final/")
    parser.add_argument("--steps", type=int, default=defaults.num_steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-from", default=None, help="world-model or Wan diffusers folder to start from")
    parser.add_argument("--max-time", type=float, default=None, help="stop (and save) after this many seconds")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--self-rollout-prob", type=float, default=defaults.self_rollout_prob)
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    parser.add_argument("--num-context-frames", type=int, default=tiny_config().num_context_frames)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--no-resume", action="store_true", help="ignore checkpoints already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    from .training import train_world_model

    config = TrainConfig(
        model=dataclasses.replace(tiny_config(), num_context_frames=args.num_context_frames),
        init_from=args.init_from,
        num_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        max_time_s=args.max_time,
        checkpoint_every=args.checkpoint_every,
        self_rollout_prob=args.self_rollout_prob,
        mixed_precision=args.mixed_precision,
        num_threads=args.threads,
        progress=not args.no_progress,
    )
    summary = train_world_model([str(root) for root in args.data], config, args.out, resume=not args.no_resume)
    return {key: value for key, value in dataclasses.asdict(summary).items() if key != "history"}


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="checkpoint folder or 'default' (default: a fresh default-size model)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=10)


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from .benchmark import benchmark_predict
    from .model import WorldModel

    if args.threads:
        torch.set_num_threads(args.threads)
    model = WorldModel.from_pretrained(args.model) if args.model else WorldModel.from_model_config(tiny_config())
    results = benchmark_predict(model.eval(), args.batch_sizes, args.steps, repeats=args.repeats)
    return {
        "threads": torch.get_num_threads(),
        "num_inference_steps": args.steps or model.config.num_inference_steps,
        "num_parameters": model.num_parameters(),
        **{f"batch_{batch}": values for batch, values in results.items()},
    }


def configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="default", help="world-model folder or 'default'")
    parser.add_argument("--estimator", default="default", help="object-state/success estimator folder or 'default'")
    parser.add_argument("--episodes", type=int, default=48, help="fresh held-out rollouts for PSNR/SSIM")
    parser.add_argument("--pairs", type=int, default=30, help="success/failure pairs for outcome agreement")
    parser.add_argument("--horizon", type=int, default=8, help="open-loop prediction steps (>= 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--video", type=Path, default=None, help="folder for predicted-vs-true videos")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=INFERENCE_DTYPES,
                        help="world-model weights and compute (the estimator stays float32)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")


def run_eval(args: argparse.Namespace, load_estimator: Callable[[str, str], Any]) -> dict[str, Any]:
    """``eval-w0``; ``load_estimator(name_or_folder, device)`` gives the object-state estimator."""
    import torch

    from .fidelity import FidelityConfig, evaluate_fidelity
    from .loading import load_world_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_world_model(args.checkpoint, args.device, args.dtype)
    estimator = load_estimator(args.estimator, args.device)
    config = FidelityConfig(episodes=args.episodes, pairs=args.pairs, horizon=args.horizon, seed=args.seed,
                            video_dir=args.video)
    return {"checkpoint": args.checkpoint, "dtype": args.dtype, **evaluate_fidelity(model, estimator, config).to_dict()}


EVAL_W0_HELP = "fidelity of a world model against the simulator: PSNR/SSIM, counterfactual outcome agreement, speed"


def eval_w0_command(load_estimator: Callable[[str, str], Any]) -> tuple[str, Callable, Callable]:
    """``psi-gym eval-w0`` as a `COMMANDS` entry, with the estimator loader the CLI hands in."""
    return EVAL_W0_HELP, configure_eval, lambda args: run_eval(args, load_estimator)


COMMANDS = {
    "train-w0": ("train the Psi-W0 world model on robot rollouts (successes and failures)", configure_train, run_train),
    "bench-w0": ("time WorldModel.predict (ms per batched step, env steps per second)", configure_bench, run_bench),
}
"""name -> (help, configure(parser), run(args) -> summary), listed by `psi_gym.cli` (with `eval_w0_command`)."""

"""The world-model part's subcommands. `psi_gym.cli` lists them from `COMMANDS`; nothing here
imports the CLI.

* ``psi-gym train-w0 --data ROOT [ROOT ...] --out DIR`` trains Psi-W0 on robot rollouts (resumes
  from the newest checkpoint in DIR; the model lands in DIR/final).
* ``psi-gym ensemble-w0 --models A B [...] --out DIR``: A's perception and renderer, every model's
  dynamics as one ensemble (`psi_gym.world_model.ensemble`).
* ``psi-gym bench-w0 [--model DIR]`` times `WorldModel.predict` at a few batch sizes.
* ``psi-gym fit-hand-servo --model M --data ROOT [ROOT ...] --out DIR``: M with a hand servo
  (`WorldModelConfig.hand_servo`) fitted by least squares to the rollouts' every step.
(``psi-gym eval-w0`` evaluates W0 through the env against the simulator: it lives in
`psi_gym.agents.commands`, above the parts it uses.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from psi_gym.data.arguments import (
    ArgumentProblem,
    check_output_dir,
    int_at_least,
    log_with,
    number_in,
    positive_int,
    seed,
    threads,
)

from .config import PARTS, TrainConfig, tiny_config  # light: no torch/diffusers until a job runs


def parts_list(text: str) -> tuple[str, ...]:
    """``--parts``: comma-separated names among `PARTS`, each once."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PARTS]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct names among {','.join(PARTS)} separated by commas, got {text!r}")
    return names


def unroll_schedule(text: str) -> tuple[tuple[float, int], ...]:
    """``--unroll-schedule``: ``FRACTION:LENGTH,...`` with fractions rising from 0 in [0, 1) and
    lengths >= 0 (0: the whole episode)."""
    expected = f"expected FRACTION:LENGTH pairs such as 0:8,0.25:16,0.5:0 (first fraction 0, rising, below 1; length >= 0), got {text!r}"
    try:
        pairs = tuple((float(fraction), int(length)) for fraction, length in
                      (item.split(":") for item in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(expected) from None
    fractions = [fraction for fraction, _ in pairs]
    if (not pairs or fractions[0] != 0.0 or fractions != sorted(set(fractions)) or fractions[-1] >= 1.0
            or any(length < 0 for _, length in pairs)):
        raise argparse.ArgumentTypeError(expected)
    return pairs

def _check_datasets(roots: list[Path], flag: str) -> None:
    """Each folder is a complete dataset (metadata and file footers checked, frames not read)."""
    from psi_gym.data.lerobot import DatasetError, EpisodeDataset

    for root in roots:
        try:
            EpisodeDataset(root)
        except DatasetError as error:
            raise ArgumentProblem(flag, str(error)) from None


def _check_model_folder(name: str | None, flag: str) -> None:
    """``name`` ("default", a world-model folder or a Wan folder) resolves to a folder with a config."""
    if name is None or name in ("random:tiny", "random:debug"):
        return
    from .checkpoint import WORLD_MODEL_ASSET, is_wan_folder

    try:
        folder = WORLD_MODEL_ASSET.resolve(name)
    except FileNotFoundError as error:
        raise ArgumentProblem(flag, str(error)) from None
    if not ((folder / "config.json").is_file() or is_wan_folder(folder)):
        raise ArgumentProblem(flag, f"{folder} holds no config.json: expected a world-model folder "
                                    "(WorldModel.save_pretrained) or a Wan diffusers folder with transformer/")


def _write_report(out: Path | None, name: str, summary: dict[str, Any], panels: list) -> None:
    """``OUT/<name>.json`` and ``OUT/<name>.png`` (the plot), when ``--out`` is given."""
    if out is None:
        return
    from psi_gym.data.atomic import write_bytes_atomic
    from psi_gym.data.plots import plot_panels

    write_bytes_atomic(out / f"{name}.json", json.dumps(summary, indent=1, default=str).encode())
    plot_panels(out / f"{name}.png", panels)


def configure_train(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="robot-rollout dataset folder(s) (psi-gym collect)")
    parser.add_argument("--out", type=Path, required=True, help="output folder: checkpoint-*/, final/, logs/")
    parser.add_argument("--steps", type=positive_int, default=defaults.num_steps)
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=number_in(0, low_open=True), default=defaults.learning_rate,
                        help="peak rate, reached after --warmup-steps, then a cosine down to --min-learning-rate at --steps")
    parser.add_argument("--min-learning-rate", type=number_in(0), default=defaults.min_learning_rate,
                        help="the rate the cosine ends on at --steps")
    parser.add_argument("--warmup-steps", type=int_at_least(0), default=defaults.warmup_steps,
                        help="steps of linear warm-up to --learning-rate")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--init-from", default=None, help="world-model or Wan diffusers folder to start from")
    parser.add_argument("--max-time", type=number_in(0, low_open=True), default=None,
                        help="stop (and save) after this many seconds")
    parser.add_argument("--checkpoint-every", type=positive_int, default=defaults.checkpoint_every)
    parser.add_argument("--dynamics-batch-size", type=positive_int, default=defaults.dynamics_batch_size,
                        help="dynamics unroll windows per step")
    parser.add_argument("--parts", type=parts_list, default=defaults.parts, metavar=",".join(PARTS),
                        help="the parts trained, the others frozen (e.g. --parts dynamics with --init-from to go on "
                             "training a world model's dynamics alone)")
    parser.add_argument("--unroll-schedule", type=unroll_schedule, default=defaults.unroll_schedule,
                        metavar="FRACTION:LENGTH,...",
                        help="the dynamics' unroll length from each fraction of --steps on (0: whole episodes); "
                             "default " + ",".join(f"{f:g}:{n}" for f, n in defaults.unroll_schedule))
    parser.add_argument("--success-fraction", type=number_in(0, 1), default=None,
                        help="share of the dynamics' unrolls drawn from successful episodes (default: episodes "
                             "uniformly)")
    parser.add_argument("--symmetry-shift", type=number_in(0), default=defaults.symmetry_shift, metavar="METRES",
                        help="move each dynamics unroll with the table by a random horizontal shift of up to this "
                             "along x and y (a physical copy of it: psi_gym.world_model.symmetry; default 0: off)")
    parser.add_argument("--symmetry-turn", type=number_in(0), default=defaults.symmetry_turn, metavar="RADIANS",
                        help="... and a random turn about the vertical of up to this (default 0: off)")
    fresh = tiny_config()
    parser.add_argument("--fresh-dynamics", action="store_true",
                        help="with --init-from: keep that W0's perception and renderer, start its dynamics afresh "
                             "(sized by --dynamics-width/--dynamics-layers/--dynamics-contact-width/"
                             "--dynamics-joint-prior); with --parts "
                             "dynamics this retrains W0's "
                             "physics from scratch")
    parser.add_argument("--dynamics-width", type=positive_int, default=None,
                        help=f"hidden width of a fresh dynamics MLP (default {fresh.dynamics_hidden_dim}); a W0 from "
                             "--init-from keeps its own unless --fresh-dynamics")
    parser.add_argument("--dynamics-layers", type=positive_int, default=None,
                        help=f"hidden layers of a fresh dynamics MLP (default {fresh.dynamics_num_layers}); a W0 from "
                             "--init-from keeps its own unless --fresh-dynamics")
    parser.add_argument("--dynamics-contact-width", type=positive_int, default=None,
                        help="width of a fresh dynamics' per-hand-point contact encoder (default: none); a W0 from "
                             "--init-from keeps its own unless --fresh-dynamics")
    parser.add_argument("--dynamics-joint-prior", action="store_const", const=True, default=None,
                        help="a fresh dynamics moves the hand's joints by a linear servo response fitted to --data "
                             "(least squares, three coefficients per joint) and its MLP adds what that misses "
                             "(contact, limits); a W0 from --init-from keeps its own unless --fresh-dynamics")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the dynamics' unrolled step (faster dynamics training: 2.8x on two CPU "
                             "cores; needs a C++ compiler, or Triton on a GPU)")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    parser.add_argument("--threads", type=threads, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--log-with", type=log_with, default="auto", metavar="{auto,csv,tensorboard,none}",
                        help="loss curves through accelerate's trackers into OUT/logs: tensorboard, csv (metrics.csv "
                             "+ loss.png), none; auto: tensorboard if installed, else csv")
    parser.add_argument("--no-resume", action="store_true", help="ignore checkpoints already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    from psi_gym.data.atomic import TargetLockedError

    from .training import train_world_model

    if args.out.exists() and not args.out.is_dir():
        raise ArgumentProblem("--out", f"{args.out} is a file; expected a folder")
    _check_datasets(args.data, "--data")
    _check_model_folder(args.init_from, "--init-from")
    sizes = {"dynamics_hidden_dim": args.dynamics_width, "dynamics_num_layers": args.dynamics_layers,
             "dynamics_contact_width": args.dynamics_contact_width, "dynamics_joint_prior": args.dynamics_joint_prior}
    sizes = {name: value for name, value in sizes.items() if value is not None}
    if args.fresh_dynamics and not args.init_from:
        raise ArgumentProblem("--fresh-dynamics", "replaces the dynamics of the W0 given by --init-from; without "
                                                  "--init-from the whole W0 is fresh anyway")
    if sizes and args.init_from and not args.fresh_dynamics:
        flag = next(f"--{name}" for name, value in (("dynamics-width", args.dynamics_width),
                                                     ("dynamics-layers", args.dynamics_layers),
                                                     ("dynamics-contact-width", args.dynamics_contact_width),
                                                     ("dynamics-joint-prior", args.dynamics_joint_prior))
                    if value is not None)
        raise ArgumentProblem(flag, f"sizes a fresh dynamics; the W0 from --init-from ({args.init_from}) keeps its own: "
                                    "add --fresh-dynamics to retrain its dynamics from scratch at this size, or drop "
                                    "--init-from to train a whole W0 of this size")
    if args.compile and "dynamics" not in args.parts:
        raise ArgumentProblem("--compile", f"compiles the dynamics' step; --parts {','.join(args.parts)} does not "
                                           "train the dynamics")
    if args.compile:
        from .losses import compile_unavailable

        problem = compile_unavailable()
        if problem:
            raise ArgumentProblem("--compile", f"needs torch.compile to work here: {problem}; or drop --compile")
    check_output_dir(args.out, "--out")  # made only once the inputs are known to be good
    config = TrainConfig(
        model=dataclasses.replace(tiny_config(), **sizes),
        init_from=args.init_from,
        fresh_dynamics=args.fresh_dynamics,
        compile=args.compile,
        num_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        min_learning_rate=args.min_learning_rate,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        max_time_s=args.max_time,
        checkpoint_every=args.checkpoint_every,
        dynamics_batch_size=args.dynamics_batch_size,
        parts=args.parts,
        unroll_schedule=args.unroll_schedule,
        success_fraction=args.success_fraction,
        symmetry_shift=args.symmetry_shift,
        symmetry_turn=args.symmetry_turn,
        mixed_precision=args.mixed_precision,
        num_threads=args.threads,
        progress=not args.no_progress,
    )
    try:
        summary = train_world_model([str(root) for root in args.data], config, args.out, resume=not args.no_resume,
                                    log_with=args.log_with)
    except TargetLockedError as error:
        raise ArgumentProblem("--out", str(error)) from None
    return {key: value for key, value in dataclasses.asdict(summary).items() if key != "history"}


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="checkpoint folder or 'default' (default: a fresh default-size model)")
    parser.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--steps", type=positive_int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--threads", type=threads, default=None, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=positive_int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="folder for bench-w0.json and the plot bench-w0.png")


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from psi_gym.data.plots import Panel

    from .benchmark import benchmark_predict
    from .model import WorldModel

    _check_model_folder(args.model, "--model")
    if args.out is not None:
        check_output_dir(args.out, "--out")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = WorldModel.from_pretrained(args.model) if args.model else WorldModel.from_model_config(tiny_config())
    results = benchmark_predict(model.eval(), args.batch_sizes, args.steps, repeats=args.repeats)
    summary = {
        "threads": torch.get_num_threads(),
        "num_inference_steps": args.steps or model.config.num_inference_steps,
        "num_parameters": model.num_parameters(),
        **{f"batch_{batch}": values for batch, values in results.items()},
    }
    batches = sorted(results)
    _write_report(args.out, "bench-w0", summary, [
        Panel("WorldModel.predict: ms per batched step", "batch size", "ms",
              {"ms per step": (batches, [results[b]["ms_per_step"] for b in batches])}, log_x=True, y_from_zero=True),
        Panel("env steps per second", "batch size", "steps/s",
              {"env steps/s": (batches, [results[b]["env_steps_per_s"] for b in batches])}, log_x=True,
              y_from_zero=True),
    ])
    return summary


def configure_ensemble(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                        help="world-model folders or 'default': the first gives perception and renderer, every "
                             "one its dynamics (2 members at least in all)")
    parser.add_argument("--out", type=Path, required=True, help="folder to save the ensemble W0 in (from_pretrained)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --out")


def run_ensemble(args: argparse.Namespace) -> dict[str, Any]:
    from psi_gym.data.atomic import replacing_dir

    from .ensemble import ensemble_world_model
    from .model import WorldModel

    for name in args.models:
        _check_model_folder(name, "--models")
    if (args.out / "config.json").exists() and not args.overwrite:
        raise ArgumentProblem("--out", f"{args.out} already holds a model; pass --overwrite to replace it")
    check_output_dir(args.out, "--out")
    try:
        model = ensemble_world_model([WorldModel.from_pretrained(name) for name in args.models])
    except ValueError as error:
        raise ArgumentProblem("--models", str(error)) from None
    with replacing_dir(args.out) as tmp:
        model.save_pretrained(tmp)
    return {"out": str(args.out), "dynamics_members": int(model.config.dynamics_members),
            "num_parameters": model.num_parameters()}


def configure_hand_servo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="world-model folder or 'default' (its dynamics, perception "
                                                           "and renderer are kept)")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="robot-rollout dataset folder(s) (psi-gym collect) the servo is fitted to")
    parser.add_argument("--out", type=Path, required=True, help="folder to save the W0 in (from_pretrained)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in --out")


def run_hand_servo(args: argparse.Namespace) -> dict[str, Any]:
    from psi_gym.data.atomic import replacing_dir

    from .model import WorldModel
    from .training import fit_hand_servo

    _check_model_folder(args.model, "--model")
    _check_datasets(args.data, "--data")
    if (args.out / "config.json").exists() and not args.overwrite:
        raise ArgumentProblem("--out", f"{args.out} already holds a model; pass --overwrite to replace it")
    check_output_dir(args.out, "--out")
    try:
        model = fit_hand_servo(WorldModel.from_pretrained(args.model), [str(root) for root in args.data])
    except ValueError as error:
        raise ArgumentProblem("--data", str(error)) from None
    with replacing_dir(args.out) as tmp:
        model.save_pretrained(tmp)
    coefficients = model.hand_response.coefficients
    return {"out": str(args.out), "model": args.model,
            "wrist_coefficients": [[round(float(v), 4) for v in row] for row in coefficients[:3]],
            "finger_coefficients_mean": [round(float(v), 4) for v in coefficients[6:].mean(0)]}


COMMANDS = {
    "train-w0": ("train the Psi-W0 world model on robot rollouts (successes and failures)", configure_train, run_train),
    "ensemble-w0": ("one W0 whose dynamics steps by the mean of several W0s' dynamics", configure_ensemble, run_ensemble),
    "bench-w0": ("time WorldModel.predict (ms per batched step, env steps per second)", configure_bench, run_bench),
    "fit-hand-servo": ("give a W0 a hand drawn where a servo fitted to robot rollouts puts it", configure_hand_servo,
                       run_hand_servo),
}
"""name -> (help, configure(parser), run(args) -> summary), listed by `psi_gym.cli` (``eval-w0``, which
needs the env and the simulator, is `psi_gym.agents.commands`')."""

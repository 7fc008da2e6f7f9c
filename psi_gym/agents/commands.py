"""The agents part's subcommands. `psi_gym.cli` lists them from `COMMANDS`; nothing here imports the CLI.

* ``psi-gym train-r2 --demos HUMAN_DEMOS [--rollouts ROLLOUTS ...] --out DIR``: behaviour cloning
  of Psi-R2 on retargeted human demos (touch as a masked label) and robot rollouts;
* ``psi-gym refine --demos HELDOUT [--tuning-demos TUNING] --refiner cem|ppo --seed S``: refine
  held-out demos inside W0, sim-verified, beside its controls (`psi_gym.agents.refine`);
* ``psi-gym evaluate --policies ... --demos HELDOUT``: policies' success estimated in W0 vs true in
  the simulator, Pearson and Spearman (`psi_gym.agents.evaluation`);
* ``psi-gym eval-w0 --checkpoint default --seed S``: W0 against the simulator, the way the env uses
  it: frame fidelity (`psi_gym.world_model.fidelity`), and whole episodes of candidate refinements
  ranked, judged and near misses told apart (`psi_gym.agents.world_model_report`);
* ``psi-gym train-calibrator --out FILE``: the calibrated success of ``reward_model="calibrated_state"``,
  from candidate pools replayed in the simulator (`psi_gym.agents.calibration`).

Heavy imports (torch, TorchRL, MuJoCo) happen when a job runs, so that ``psi-gym --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from psi_gym.data.arguments import (
    ArgumentProblem,
    check_output_dir,
    device,
    int_at_least,
    check_output_file,
    int_in,
    number_in,
    pool_spec,
    positive_int,
    seed,
    threads,
)


def _threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


# ---------------------------------------------------------------------------------- train-r2
def configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demos", type=Path, nargs="*", default=[], help="human demo dataset(s) (psi-gym demos)")
    p.add_argument("--rollouts", type=Path, nargs="*", default=[],
                   help="robot rollout dataset(s) (psi-gym collect); those retargeting a human demo are used")
    p.add_argument("--include-failures", action="store_true", help="also clone robot rollouts that failed in the sim")
    p.add_argument("--out", type=Path, required=True, help="output folder: checkpoint-*/ and final/ (from_pretrained)")
    p.add_argument("--architecture", choices=("wan", "cnn"), default="wan")
    p.add_argument("--action-space", choices=("synergy", "joint"), default="synergy")
    p.add_argument("--steps", type=positive_int, default=2000)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--learning-rate", type=number_in(0, low_open=True), default=1e-3)
    p.add_argument("--touch-weight", type=number_in(0), default=0.2, help="weight of the masked touch label (0: off)")
    p.add_argument("--frame-weight", type=number_in(0), default=1.0, help="weight of the next-frame target")
    p.add_argument("--checkpoint-every", type=positive_int, default=500)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--threads", type=threads, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true")


def run_train(args: argparse.Namespace) -> Any:
    from psi_gym.agents.behavior_cloning import BCConfig, BCLossWeights, build_samples, collect_sources, train_behavior_cloning
    from psi_gym.agents.policy import PsiR2Config
    from psi_gym.data.lerobot import EpisodeDataset

    if not args.demos and not args.rollouts:
        raise ValueError("give --demos (human demos) and/or --rollouts (robot rollouts)")
    _threads(args)
    humans = [episode for root in args.demos for episode in EpisodeDataset(root)]
    robots = [episode for root in args.rollouts for episode in EpisodeDataset(root)]
    policy = PsiR2Config(architecture=args.architecture, action_space=args.action_space)
    config = BCConfig(policy=policy, weights=BCLossWeights(touch=args.touch_weight, next_frame=args.frame_weight),
                      steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                      checkpoint_every=args.checkpoint_every, seed=args.seed, progress=not args.no_progress)
    sources = collect_sources(humans, robots, successes_only=not args.include_failures)
    samples = build_samples(sources, policy)
    _, summary = train_behavior_cloning(samples, config, args.out)
    return summary


# ------------------------------------------------------------------------------------ refine
def configure_refine(p: argparse.ArgumentParser) -> None:
    from psi_gym.agents.search import SearchConfig

    search = SearchConfig()
    p.add_argument("--demos", required=True, help="held-out demos (retargeted dataset, or human demos): reported")
    p.add_argument("--tuning-demos", default="default", help="tuning demos, another seed (default: the shipped set)")
    p.add_argument("--refiner", choices=("cem", "ppo"), default="cem")
    p.add_argument("--num-demos", type=positive_int, default=8, help="held-out demos used")
    p.add_argument("--num-tuning-demos", type=positive_int, default=8)
    p.add_argument("--world-model", default="default", help="W0: 'default', a folder, or random:debug")
    p.add_argument("--estimator", default="default")
    p.add_argument("--reward-model", default="object_tracking")
    p.add_argument("--population", type=positive_int, default=search.population, help="CEM candidates per demo per iteration")
    p.add_argument("--iterations", type=positive_int, default=search.iterations, help="CEM iterations")
    p.add_argument("--elites", type=positive_int, default=search.elites)
    p.add_argument("--init-std", type=number_in(0, low_open=True), default=search.init_std)
    p.add_argument("--robust-starts", type=int_at_least(0), default=search.robust_starts,
                   help="R: score each plan from R readings of its demo's start, W0 seeing the object off by "
                        "--robust-noise (mean return; R times the W0 rollouts); 0: W0's own reading")
    p.add_argument("--robust-noise", type=number_in(0), default=search.robust_noise,
                   help="m per horizontal axis: how far off a reading sees the object")
    p.add_argument("--max-rows", type=positive_int, default=128, help="W0 env rows per batched step")
    p.add_argument("--policy", default=None, help="R2 folder PPO starts from (psi-gym train-r2); default: a fresh R2")
    p.add_argument("--policy-architecture", choices=("wan", "cnn"), default="wan", help="a fresh R2's trunk")
    p.add_argument("--ppo-iterations", type=positive_int, default=20)
    p.add_argument("--ppo-num-envs", type=positive_int, default=16)
    p.add_argument("--ppo-epochs", type=positive_int, default=4)
    p.add_argument("--ppo-learning-rate", type=number_in(0, low_open=True), default=3e-4)
    p.add_argument("--ppo-log-std", type=number_in(-20, 5), default=-1.0, help="exploration noise (pre-tanh log std) PPO starts from")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--out", type=Path, default=None, help="run folder: summary.json, records.jsonl, videos/, ppo/")
    p.add_argument("--videos", type=int_at_least(0), default=4, help="mp4s of refined rollouts: W0 | sim replay")
    p.add_argument("--threads", type=threads, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true")


def run_refine(args: argparse.Namespace) -> dict[str, Any]:
    from psi_gym.agents.refine import RefineConfig, refine_demos
    from psi_gym.agents.search import SearchConfig

    _threads(args)
    config = RefineConfig(
        demos=args.demos, tuning_demos=args.tuning_demos, refiner=args.refiner, num_demos=args.num_demos,
        num_tuning_demos=args.num_tuning_demos, world_model=args.world_model, estimator=args.estimator,
        reward_model=args.reward_model,
        search=SearchConfig(population=args.population, iterations=args.iterations, elites=args.elites,
                            init_std=args.init_std, robust_starts=args.robust_starts, robust_noise=args.robust_noise),
        max_rows=args.max_rows, policy=args.policy, policy_architecture=args.policy_architecture,
        ppo_iterations=args.ppo_iterations, ppo_num_envs=args.ppo_num_envs, ppo_epochs=args.ppo_epochs,
        ppo_learning_rate=args.ppo_learning_rate, ppo_log_std=args.ppo_log_std, seed=args.seed,
        out=str(args.out) if args.out else None, videos=args.videos, progress=not args.no_progress,
    )
    return refine_demos(config)


# ---------------------------------------------------------------------------------- evaluate
def configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policies", nargs="+", required=True,
                   help="R2 folders (FOLDER or FOLDER@NOISE: sampling with that pre-tanh std), 'raw', 'random:SIZE', "
                        "'oracle' or 'oracle+SIZE' (CEM scored by the simulator: good by construction)")
    p.add_argument("--demos", default="default", help="held-out demos the policies are run on")
    p.add_argument("--num-demos", type=positive_int, default=24)
    p.add_argument("--world-model", default="default")
    p.add_argument("--estimator", default="default")
    p.add_argument("--num-envs", type=positive_int, default=24)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--threads", type=threads, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true")


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from psi_gym.agents.evaluation import EvaluateConfig, evaluate_policies

    _threads(args)
    return evaluate_policies(EvaluateConfig(policies=args.policies, demos=args.demos, num_demos=args.num_demos,
                                            world_model=args.world_model, estimator=args.estimator,
                                            num_envs=args.num_envs, seed=args.seed, progress=not args.no_progress))


# ----------------------------------------------------------------------------------- eval-w0
def configure_eval_w0(p: argparse.ArgumentParser) -> None:
    from psi_gym.world_model.config import INFERENCE_DTYPES

    p.add_argument("--checkpoint", default="default", help="world-model folder or 'default'")
    p.add_argument("--estimator", default="default", help="object-state/success estimator folder or 'default'")
    p.add_argument("--reward-model", default="object_tracking", help="the env's reward model (a built-in name)")
    p.add_argument("--episodes", type=positive_int, default=48, help="fresh held-out rollouts for frame PSNR/SSIM")
    p.add_argument("--horizon", type=int_in(1, 64), default=8, help="steps from the start PSNR/SSIM are averaged over")
    p.add_argument("--demos", type=positive_int, default=24, help="fresh held-out demos for the ranking test")
    p.add_argument("--candidates", type=int_at_least(2), default=16, help="plans per demo: raw + random residuals")
    p.add_argument("--near-misses", type=int_at_least(0), default=8, help="perturbations tried per demo")
    p.add_argument("--num-envs", type=positive_int, default=64, help="rows of the W0 vector env")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--video", type=Path, default=None, help="folder for simulator-vs-W0 videos of the top picks")
    p.add_argument("--out", type=Path, default=None, help="folder for eval-w0.json and the plot eval-w0.png")
    p.add_argument("--device", type=device, default="cpu")
    p.add_argument("--dtype", default="float32", choices=INFERENCE_DTYPES, help="world-model weights and compute")
    p.add_argument("--threads", type=threads, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--no-progress", action="store_true")


def run_eval_w0(args: argparse.Namespace) -> dict[str, Any]:
    import json

    from psi_gym.agents.world_model_report import WorldModelReportConfig, world_model_report
    from psi_gym.data.atomic import write_bytes_atomic
    from psi_gym.data.plots import Panel, plot_panels
    from psi_gym.rewards.object_state import load_estimator
    from psi_gym.rewards.resolve import resolve_reward_model
    from psi_gym.world_model.fidelity import FidelityConfig, evaluate_fidelity
    from psi_gym.world_model.loading import load_world_model

    _threads(args)
    for flag, folder in (("--video", args.video), ("--out", args.out)):
        if folder is not None:
            check_output_dir(folder, flag)
    try:
        model = load_world_model(args.checkpoint, args.device, args.dtype)
    except (FileNotFoundError, ValueError) as error:
        raise ArgumentProblem("--checkpoint", str(error)) from None
    try:
        estimator = load_estimator(args.estimator, args.device)
    except (FileNotFoundError, ValueError) as error:
        raise ArgumentProblem("--estimator", str(error)) from None
    try:
        reward_model = resolve_reward_model(args.reward_model, estimator)
    except (TypeError, ValueError) as error:
        raise ArgumentProblem("--reward-model", str(error)) from None
    fidelity = evaluate_fidelity(model, FidelityConfig(episodes=args.episodes, horizon=args.horizon, seed=args.seed))
    report = world_model_report(model, reward_model, estimator, WorldModelReportConfig(
        demos=args.demos, candidates=args.candidates, near_misses=args.near_misses, seed=args.seed,
        num_envs=args.num_envs, video_dir=args.video, progress=not args.no_progress))
    summary = {"checkpoint": args.checkpoint, "dtype": args.dtype, **fidelity.to_dict(), **report}
    if args.out is not None:
        write_bytes_atomic(args.out / "eval-w0.json", json.dumps(summary, indent=1, default=str).encode())
        steps = list(range(1, len(report["psnr_by_step"]) + 1))
        plot_panels(args.out / "eval-w0.png", [
            Panel("PSNR per step, whole episodes in the env", "step", "dB",
                  {"W0": (steps, report["psnr_by_step"]), "first frame held": (steps, report["psnr_copy_first_by_step"])}),
            Panel("object position error of W0's state", "step", "cm",
                  {"median": (steps, report["object_error_cm_median_by_step"]),
                   "90th percentile": (steps, report["object_error_cm_p90_by_step"])}, y_from_zero=True),
            Panel("Spearman(W0 return, sim score) per demo", "demo", "rho",
                  {"rho": (list(range(len(report["ranking"]["spearman_per_demo"]))), report["ranking"]["spearman_per_demo"])}),
        ])
    return summary


# -------------------------------------------------------------------------- train-calibrator
def configure_train_calibrator(p: argparse.ArgumentParser) -> None:
    from psi_gym.agents.calibration import DEFAULT_POOLS

    p.add_argument("--out", type=Path, required=True, help="the calibrator file to write (safetensors)")
    p.add_argument("--world-model", default="default", help="the W0 whose object paths it reads: 'default' or a folder")
    p.add_argument("--pools", type=pool_spec, nargs="+", default=list(DEFAULT_POOLS),
                   help="candidate pools SEED:DEMOS replayed in the simulator (default 31:96 ... 38:96; keep them apart "
                        "from the seeds you evaluate on)")
    p.add_argument("--candidates", type=int_at_least(2), default=16, help="plans per demo: raw + random residuals")
    p.add_argument("--members", type=positive_int, default=5, help="MLPs in the ensemble")
    p.add_argument("--width", type=positive_int, default=64, help="their hidden width")
    p.add_argument("--steps", type=positive_int, default=600, help="full-batch training steps per member")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--cache", type=Path, default=None,
                   help="folder keeping the simulator's results per pool (read back when present)")
    p.add_argument("--threads", type=threads, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true")


def run_train_calibrator(args: argparse.Namespace) -> dict[str, Any]:
    from psi_gym.agents.calibration import CalibrationConfig, train_calibrator
    from psi_gym.world_model.loading import load_world_model

    _threads(args)
    check_output_file(args.out)
    if args.cache is not None:
        check_output_dir(args.cache, "--cache")
    try:
        world_model = load_world_model(args.world_model, "cpu")
    except (FileNotFoundError, ValueError) as error:
        raise ArgumentProblem("--world-model", str(error)) from None
    if getattr(world_model, "dynamics", None) is None:
        raise ArgumentProblem("--world-model", "this world model predicts no object state; a calibrator reads its object path")
    model, summary = train_calibrator(CalibrationConfig(
        world_model=world_model, pools=tuple(args.pools), candidates=args.candidates, members=args.members,
        width=args.width, steps=args.steps, seed=args.seed, cache=args.cache, progress=not args.no_progress,
        metadata={"world_model": str(args.world_model)}))
    model.save(args.out)
    return {"out": str(args.out), "world_model": str(args.world_model), **summary}


COMMANDS = {
    "eval-w0": ("W0 against the simulator as the env uses it: whole episodes, ranking of refinements, near misses, "
                "verdicts, PSNR", configure_eval_w0, run_eval_w0),
    "train-r2": ("behaviour cloning of Psi-R2 on retargeted human demos (touch masked) and robot rollouts",
                 configure_train, run_train),
    "refine": ("refine held-out retargeted demos inside W0 (CEM or PPO), sim-verified, beside its controls",
               configure_refine, run_refine),
    "evaluate": ("policies' success estimated in W0 vs true in the simulator: Pearson and Spearman",
                 configure_evaluate, run_evaluate),
    "train-calibrator": ("the calibrated success of reward_model='calibrated_state', from candidate pools replayed in "
                         "the simulator", configure_train_calibrator, run_train_calibrator),
}
"""name -> (help, configure(parser), run(args) -> summary), listed by `psi_gym.cli`."""

"""The flywheel part's subcommand. `psi_gym.cli` lists it from `COMMANDS`; nothing here imports the CLI.

* ``psi-gym flywheel --iterations K --robot-episodes N --out DIR [--json]``: the loop of
  `psi_gym.flywheel.loop` (retarget -> refine in W0 -> filter -> write back -> deploy on the robot
  -> retrain W0 and R2, K times), with the variant without the robot budget beside it; prints the
  per-iteration table (stderr) and the JSON summary.

Heavy imports happen when the job runs, so that ``psi-gym --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from psi_gym.data.arguments import (
    ArgumentProblem,
    check_name_or_folder,
    check_output_dir,
    int_at_least,
    number_in,
    pool_spec,
    positive_int,
    seed,
    threads,
)


def configure_flywheel(p: argparse.ArgumentParser) -> None:
    from psi_gym.flywheel.loop import FlywheelConfig
    from psi_gym.flywheel.writeback import RetrainConfig

    c, r = FlywheelConfig(), RetrainConfig()
    p.add_argument("--iterations", type=positive_int, default=c.iterations, help="K: flywheel iterations")
    p.add_argument("--robot-episodes", type=int_at_least(0), default=c.robot_episodes,
                   help="the robot budget per iteration (the simulator in its robot role; 0: none, W0 never corrected)")
    p.add_argument("--no-comparison", action="store_true",
                   help="skip the variant without the robot budget (by default it runs beside)")
    p.add_argument("--out", type=Path, default=Path("runs/flywheel"), help="run folder (rerun to resume)")
    p.add_argument("--overwrite", action="store_true", help="delete a run of another configuration in --out")
    p.add_argument("--demos-per-iteration", type=positive_int, default=c.demos_per_iteration)
    p.add_argument("--train-demo-seed", type=seed, default=c.train_demo_seed)
    p.add_argument("--generalization-every", type=int_at_least(0), default=c.generalization_every,
                   help="every n-th training demo is of the generalization tier (0: all precision)")
    p.add_argument("--heldout-demos", type=positive_int, default=c.heldout_demos, help="held-out demos (judge only)")
    p.add_argument("--heldout-seed", type=seed, default=c.heldout_seed)
    p.add_argument("--ranking-candidates", type=int_at_least(2), default=c.ranking_candidates)
    p.add_argument("--variations", type=int_at_least(0), default=c.variations, help="varied starts per demo (W0)")
    p.add_argument("--population", type=int_at_least(2), default=c.search.population, help="CEM candidates per start")
    p.add_argument("--search-iterations", type=positive_int, default=c.search.iterations, help="CEM iterations")
    p.add_argument("--elites", type=positive_int, default=c.search.elites)
    p.add_argument("--robust-starts", type=int_at_least(0), default=c.search.robust_starts,
                   help="R: the search scores each plan from R readings of its start, W0 seeing the object off by "
                        "--robust-noise (mean return; R times the W0 rollouts); 0: W0's own reading")
    p.add_argument("--robust-noise", type=number_in(0), default=c.search.robust_noise,
                   help="m per horizontal axis: how far off a reading sees the object")
    p.add_argument("--consistency-reruns", type=int_at_least(0), default=c.consistency_reruns,
                   help="W0 reruns of each candidate from its demo's start, W0's reading of the object shifted (self-consistency; 0: none)")
    p.add_argument("--consistency-noise", type=number_in(0), default=c.consistency_noise,
                   help="m: shift of W0's reading of the object's start in each consistency rerun (per axis)")
    p.add_argument("--min-consistency", type=number_in(0, 1), default=c.min_consistency)
    p.add_argument("--second-opinion", nargs="+", default=list(c.second_opinions), metavar="W0",
                   help="other W0 folders (trained apart) that must also call a kept plan a success, each on its "
                        "own tracked state (default: none)")
    p.add_argument("--min-quality", type=number_in(0, 1), default=c.min_quality)
    p.add_argument("--dedupe-distance", type=number_in(0), default=c.dedupe_distance)
    p.add_argument("--exploration", type=number_in(0, 1), default=c.exploration,
                   help="size of the smooth random residual added to R2's action on the robot (0: none)")
    p.add_argument("--bc-steps", type=positive_int, default=r.bc_steps)
    p.add_argument("--w0-steps", type=positive_int, default=r.w0_steps)
    p.add_argument("--w0-learning-rate", type=number_in(0), default=r.w0_learning_rate, help="W0 fine-tuning peak rate")
    p.add_argument("--w0-rehearsal", type=int_at_least(0), default=r.w0_rehearsal,
                   help="episodes of W0's own training data beside the robot's in its dynamics fine-tuning (0: none)")
    p.add_argument("--w0-batch-size", type=positive_int, default=r.w0_batch_size, help="renderer frames per W0 step")
    p.add_argument("--w0-dynamics-batch-size", type=positive_int, default=r.w0_dynamics_batch_size,
                   help="whole-episode dynamics unrolls per W0 step")
    p.add_argument("--w0-perception-batch-size", type=positive_int, default=r.w0_perception_batch_size,
                   help="first frames per W0 step (perception)")
    p.add_argument("--world-model", default=c.world_model, help="W0 to start from: 'default', a folder, random:debug")
    p.add_argument("--estimator", default=c.estimator, help="'default', a folder or 'random'")
    p.add_argument("--reward-model", default=c.reward_model,
                   help="the W0 env's reward model (a built-in name, e.g. state_tracking or calibrated_state)")
    p.add_argument("--min-success-probability", type=number_in(0, 1), default=c.min_success_probability,
                   help="also keep only what the calibrated success (the shipped calibrator on W0's object path) "
                        "gives at least this probability; default: off")
    p.add_argument("--refit-calibrator", action="store_true",
                   help="after each W0 fine-tune, refit the calibrated success on the fine-tuned W0's object paths "
                        "(the next iteration's reward, calibrated filter and ranking test read it)")
    p.add_argument("--calibration-pools", nargs="+", type=pool_spec, default=list(c.calibration_pools), metavar="SEED:DEMOS",
                   help="candidate pools a refit learns from, 16 plans per demo (default: %(default)s)")
    p.add_argument("--calibration-cache", type=Path, default=None,
                   help="folder for those pools' simulator verdicts (default: OUT/calibration-pools)")
    p.add_argument("--policy", default=None, help="R2 folder to start from (default: a fresh R2 = the raw retarget)")
    p.add_argument("--policy-architecture", choices=("wan", "cnn"), default=c.policy_architecture)
    p.add_argument("--max-rows", type=positive_int, default=c.max_rows, help="W0 env rows per batched step")
    p.add_argument("--videos", type=int_at_least(0), default=c.videos)
    p.add_argument("--seed", type=seed, default=c.seed)
    p.add_argument("--threads", type=threads, default=1, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> Any:
    from psi_gym.agents.search import SearchConfig
    from psi_gym.flywheel.loop import FlywheelConfig
    from psi_gym.flywheel.writeback import RetrainConfig

    progress = not args.no_progress
    return FlywheelConfig(
        iterations=args.iterations, robot_episodes=args.robot_episodes, compare_without_robot=not args.no_comparison,
        demos_per_iteration=args.demos_per_iteration, train_demo_seed=args.train_demo_seed,
        generalization_every=args.generalization_every, heldout_demos=args.heldout_demos,
        heldout_seed=args.heldout_seed, ranking_candidates=args.ranking_candidates, variations=args.variations,
        search=SearchConfig(population=args.population, iterations=args.search_iterations,
                            elites=min(args.elites, args.population), robust_starts=args.robust_starts,
                            robust_noise=args.robust_noise),
        consistency_reruns=args.consistency_reruns, consistency_noise=args.consistency_noise,
        min_consistency=args.min_consistency, second_opinions=tuple(args.second_opinion),
        min_quality=args.min_quality, dedupe_distance=args.dedupe_distance, exploration=args.exploration,
        retrain=RetrainConfig(bc_steps=args.bc_steps, w0_steps=args.w0_steps, w0_learning_rate=args.w0_learning_rate,
                              w0_rehearsal=args.w0_rehearsal, w0_batch_size=args.w0_batch_size,
                              w0_dynamics_batch_size=args.w0_dynamics_batch_size,
                              w0_perception_batch_size=args.w0_perception_batch_size, threads=args.threads,
                              progress=False),
        world_model=args.world_model, estimator=args.estimator, reward_model=args.reward_model,
        min_success_probability=args.min_success_probability, refit_calibrator=args.refit_calibrator,
        calibration_pools=tuple(args.calibration_pools),
        calibration_cache=str(args.calibration_cache) if args.calibration_cache else None, policy=args.policy,
        policy_architecture=args.policy_architecture, max_rows=args.max_rows, videos=args.videos, seed=args.seed,
        progress=progress,
    )


def run_flywheel_command(args: argparse.Namespace) -> dict[str, Any]:
    import sys

    from psi_gym.flywheel.loop import run_flywheel

    if args.refit_calibrator and args.reward_model != "calibrated_state" and args.min_success_probability is None:
        raise ArgumentProblem("--refit-calibrator", "refits the calibrated success: use it with --reward-model "
                                                   "calibrated_state or --min-success-probability")
    config = config_from_args(args)
    check_name_or_folder(args.world_model, "--world-model", ("default", "random:debug", "random:tiny"))
    check_name_or_folder(args.estimator, "--estimator", ("default", "random"))
    check_name_or_folder(args.policy, "--policy", ())
    from psi_gym.rewards.resolve import REWARD_MODELS

    if args.reward_model not in REWARD_MODELS:
        raise ArgumentProblem("--reward-model", f"expected one of {sorted(REWARD_MODELS)}, got {args.reward_model!r}")
    for folder in args.second_opinion:
        check_name_or_folder(folder, "--second-opinion", ("default", "random:debug", "random:tiny"))
    check_output_dir(args.out)
    summary = run_flywheel(config, args.out, overwrite=args.overwrite)
    print(summary["table"], file=sys.stderr, flush=True)
    return summary


COMMANDS = {
    "flywheel": ("the data flywheel: retarget -> refine in W0 -> filter -> write back -> deploy on the robot -> "
                 "retrain W0 and R2, K times; with the variant without the robot budget beside",
                 configure_flywheel, run_flywheel_command),
}
"""name -> (help, configure(parser), run(args) -> summary), listed by `psi_gym.cli`."""

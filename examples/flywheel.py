"""The data flywheel, one variant, top to bottom: retarget -> refine in W0 -> filter -> write back ->
deploy on the robot -> retrain W0 and R2, K times; every number judged by the simulator on held-out demos.

The same loop as ``psi-gym flywheel`` (`psi_gym.flywheel.loop`), written out with the part's pieces so
that each step can be read (and changed) in place. ``--robot-episodes 0`` is the variant in which W0 is
never corrected by the robot.

    python examples/flywheel.py --iterations 3 --robot-episodes 16 --out runs/flywheel-example
    python examples/flywheel.py --world-model random:debug --estimator random --iterations 1 --demos 2   # smoke
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

import psi_gym  # noqa: F401  (registers PsiW0-Retarget-v0 and PsiSim-Retarget-v0)
from psi_gym.agents.policy import PsiR2Policy
from psi_gym.agents.search import SearchConfig
from psi_gym.flywheel.buffer import FlywheelBuffer, Provenance
from psi_gym.flywheel.loop import Flywheel, FlywheelConfig, converted_human_demo, refine_and_filter
from psi_gym.flywheel.judge import precision_recall
from psi_gym.flywheel.robot import deploy_policy, make_robot_env
from psi_gym.flywheel.writeback import (
    KEPT_SOURCES,
    RetrainConfig,
    export_datasets,
    finetune_w0,
    human_demo_sources,
    read_exported,
    retrain_r2,
)


@dataclass
class Args:
    iterations: int = 2
    """K: flywheel iterations."""
    demos: int = 6
    """new human demos per iteration (every second one of the noisy generalization tier)."""
    heldout_demos: int = 8
    """held-out demos the judge evaluates R2 and W0 on (another seed; never trained or filtered on)."""
    robot_episodes: int = 16
    """the robot budget per iteration (the simulator in its robot role; 0: W0 is never corrected)."""
    population: int = 8
    """CEM candidates per start per iteration, inside W0."""
    search_iterations: int = 3
    """CEM iterations."""
    bc_steps: int = 100
    """behaviour-cloning steps of R2 per iteration."""
    w0_steps: int = 60
    """fine-tuning steps of W0 per iteration."""
    w0_rehearsal: int = 128
    """episodes of W0's own training data beside the robot's when its dynamics is fine-tuned."""
    world_model: str = "default"
    """Psi-W0 to start from: 'default', a folder, or 'random:debug' (untrained: smoke tests)."""
    estimator: str = "default"
    """the reward model's object-state estimator: 'default', a folder or 'random'."""
    policy_architecture: str = "wan"
    """R2's trunk: 'wan' (tiny WanTransformer3DModel) or 'cnn'."""
    out: str = "runs/flywheel-example"
    """run folder: buffer/, iteration-K/ (datasets, W0, R2)."""
    threads: int = 1
    """torch CPU threads."""
    seed: int = 0
    """seeds the demos' draws, W0's noise, the search, the robot's exploration and the trainers."""


def main(args: Args) -> list[dict[str, float | None]]:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if (out / "buffer").exists():
        raise SystemExit(f"{out} holds an earlier run; this example starts afresh: choose another --out")
    config = FlywheelConfig(
        iterations=args.iterations, demos_per_iteration=args.demos, heldout_demos=args.heldout_demos,
        robot_episodes=args.robot_episodes, compare_without_robot=False,
        search=SearchConfig(population=args.population, iterations=args.search_iterations, elites=2),
        retrain=RetrainConfig(bc_steps=args.bc_steps, w0_steps=args.w0_steps, w0_rehearsal=args.w0_rehearsal,
                              threads=args.threads),
        world_model=args.world_model, estimator=args.estimator, policy_architecture=args.policy_architecture,
        seed=args.seed)
    # The judge's side (held-out demos, the ranking candidates, R2's closed-loop test) and the demo pool.
    flywheel = Flywheel(config, out, overwrite=True)
    flywheel.prepare_folder()
    world_model = flywheel.initial_world_model()  # a folder: W0 is fine-tuned from it
    policy_folder = flywheel.initial_policy()  # a fresh R2: its action head starts at 0, the raw retarget
    policy = PsiR2Policy.from_pretrained(str(policy_folder))
    flywheel.setup_judge()
    rows = []

    def report(iteration: int, kept: int, precision: float | None) -> None:
        evaluation = flywheel.evaluate(world_model, policy_folder)  # the judge: held-out demos only
        rows.append({"iteration": iteration, "kept": kept, "filter_precision": precision,
                     "w0_false_success_rate": evaluation["ranking"]["false_success_rate"],
                     "w0_spearman": evaluation["ranking"]["median_spearman"],
                     "r2_sim_success": evaluation["r2"]["sim_success"]})
        print(rows[-1])

    report(0, 0, None)
    for iteration in range(1, args.iterations + 1):
        start = time.perf_counter()
        demos = flywheel.demos(iteration)  # 1. retarget (the replay's own outcome is blanked)
        with FlywheelBuffer.open(out / "buffer") as buffer:
            existing = {}
            for record in buffer.select(sources=KEPT_SOURCES):
                existing.setdefault(record.demo_id, []).append(buffer.rows(record)["action"][:-1])
            # 2-4. data quality, scene variation, CEM inside W0, filters (W0 only; the judge last, for the report)
            outcome = refine_and_filter(config, str(world_model), demos, iteration, existing,
                                        np.random.default_rng([args.seed, iteration]), print)
            # 5. write back: the demos that pass the quality bar (converted by W0, the human's touch beside)
            #    and the kept trajectories
            for demo in demos:
                if outcome.quality[demo.demo_id] >= config.min_quality:
                    episode, touch = converted_human_demo(demo, outcome.raw(demo.demo_id).episode)
                    buffer.add(episode, Provenance("human_demo", demo.demo_id, iteration,
                                                   {"demo_quality": outcome.quality[demo.demo_id]}), tactile=touch)
            for candidate, keep in zip(outcome.candidates, outcome.keep):
                if keep:
                    buffer.add(candidate.episode, Provenance(candidate.source, candidate.demo_id, iteration,
                                                             candidate.scores, candidate.perturbation))
            buffer.commit()
            # 6. deploy R2 on the robot budget (training demos): true frames, successes and failures
            if args.robot_episodes:
                robot_env = make_robot_env([d.start for d in demos], num_envs=min(8, args.robot_episodes))
                robot = deploy_policy(robot_env, policy, args.robot_episodes, seed=args.seed + iteration,
                                      exploration=config.exploration)
                buffer.extend([(r.episode, Provenance("robot_episode", r.episode.parent, iteration)) for r in robot])
            exported = export_datasets(buffer, out / f"iteration-{iteration}" / "data")  # LeRobot v3.0
            human_demos = human_demo_sources(buffer)
        # 7. retrain both models on what was written back
        kept, robot_data = read_exported(exported)
        folder, seed = out / f"iteration-{iteration}", args.seed + iteration
        # (W0's dynamics learns from the robot's episodes with episodes of its own training data beside them)
        world_model, _ = finetune_w0(world_model, kept, robot_data, config.retrain, folder / "w0", seed=seed,
                                     rehearsal=flywheel.rehearsal() if robot_data else ())
        policy, summary = retrain_r2(policy, kept, robot_data, config.retrain, folder / "r2", seed=seed,
                                     human_demos=human_demos)
        if summary is not None:
            policy_folder = folder / "r2" / "final"
        filters = precision_recall(outcome.keep, outcome.judge_success)
        print(f"iteration {iteration}: {time.perf_counter() - start:.0f}s")
        report(iteration, filters["kept"], filters["precision"])
    return rows


if __name__ == "__main__":
    main(tyro.cli(Args))

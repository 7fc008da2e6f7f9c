"""The showcase that ``make demo`` runs (``python -m psi_gym.showcase``): a small data flywheel on the
shipped defaults (Psi-W0, the object-state estimator), end to end, in under 10 minutes on 2 CPU cores.

Each iteration: fresh human demos are retargeted, refined inside W0 (with varied starts), filtered
by W0 alone, written back (buffer + LeRobot dataset), R2 is deployed on a small robot budget (the
simulator in its robot role), and W0 and R2 are retrained on what came back. The simulator as judge
reports, on held-out demos: R2's success, W0's false-success rate and ranking Spearman, and the
filters' precision. The variant without the robot budget runs beside it.

Everything lands in ``runs/demo/`` (``summary.json``, ``flywheel.png``, ``videos/``: the best refined
rollouts, W0 beside the simulator's replay); the per-iteration table is printed, a JSON summary
last. ``--world-model`` starts from another W0 (a folder; the shipped one by default). Bigger runs:
``psi-gym flywheel --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from psi_gym.data.arguments import ArgumentProblem, check_name_or_folder, check_output_dir
from psi_gym.data.arguments import seed as seed_type


def showcase_config(seed: int = 0, world_model: str = "default", progress: bool = True, **changes: Any):
    """The small flywheel ``make demo`` runs (sizes chosen for <= 10 minutes on 2 CPU cores);
    ``changes``: other `FlywheelConfig` fields (tests shrink the sizes)."""
    from psi_gym.agents.search import SearchConfig
    from psi_gym.flywheel.loop import FlywheelConfig
    from psi_gym.flywheel.writeback import RetrainConfig

    config = FlywheelConfig(
        iterations=3, demos_per_iteration=4, heldout_demos=10, ranking_candidates=4, variations=1,
        search=SearchConfig(population=6, iterations=3, elites=2), robot_episodes=12,
        retrain=RetrainConfig(bc_steps=60, w0_steps=40, w0_rehearsal=64, threads=1), policy_architecture="cnn", videos=2,
        world_model=world_model, seed=seed, progress=progress,
    )
    return dataclasses.replace(config, **changes)


def main(argv: list[str] | None = None, **changes: Any) -> int:
    """``python -m psi_gym.showcase [--out DIR] [--seed N] [--world-model W0]``; ``changes`` go to
    `showcase_config` (the tests' smaller sizes; the command line has none)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--seed", type=seed_type, default=0)
    parser.add_argument("--world-model", default="default",
                        help="the W0 to start from: 'default' (shipped), a folder, or random:debug (untrained)")
    args = parser.parse_args(argv)
    try:  # the same checks as `psi-gym flywheel`, before any work
        check_name_or_folder(args.world_model, "--world-model", ("default", "random:debug", "random:tiny"))
        check_output_dir(args.out)
    except ArgumentProblem as problem:
        parser.error(str(problem))

    from psi_gym.flywheel.loop import run_flywheel

    start = time.perf_counter()
    print(f"psi_gym showcase: a small data flywheel on Psi-W0 {args.world_model!r} (numbers: the simulator as "
          "judge, held-out demos)", file=sys.stderr, flush=True)
    # the same seed and sizes give the same run: a rerun resumes it (or reprints it when it is done)
    summary = run_flywheel(showcase_config(args.seed, args.world_model, **changes), args.out, overwrite=True)
    print(summary["table"])
    print(f"plot: {summary['plot']}\nvideos: {', '.join(summary['videos']) or '-'}")
    compact = {"out": summary["out"], "r2_sim_success_gain": summary["gain"],
               "w0_false_success_change": summary["w0_false_success_change"],
               "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(compact))
    return 0


if __name__ == "__main__":
    sys.exit(main())

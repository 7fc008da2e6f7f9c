"""W0's success verdict, calibrated: can the probability that the simulator agrees be read off W0's own unroll?

W0 calls a plan a success when the object it tracks ends where the task's rule says
(`psi_gym.sim.tasks.Task.is_success` on its last predicted state); on held-out candidate
refinements 6 in 10 of those verdicts hold in the simulator. This benchmark asks whether more of
W0's own prediction than its last state tells which ones will (issue 10's false successes, issue
12's filter precision):

* what the calibrator reads (`FEATURES`, `unroll_features`): W0's dynamics unrolled over the plan's
  joint targets from its perception of the first frame, as the env does, summarised: the task, W0's
  tracking return and verdict, the success margin (lift: height above the 6 cm bar; push: distance
  inside the mark's 2 cm) at the end, over the last 5 steps, 10 steps before the end and at best,
  the object's speed, height and travel, how many of the hand's 29 points touch the object (within
  6 mm of its surface) and the nearest one's gap, the palm's distance to the object, when W0 first
  calls the task done and for what share of the episode. Never the simulator, pixels or the
  estimator;
* what it is: an ensemble of small MLPs on standardised features, each on a bootstrap draw of the
  training rows, stopped at its lowest loss on a split of the demos; its mean is the probability;
* what it learns from: eval-w0's candidate pools of other seeds (``--pools``: held-out-style demos,
  the raw retarget and smooth random residuals of the sizes refinement searches, replayed in the
  simulator: `psi_gym.agents.world_model_report.candidate_pool`, cached under ``--cache``, shared
  with `w0_dynamics_ranking.py`);
* what it is judged on: eval-w0's pools (``--eval-pools``: the seeds every ranking figure of the
  README uses), W0's verdict and ranking beside it; and, with ``--flywheel-candidates``, the
  flywheel's own candidates (the caches `flywheel_filters.py` writes: raw retargets, plans refined
  inside W0, varied starts, with what the flywheel's filters kept and the judge's verdict).

Run: ``python benchmarks/success_calibration.py --flywheel-candidates runs/flywheel-filters/*-v2.pkl``
(about 10 minutes on 2 cores with the simulator's results cached; 16 more without).
"""

from __future__ import annotations

import argparse
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psi_gym.agents.rollouts import DemoRef, sim_tracking_return
from psi_gym.data.arguments import pool_spec
from psi_gym.rewards.success_calibration import (  # noqa: F401  (load_calibrator: w0_exploits.py reads it here)
    PATH_FEATURES,
    Calibrator,
    load_calibrator,
    path_features,
)
from psi_gym.rewards.success_calibration import fit_calibrator as fit_path_calibrator
from psi_gym.sim.scene import SceneParams

HAND_FEATURES = ("contacts_end", "contacts_last10", "contact_gap_end_cm", "palm_distance_end_cm")
"""what this benchmark reads beyond the env's `PATH_FEATURES`: the hand against the object."""
FEATURES = (*PATH_FEATURES[:PATH_FEATURES.index("first_success")], *HAND_FEATURES, "first_success", "success_fraction")
"""The calibrator's inputs, in order (see the module doc); margins, speeds, heights in cm (per step for speeds)."""
_PATH_COLUMNS = [FEATURES.index(name) for name in PATH_FEATURES]
_HAND_COLUMNS = [FEATURES.index(name) for name in HAND_FEATURES]
CONTACT_DISTANCE = 0.006  # m: a hand point this close to the object's surface touches it
THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
"""the probability bars whose precision and recall are reported."""


# ---------------------------------------------------------------------------------- features
@torch.no_grad()
def unroll_features(world_model: Any, first_frames: np.ndarray, start_states: np.ndarray, targets: np.ndarray,
                    demos: Sequence[DemoRef], object_shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """W0's dynamics unrolled over ``targets`` (B, H, 22) joint targets from its perception of
    ``first_frames`` (B, h, w, 3) uint8 and ``start_states`` (B, 22): the (B, len(FEATURES)) float32
    features and W0's (B,) return with ``reward_model="state_tracking"`` (tracking + the success bonus).
    ``object_shift`` (B, 2) m: W0's reading of each object's start moved first (`WorldState.shift_object`)."""
    from psi_gym.world_model.dynamics import _link_middles, surface_distance

    targets = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
    if targets.ndim != 3 or targets.shape[-1] != 22 or len(targets) != len(demos) or targets.shape[1] < 1:
        raise ValueError(f"targets must be (B, H >= 1, 22) joint targets for the {len(demos)} demos, got {tuple(targets.shape)}")
    if not torch.isfinite(targets).all():
        raise ValueError("targets hold NaN or infinite values")
    dynamics = world_model.dynamics
    state = world_model.initial_state(np.asarray(first_frames), np.asarray(start_states, np.float32))
    if object_shift is not None:  # W0's reading of each object's start moved by (dx, dy) m, as the env's object_shift
        state = state.shift_object(object_shift)
    geometry = dynamics.target_geometry(targets)
    horizon = targets.shape[1]
    positions, contacts, gaps, palms = [state.object_position.numpy()], [], [], []
    for t in range(horizon):
        state = dynamics.step(state, targets[:, t], (geometry[0][:, t], geometry[1][:, t]))
        positions.append(state.object_position.numpy())
        points = _link_middles(dynamics.kinematics(state.joint_state)[0])
        distance = surface_distance(points, state.object_position, state.object_rotation, state.object_descriptor)
        contacts.append((distance < CONTACT_DISTANCE).float().sum(1).numpy())
        gaps.append(distance.min(1).values.numpy())
        palms.append((points[:, 0] - state.object_position).norm(dim=-1).numpy())
    paths = np.stack(positions, 1).astype(np.float64)
    contacts, gaps, palms = np.stack(contacts, 1), np.stack(gaps, 1), np.stack(palms, 1)
    features = np.zeros((len(demos), len(FEATURES)), np.float32)
    returns = []
    for i, demo in enumerate(demos):
        features[i, _PATH_COLUMNS] = path_features(paths[i], demo.task, SceneParams.from_dict(demo.scene), demo.human_object_pose)
        features[i, _HAND_COLUMNS] = (contacts[i, -1], contacts[i, -10:].mean(), gaps[i, -1] * 100.0, palms[i, -1] * 100.0)
        returns.append(sim_tracking_return(paths[i], demo, bool(features[i, FEATURES.index("verdict")] > 0.5)))
    return features, np.asarray(returns, np.float64)


def fit_calibrator(features: np.ndarray, success: np.ndarray, groups: np.ndarray | None = None,
                   **options: Any) -> tuple[Calibrator, dict[str, Any]]:
    """`psi_gym.rewards.success_calibration.fit_calibrator` on this benchmark's `FEATURES`."""
    return fit_path_calibrator(features, success, groups, names=FEATURES, **options)


# ---------------------------------------------------------------------------------- pools
def pool_features(world_model: Any, seed: int, demos: int, candidates: int = 16,
                  cache: Path | None = None) -> dict[str, np.ndarray]:
    """The candidate pool of ``seed`` (`psi_gym.agents.world_model_report.candidate_pool`: ``demos``
    held-out-style demos x ``candidates`` plans, replayed in the simulator, its results cached under
    ``cache``) and W0's unroll features of each plan: ``features``, ``w0_return``, ``success`` (the
    simulator's verdict), ``sim_return`` and ``demo`` (the demo's index in the pool), one row per plan."""
    from psi_gym.agents.rollouts import plan_targets
    from psi_gym.agents.world_model_report import candidate_pool

    refs, first_frames, rows, plans, (sim_return, sim_success, _) = candidate_pool(seed, demos, candidates, cache)
    demo = np.repeat(np.arange(len(refs)), candidates)
    targets = np.stack([plan_targets(ref, plan) for ref, plan in zip(rows, plans)])
    features, returns = unroll_features(world_model, first_frames[demo], np.stack([ref.start_state for ref in rows]),
                                        targets, rows)
    return {"features": features, "w0_return": returns, "success": np.asarray(sim_success, bool),
            "sim_return": np.asarray(sim_return, np.float64), "demo": demo}


def ranking(score: np.ndarray, pool: dict[str, np.ndarray], candidates: int) -> dict[str, float]:
    """Per demo of ``pool``: the median Spearman of ``score`` against the simulator's return and the
    simulator's success of the top-scored plan."""
    from scipy.stats import spearmanr

    shape = (-1, candidates)
    scores, sim, truth = score.reshape(shape), pool["sim_return"].reshape(shape), pool["success"].reshape(shape)
    rho = [spearmanr(s, r).correlation if np.ptp(s) > 0 and np.ptp(r) > 0 else 0.0 for s, r in zip(scores, sim)]
    return {"spearman_median": round(float(np.median(rho)), 3),
            "top_pick_sim_success": round(float(truth[np.arange(len(truth)), scores.argmax(1)].mean()), 3)}


def kept_counts(keep: np.ndarray, success: np.ndarray) -> dict[str, Any]:
    """Precision and recall of keeping ``keep`` against the simulator's ``success``."""
    keep, success = np.asarray(keep, bool), np.asarray(success, bool)
    return {"kept": int(keep.sum()), "kept_successes": int((keep & success).sum()),
            "precision": round(float(success[keep].mean()), 3) if keep.any() else None,
            "recall": round(float(keep[success].mean()), 3) if success.any() else None}


def flywheel_rows(path: Path) -> list[dict[str, Any]]:
    """The candidates `flywheel_filters.py` cached (its ``-v2`` files: each row holds its demo)."""
    try:
        rows = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError) as error:
        raise ValueError(f"cannot read {path} ({error}); expected a cache of flywheel_filters.py") from None
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict) or "demo" not in rows[0]:
        raise ValueError(f"{path} holds no candidates with their demo; expected a '-v2' cache of flywheel_filters.py "
                         "(rerun it to write one)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world-model", default="default", help="the W0 whose unrolls it reads: folder or 'default'")
    parser.add_argument("--pools", type=pool_spec, nargs="+", default=[(seed, 96) for seed in range(31, 39)],
                        help="training pools SEED:DEMOS (default 31:96 ... 38:96)")
    parser.add_argument("--eval-pools", type=pool_spec, nargs="*",
                        default=[(11, 24), (12, 24), (13, 48), (14, 96), (15, 96)],
                        help="pools it is judged on (eval-w0's seeds; never trained on)")
    parser.add_argument("--flywheel-candidates", type=Path, nargs="*", default=[],
                        help="flywheel_filters.py's candidate caches (runs/flywheel-filters/*-v2.pkl) to judge it on too")
    parser.add_argument("--candidates", type=int, default=16, help="plans per demo: raw + random residuals")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("runs/w0-dynamics-ranking"))
    parser.add_argument("--save", type=Path, default=None,
                        help="write the trained calibrator here (one safetensors file: w0_exploits.py --calibrator reads it)")
    parser.add_argument("--json", action="store_true", help="one JSON object at the end")
    args = parser.parse_args()
    if args.candidates < 2 or args.members < 1 or args.steps < 1:
        parser.error("--candidates must be >= 2, --members and --steps >= 1")
    overlap = sorted({seed for seed, _ in args.pools} & {seed for seed, _ in args.eval_pools})
    if overlap:
        parser.error(f"--eval-pools: seeds {overlap} are also training pools; it is judged on pools it never saw")
    flywheel = {}
    for path in args.flywheel_candidates:
        if not path.is_file():
            parser.error(f"--flywheel-candidates: no file {path}")
        try:
            flywheel[path] = flywheel_rows(path)
        except ValueError as error:
            parser.error(f"--flywheel-candidates: {error}")
    torch.set_num_threads(args.threads)

    from psi_gym.world_model import load_world_model

    world_model = load_world_model(args.world_model, device="cpu")
    train = [pool_features(world_model, seed, demos, args.candidates, args.cache) for seed, demos in args.pools]
    model, fit = fit_calibrator(np.concatenate([pool["features"] for pool in train]),
                                np.concatenate([pool["success"] for pool in train]),
                                np.concatenate([pool["demo"] + k * 1_000_000 for k, pool in enumerate(train)]),
                                members=args.members, steps=args.steps, seed=args.seed)
    if args.save is not None:
        model.save(args.save)
    verdict = FEATURES.index("verdict")
    report: dict[str, Any] = {"world_model": args.world_model, "pools": [list(p) for p in args.pools], "training": fit,
                              "evaluation": [], "flywheel": []}
    print(f"trained on {fit['rows']} candidates ({fit['success_rate']:.3f} succeed in the simulator), validation "
          f"precision at p >= t: {fit.get('validation_precision')}")
    for seed, demos in args.eval_pools:
        pool = pool_features(world_model, seed, demos, args.candidates, args.cache)
        probability = model.probability(pool["features"])
        w0_success = pool["features"][:, verdict] > 0.5
        line = {"seed": seed, "demos": demos, "sim_success_rate": round(float(pool["success"].mean()), 3),
                "w0": {**ranking(pool["w0_return"], pool, args.candidates),
                       **kept_counts(w0_success, pool["success"])},
                "calibrated": {**ranking(probability, pool, args.candidates),
                               **{f"p>={t}": kept_counts(probability >= t, pool["success"]) for t in THRESHOLDS}},
                "sim_top_pick_sim_success": round(float(pool["success"].reshape(-1, args.candidates).max(1).mean()), 3)}
        report["evaluation"].append(line)
        w0, calibrated = line["w0"], line["calibrated"]
        print(f"pool {seed} ({demos} demos): W0 Spearman {w0['spearman_median']:.3f}, pick {w0['top_pick_sim_success']:.3f}, "
              f"its successes {w0['kept_successes']}/{w0['kept']} (recall {w0['recall']}) | calibrated: Spearman "
              f"{calibrated['spearman_median']:.3f}, pick {calibrated['top_pick_sim_success']:.3f}, "
              + ", ".join(f"p>={t} {calibrated[f'p>={t}']['kept_successes']}/{calibrated[f'p>={t}']['kept']} "
                          f"(recall {calibrated[f'p>={t}']['recall']})" for t in THRESHOLDS)
              + f" | sim's pick {line['sim_top_pick_sim_success']:.3f}", flush=True)
    for path, rows in flywheel.items():
        features, _ = unroll_features(world_model, np.stack([r["first"] for r in rows]),
                                      np.stack([r["start_state"] for r in rows]), np.stack([r["action"] for r in rows]),
                                      [r["demo"] for r in rows])
        probability = model.probability(features)
        truth = np.array([r["truth"] for r in rows])
        as_run, w0_success = np.array([r["keep"] for r in rows]), np.array([r["w0_success"] for r in rows])
        line = {"candidates": str(path), "count": len(rows), "as_run": kept_counts(as_run, truth),
                "w0_verdict": kept_counts(w0_success, truth),
                **{f"as_run+p>={t}": kept_counts(as_run & (probability >= t), truth) for t in THRESHOLDS}}
        report["flywheel"].append(line)
        print(f"{path.name}: {len(rows)} candidates, " + ", ".join(
            f"{name} {value['kept_successes']}/{value['kept']} (recall {value['recall']})"
            for name, value in line.items() if isinstance(value, dict)), flush=True)
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()

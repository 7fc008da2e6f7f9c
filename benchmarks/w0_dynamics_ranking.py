"""eval-w0's ranking test on W0's dynamics alone: which dynamics ranks candidate refinements like the simulator?

`psi-gym eval-w0` runs every candidate through the W0 env (renderer included: minutes). The
ranking it reports under ``reward_model="state_tracking"`` depends on the dynamics only (the
reward reads W0's tracked object position), so this script scores the same candidates (same
``--seed``: the same held-out demos and residual plans as eval-w0) by unrolling the dynamics
from W0's perception of each demo's first frame, in one batch: seconds per model, so that
dynamics variants (longer training, ensembles, another data mix) can be compared on many
demos. The simulator's results are cached per seed under ``--cache``. With ``--samples M`` each
candidate's return is the mean over M starts whose object position is perturbed by ``--noise``
(perception's uncertainty). With ``--true-start`` the dynamics starts from the simulator's true
object pose, kind and size instead of the perception's reading (every line reports the
perception's median error on the pool's demos either way).

It reproduces eval-w0: ``--seed 11`` on the shipped default gives median Spearman 0.540 and
W0's top pick 0.292, what ``psi-gym eval-w0 --checkpoint default --reward-model state_tracking
--seed 11`` reports.

Run: ``python benchmarks/w0_dynamics_ranking.py --seed 14 --demos 96 --models default runs/w0/final``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr


def ranking_pool(seed: int, demos: int, candidates: int, cache: Path) -> tuple:
    """eval-w0's ranking candidates for ``seed`` and the simulator's results on them, cached under
    ``cache`` (`psi_gym.agents.world_model_report.candidate_pool`)."""
    from psi_gym.agents.world_model_report import candidate_pool

    return candidate_pool(seed, demos, candidates, cache)


@torch.no_grad()
def tracked_returns(dynamics, state, targets: torch.Tensor, rows: list, geometry=None) -> tuple:
    """Unroll W0's ``dynamics`` from ``state`` over ``targets`` (B, H, 22): the env's return and
    verdict read off the tracked object (``reward_model="state_tracking"``) per row, and the object's
    path (B, H + 1, 3)."""
    from psi_gym.agents.rollouts import sim_tracking_return
    from psi_gym.sim.scene import SceneParams
    from psi_gym.sim.tasks import get_task

    geometry = geometry if geometry is not None else dynamics.target_geometry(targets)
    positions = [state.object_position.numpy()]
    for t in range(targets.shape[1]):
        state = dynamics.step(state, targets[:, t], (geometry[0][:, t], geometry[1][:, t]))
        positions.append(state.object_position.numpy())
    path = np.stack(positions, 1)
    done = np.array([get_task(ref.task).is_success(SceneParams.from_dict(ref.scene), path[i, -1])
                     for i, ref in enumerate(rows)])
    returns = np.array([sim_tracking_return(path[i], ref, done[i]) for i, ref in enumerate(rows)])
    return returns, done, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=11, help="eval-w0's --seed: held-out demos and plans")
    parser.add_argument("--demos", type=int, default=24)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--models", nargs="+", default=["default"], help="W0 folders or 'default'")
    parser.add_argument("--samples", type=int, nargs="+", default=[1], help="perturbed starts averaged per candidate")
    parser.add_argument("--noise", type=float, default=0.003, help="m: std of the start perturbation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path("runs/w0-dynamics-ranking"))
    parser.add_argument("--true-start", action="store_true",
                        help="start the dynamics from the simulator's true object pose, kind and size instead of the "
                             "perception's reading of the first frame (how much of the ranking error is perception)")
    parser.add_argument("--json", action="store_true", help="one JSON line per model and M")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from psi_gym.agents.rollouts import plan_targets
    from psi_gym.world_model import WorldModel
    from psi_gym.world_model.world_state import object_descriptor, quaternion_to_matrix

    refs, first_frames, rows, plans, (sim_return, sim_success, sim_last) = ranking_pool(
        args.seed, args.demos, args.candidates, args.cache)
    targets = torch.from_numpy(np.stack([plan_targets(ref, plan) for ref, plan in zip(rows, plans)])).float()
    demo_of = np.repeat(np.arange(len(refs)), args.candidates)
    shape = (len(refs), args.candidates)
    tasks = np.array([ref.task for ref in refs])
    true_pose = torch.from_numpy(np.stack([ref.human_object_pose[0] for ref in rows])).float()  # the scene's object at rest
    for name in args.models:
        model = WorldModel.from_pretrained(name).eval()
        with torch.no_grad():
            start = model.initial_state(first_frames[demo_of], np.stack([ref.start_state for ref in rows]))
            geometry = model.dynamics.target_geometry(targets)
        perception_error = (start.object_position - true_pose[:, :3]).norm(dim=-1)[::args.candidates].numpy() * 1000.0
        if args.true_start:
            rotation = quaternion_to_matrix(true_pose[:, 3:].numpy())
            start.object_position, start.previous_object_position = true_pose[:, :3].clone(), true_pose[:, :3].clone()
            start.object_rotation, start.previous_object_rotation = rotation, rotation.clone()
            start.object_descriptor = torch.from_numpy(np.stack([object_descriptor(ref.scene) for ref in rows]))
        for samples in args.samples:
            generator = torch.Generator().manual_seed(0)
            returns, success = np.zeros(len(rows)), np.zeros(len(rows))
            for _ in range(samples):
                state = start.select(torch.arange(len(rows)))
                if samples > 1:
                    shift = torch.randn(len(rows), 3, generator=generator) * args.noise
                    state.object_position = state.object_position + shift
                    state.previous_object_position = state.previous_object_position + shift
                candidate_returns, done, path = tracked_returns(model.dynamics, state, targets, rows, geometry)
                returns += candidate_returns / samples
                success += done / samples
                last_error = np.linalg.norm(path[:, -1] - sim_last, axis=-1) * 100.0
            w0, sim, truth = returns.reshape(shape), sim_return.reshape(shape), sim_success.reshape(shape)
            rho = np.array([spearmanr(w0[d], sim[d]).correlation if np.ptp(w0[d]) > 0 else 0.0 for d in range(len(refs))])
            pick = truth[np.arange(len(refs)), w0.argmax(1)]
            said = success > 0.5
            result = {
                "model": name, "samples": samples, "seed": args.seed, "demos": len(refs),
                "start": "true" if args.true_start else "perceived",
                "perception_error_mm_median": round(float(np.median(perception_error)), 2),
                "spearman_median": round(float(np.median(rho)), 3), "w0_top_pick_sim_success": round(float(pick.mean()), 3),
                "sim_top_pick_sim_success": round(float(truth.max(1).mean()), 3), "raw_sim_success": round(float(truth[:, 0].mean()), 3),
                "agreement": round(float((said == sim_success).mean()), 3),
                "false_success_rate": round(float((said & ~sim_success).sum() / max(1, (~sim_success).sum())), 3),
                "last_step_error_cm_median": round(float(np.nanmedian(last_error)), 2),
                "last_step_error_cm_p90": round(float(np.nanpercentile(last_error, 90)), 1),
                "per_task": {task: {"spearman_median": round(float(np.median(rho[tasks == task])), 3),
                                    "w0_top_pick_sim_success": round(float(pick[tasks == task].mean()), 3)}
                             for task in sorted(set(tasks))},
            }
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(f"{name}{' (true start)' if args.true_start else ''} M={samples}: Spearman {result['spearman_median']:.3f}, W0's pick "
                      f"{result['w0_top_pick_sim_success']:.3f} (sim's pick {result['sim_top_pick_sim_success']:.3f}, "
                      f"raw {result['raw_sim_success']:.3f}), agreement {result['agreement']:.3f}, false success "
                      f"{result['false_success_rate']:.3f}, last-step error {result['last_step_error_cm_median']:.2f} cm "
                      f"(p90 {result['last_step_error_cm_p90']:.1f})", flush=True)


if __name__ == "__main__":
    main()

"""How exactly does the simulator keep the table's symmetry that W0's dynamics is trained with?

`psi_gym.world_model.symmetry` moves a trajectory with the table (a turn about the vertical and a
horizontal shift of the wrist, the object and the mark) and trains W0's dynamics on moved copies
(`train-w0 --symmetry-shift --symmetry-turn`). This script replays eval-w0's ranking candidates
(same ``--seed``: the same held-out demos and residual plans) in MuJoCo twice, as they are and
moved (a random turn in ``[-turn, turn]`` and shift in ``[-shift, shift]^2`` per demo), and
compares the moved copy's end, moved back, with the original's: the object's last position and
the task's verdict. For scale, the same last-step distance between the simulator and itself
from W0's reading of the start (``benchmarks/w0_ceiling.py``'s "perceived start" oracle) is
1.0-1.5 cm: contact makes small differences grow.

With ``--models`` it then asks the same of W0's dynamics, from the simulator's true start (the
perception left out): how far W0's end for a moved plan, moved back, lies from its end for the
plan as it is (a dynamics that has the table's symmetry says 0), and W0's last-step error
against the simulator on the plans as they are and moved. The moved replays are cached under
``--cache`` like the simulator's results for the plans themselves.

Run: ``python benchmarks/table_symmetry.py --seed 11 --demos 24 --models default runs/w0/final --json``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def moved_pool(rows: list, plans: list, theta: torch.Tensor, shift: torch.Tensor, demo_of: np.ndarray,
               sim_last: np.ndarray) -> tuple:
    """Each plan and its start moved with its demo's motion, replayed in the simulator: success (N,),
    last object position (N, 3); ``valid`` (N,) False where the moved copy is not physical
    (`psi_gym.world_model.symmetry.physical_copy`), or either replay went unstable."""
    from psi_gym.agents.rollouts import plan_targets
    from psi_gym.sim.verify import replay_verdict
    from psi_gym.world_model.symmetry import move_joints, move_scene, physical_copy

    motion = theta[demo_of].double(), shift[demo_of].double()
    plan = torch.as_tensor(np.stack([np.concatenate([r.start_state[None], plan_targets(r, p)]) for r, p in zip(rows, plans)]),
                           dtype=torch.float64)  # (N, 1 + H, 22): the start, then the targets
    moved = move_joints(plan, *motion)
    physical = physical_copy(plan, moved).numpy()
    starts, targets = moved[:, 0].numpy(), moved[:, 1:].numpy()
    success, last, valid = np.zeros(len(rows), bool), np.full((len(rows), 3), np.nan), np.zeros(len(rows), bool)
    for i, row in enumerate(rows):
        if not physical[i] or not np.isfinite(sim_last[i]).all():
            continue  # not a physical copy (the training leaves such rows unmoved), or the original went unstable
        verdict = replay_verdict(move_scene(row.scene, float(theta[demo_of[i]]), shift[demo_of[i]].numpy()),
                                 starts[i], targets[i])
        if verdict.recording is not None:
            success[i], last[i], valid[i] = verdict.success, verdict.object_pose[:3], True
    return success, last, valid


def say(result: dict, as_json: bool, line: str) -> None:
    """One result: a JSON line, or ``line`` for a reader."""
    print(json.dumps(result) if as_json else line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=11, help="eval-w0's --seed: held-out demos and plans")
    parser.add_argument("--demos", type=int, default=24)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--shift", type=float, default=0.05, help="m: largest shift along x and y")
    parser.add_argument("--turn", type=float, default=0.5, help="rad: largest turn about the vertical")
    parser.add_argument("--models", nargs="*", default=[], help="W0 folders or 'default': their dynamics asked the same")
    parser.add_argument("--cache", type=Path, default=Path("runs/w0-dynamics-ranking"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from psi_gym.agents.world_model_report import candidate_pool
    from psi_gym.world_model.symmetry import move_positions, random_motion

    refs, _, rows, plans, (_, sim_success, sim_last) = candidate_pool(args.seed, args.demos, args.candidates, args.cache)
    theta, shift = random_motion(len(refs), args.shift, args.turn, torch.Generator().manual_seed(args.seed))
    demo_of = np.repeat(np.arange(len(refs)), args.candidates)
    path = args.cache / f"moved-s{args.seed}-{args.demos}x{args.candidates}-{args.shift:g}m-{args.turn:g}rad.npz"
    if path.exists():
        saved = np.load(path)
        moved_success, moved_last, valid = saved["success"], saved["last"], saved["valid"]
    else:
        moved_success, moved_last, valid = moved_pool(rows, plans, theta, shift, demo_of, sim_last)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, success=moved_success, last=moved_last, valid=valid)
    motion = theta[demo_of].double(), shift[demo_of].double()
    expected_last = move_positions(torch.as_tensor(sim_last, dtype=torch.float64), *motion).numpy()
    distance = np.linalg.norm(moved_last - expected_last, axis=-1)[valid] * 100.0
    result = {"seed": args.seed, "demos": len(refs), "replays": int(valid.sum()), "skipped": int((~valid).sum()),
              "shift_m": args.shift, "turn_rad": args.turn,
              "last_position_cm_median": round(float(np.median(distance)), 3),
              "last_position_cm_p90": round(float(np.percentile(distance, 90)), 2),
              "last_position_cm_max": round(float(distance.max()), 2),
              "verdict_agreement": round(float(np.mean(moved_success[valid] == sim_success[valid])), 3)}
    say(result, args.json,
        f"simulator, seed {args.seed}: {result['replays']} replays moved by up to {args.shift} m and {args.turn} rad "
        f"({result['skipped']} skipped): the object ends {result['last_position_cm_median']:.3f} cm from the moved "
        f"original's end (median; p90 {result['last_position_cm_p90']:.2f}, max {result['last_position_cm_max']:.2f}), "
        f"verdicts agree {result['verdict_agreement']:.3f}")
    for name in args.models:
        result = model_symmetry(name, rows, plans, motion, sim_last, moved_last, valid)
        result.update(seed=args.seed, demos=len(refs))
        say(result, args.json,
            f"{name}: W0's end for a moved plan, moved back, lies {result['equivariance_cm_median']:.2f} cm from its end "
            f"for the plan itself (median; p90 {result['equivariance_cm_p90']:.1f}); last-step error against the "
            f"simulator {result['last_step_error_cm_median']:.2f} cm as they are, "
            f"{result['moved_last_step_error_cm_median']:.2f} cm moved")


@torch.no_grad()
def model_symmetry(name: str, rows: list, plans: list, motion: tuple, sim_last: np.ndarray, moved_last: np.ndarray,
                   valid: np.ndarray) -> dict:
    """W0 ``name``'s dynamics unrolled from the true start over each plan as it is and moved (see the module doc)."""
    from psi_gym.agents.rollouts import plan_targets
    from psi_gym.world_model import WorldModel
    from psi_gym.world_model.symmetry import move_joints, move_positions, move_state
    from psi_gym.world_model.world_state import WorldState, object_descriptor, quaternion_to_matrix

    model = WorldModel.from_pretrained(name).eval()
    dynamics = model.dynamics
    targets = torch.from_numpy(np.stack([plan_targets(r, p) for r, p in zip(rows, plans)])).float()
    joints = torch.from_numpy(np.stack([r.start_state for r in rows])).float()
    pose = torch.from_numpy(np.stack([r.human_object_pose[0] for r in rows])).float()  # the scene's object at rest
    rotation = quaternion_to_matrix(pose[:, 3:].numpy())
    start = WorldState(joint_state=joints, previous_joint_state=joints.clone(), previous_joint_target=joints.clone(),
                       object_position=pose[:, :3].clone(), previous_object_position=pose[:, :3].clone(),
                       object_rotation=rotation, previous_object_rotation=rotation.clone(),
                       object_descriptor=torch.from_numpy(np.stack([object_descriptor(r.scene) for r in rows])),
                       scene_frame=torch.zeros(len(rows), 1, 1, 3, dtype=torch.uint8))
    theta, shift = (m.float() for m in motion)

    def last_position(state: WorldState, plan: torch.Tensor) -> torch.Tensor:
        geometry = dynamics.target_geometry(plan)
        for t in range(plan.shape[1]):
            state = dynamics.step(state, plan[:, t], (geometry[0][:, t], geometry[1][:, t]))
        return state.object_position

    end = last_position(start, targets)
    moved_end = last_position(move_state(start, theta, shift), move_joints(targets, theta, shift))
    gap = (moved_end - move_positions(end, theta, shift)).norm(dim=-1).numpy()[valid] * 100.0
    error = np.linalg.norm(end.numpy() - sim_last, axis=-1)[valid] * 100.0
    moved_error = np.linalg.norm(moved_end.numpy() - moved_last, axis=-1)[valid] * 100.0
    return {"model": name, "equivariance_cm_median": round(float(np.median(gap)), 2),
            "equivariance_cm_p90": round(float(np.percentile(gap, 90)), 1),
            "last_step_error_cm_median": round(float(np.median(error)), 2),
            "moved_last_step_error_cm_median": round(float(np.median(moved_error)), 2)}


if __name__ == "__main__":
    main()

"""Where W0's frame error comes from: the renderer, the joints it predicts, or the object it predicts.

On fresh robot rollouts (``--sources residual``: retargeted references plus smooth residuals, what
the env and refinement run), W0 predicts each episode open loop from its first real frame, as
eval-w0 does. Its renderer then draws, for the same steps, four states: W0's own, the simulator's
true one, the true joints with W0's object, W0's joints with the true object, and W0's object with
the hand where a servo model puts it (`JointResponse`, q' - q = a (u - q) + b (q - q_prev) +
c (u - u_prev) per joint, rolled open loop from the first state over the plan's targets; its
coefficients are W0's own when it has the prior, else fitted by least squares to ``--fit-episodes``
other fresh rollouts, never to the ones scored). PSNR over the
first ``--horizon`` steps against the simulator's frames (and the first frame held still, the
baseline of eval-w0's ``psnr_gain_first_8_steps``) says which part of the state costs the frames
their detail; the wrist and finger errors per step say how far W0's hand is from the true one.

Run: ``python benchmarks/w0_frame_error_sources.py --checkpoint default --seed 11 --episodes 48``
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", nargs="+", default=["default"], help="W0 folders or 'default'")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--episodes", type=int, default=48)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--sources", default="residual", help="make_rollout's sources: 'residual' or 'all' (its mix)")
    parser.add_argument("--fit-episodes", type=int, default=96,
                        help="fresh rollouts (apart from the scored ones) to fit the servo of a W0 without one")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from psi_gym.retarget.robot_rollouts import make_rollout
    from psi_gym.world_model import WorldModel
    from psi_gym.world_model.dynamics import dynamics_members
    from psi_gym.world_model.evaluation import predict_open_loop, psnr
    from psi_gym.world_model.training import fit_hand_servo
    from psi_gym.world_model.world_state import WorldState, object_descriptor, quaternion_to_matrix

    sources = None if args.sources == "all" else {args.sources: 1.0}
    # the index offset keeps these apart from any collect run of the same seed (as evaluate_fidelity)
    episodes = [make_rollout(args.seed, 5_000_000 + i, sources=sources) for i in range(args.episodes)]
    horizon = min(args.horizon, min(ep.num_steps for ep in episodes))
    truth = np.stack([ep.frames[1: horizon + 1] for ep in episodes])
    first = np.stack([ep.frames[0] for ep in episodes])
    true_joints = np.stack([ep.state[1: horizon + 1] for ep in episodes])
    true_pose = np.stack([ep.object_pose[1: horizon + 1] for ep in episodes])
    descriptor = torch.from_numpy(np.stack([object_descriptor(ep.scene) for ep in episodes]))
    fit_set = [make_rollout(args.seed, 6_000_000 + i, sources=sources) for i in range(args.fit_episodes)]

    def mean_psnr(frames: np.ndarray) -> float:
        return float(np.mean([psnr(frames[:, t], truth[:, t]) for t in range(horizon)]))

    for name in args.checkpoint:
        model = WorldModel.from_pretrained(name).eval()
        if model.image_size != first.shape[1]:
            raise SystemExit(f"{name} draws {model.image_size} px frames; the rollouts are {first.shape[1]} px")
        generator = torch.Generator().manual_seed(0)
        predicted = predict_open_loop(model, episodes, horizon, generator)
        embedding = model._instruction_embedding([ep.instruction for ep in episodes], len(episodes))

        def drawn(joints: np.ndarray, position: np.ndarray) -> np.ndarray:
            frames = []
            for t in range(horizon):
                q = torch.from_numpy(joints[:, t]).float()
                p = torch.from_numpy(position[:, t]).float()
                rotation = quaternion_to_matrix(true_pose[:, t, 3:])
                state = WorldState(joint_state=q, previous_joint_state=q, previous_joint_target=q, object_position=p,
                                   previous_object_position=p, object_rotation=rotation, previous_object_rotation=rotation,
                                   object_descriptor=descriptor, scene_frame=torch.from_numpy(first))
                frames.append(model.render(state, embedding, generator=generator).numpy())
            return np.stack(frames, 1)

        response = dynamics_members(model.dynamics)[0].joint_response
        if response is None:  # a servo fitted to other rollouts than the scored ones
            response = fit_hand_servo(model, fit_set).hand_response
        servo = _servo_rollout(response, episodes, horizon)
        wrist = np.linalg.norm(predicted.joint_state[..., :3] - true_joints[..., :3], axis=-1) * 100.0
        servo_wrist = np.linalg.norm(servo[..., :3] - true_joints[..., :3], axis=-1) * 100.0
        fingers = np.abs(predicted.joint_state[..., 6:] - true_joints[..., 6:]).mean(-1)
        held = np.repeat(first[:, None], horizon, axis=1)
        report = {
            "checkpoint": name, "seed": args.seed, "episodes": len(episodes), "sources": args.sources, "horizon": horizon,
            "psnr_first_frame_held": round(mean_psnr(held), 2),
            "psnr_w0": round(mean_psnr(predicted.frames), 2),
            "psnr_true_state": round(mean_psnr(drawn(true_joints, true_pose[..., :3])), 2),
            "psnr_true_joints_w0_object": round(mean_psnr(drawn(true_joints, predicted.object_position)), 2),
            "psnr_w0_joints_true_object": round(mean_psnr(drawn(predicted.joint_state, true_pose[..., :3])), 2),
            "psnr_servo_joints_w0_object": round(mean_psnr(drawn(servo, predicted.object_position)), 2),
            "wrist_error_cm_median_by_step": _rounded(np.median(wrist, 0), 2),
            "servo_wrist_error_cm_median_by_step": _rounded(np.median(servo_wrist, 0), 2),
            "servo_finger_error_rad_mean_by_step": _rounded(np.abs(servo[..., 6:] - true_joints[..., 6:]).mean(-1).mean(0), 4),
            "finger_error_rad_mean_by_step": _rounded(fingers.mean(0), 4),
            "object_error_cm_median_by_step": _rounded(np.median(np.linalg.norm(predicted.object_position - true_pose[..., :3],
                                                                                 axis=-1), 0) * 100, 2),
        }
        print(json.dumps(report), flush=True)


def _servo_rollout(response, episodes, horizon: int) -> np.ndarray:
    """(E, horizon, J) joints the servo reaches from each episode's start over its targets, open loop
    (at the start the hand rests: ``q_{-1} = u_{-1} = q_0``)."""
    q = torch.from_numpy(np.stack([ep.state[0] for ep in episodes])).float()
    q_previous, u_previous = q.clone(), q.clone()
    out = []
    with torch.no_grad():
        for t in range(horizon):
            u = torch.from_numpy(np.stack([ep.action[t] for ep in episodes])).float()
            q, q_previous, u_previous = q + response(u - q, q - q_previous, u - u_previous), q, u
            out.append(q.numpy())
    return np.stack(out, 1)


def _rounded(values: np.ndarray, digits: int) -> list[float]:
    return [round(float(v), digits) for v in values]


if __name__ == "__main__":
    main()

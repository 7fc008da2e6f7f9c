"""The showcase that ``make demo`` runs (``python -m psi_gym.showcase``): the main job end to end on
the shipped defaults, in a couple of minutes on a CPU.

1. human demonstrations in the ground-truth world, retargeted to the robot and replayed raw
   (the embodiment gap, verified by the simulator);
2. Psi-W0 (the shipped checkpoint, or ``--world-model``) predicting a fresh robot rollout open
   loop from its first frame, next to the truth;
3. one episode of ``gym.make("PsiW0-Retarget-v0")`` on that W0, following the retargeted reference.

Videos land in ``runs/demo/``; a JSON summary is printed last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demos", type=int, default=6)
    parser.add_argument("--world-model", default="default", help="W0: 'default' (shipped) or a checkpoint folder")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from psi_gym.data.video import side_by_side, write_video
    from psi_gym.retarget.human_demos import make_demo
    from psi_gym.retarget.pipeline import retarget_episode
    from psi_gym.retarget.robot_rollouts import make_rollout
    from psi_gym.sim.tasks import TASKS
    from psi_gym.world_model.evaluation import predict_open_loop, psnr
    from psi_gym.world_model.loading import load_world_model

    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"out": str(args.out)}
    start = time.perf_counter()

    # 1. human demos -> raw retarget replay on the robot, both judged by the simulator
    log("1/3 human demonstrations and their raw retargeted replays")
    tasks = sorted(TASKS)
    human, robot = [], []
    for i in range(args.demos):
        demo = make_demo(tasks[i % len(tasks)], args.seed, i)
        replay = retarget_episode(demo)
        human.append(demo.success)
        robot.append(replay.success)
        if i < len(tasks):
            write_video(args.out / f"demo_{demo.task}_human_vs_robot.mp4", side_by_side(demo.frames, replay.frames), fps=10)
    summary["human_success"] = float(np.mean(human))
    summary["raw_retarget_success"] = float(np.mean(robot))

    # 2. W0 open loop on a fresh rollout
    log("2/3 Psi-W0 predicting a fresh rollout open loop")
    model = load_world_model(args.world_model, device="cpu")
    episode = make_rollout(args.seed, 9_000_000, "lift_apple", image_size=model.image_size)
    generator = torch.Generator().manual_seed(args.seed)
    prediction = predict_open_loop(model, [episode], episode.num_steps, generator)
    predicted = prediction.frames[0]
    write_video(args.out / "w0_true_vs_predicted.mp4", side_by_side(episode.frames[1:], predicted), fps=10)
    summary["w0_open_loop_psnr"] = psnr(predicted, episode.frames[1:])
    error = np.linalg.norm(prediction.object_position[0] - episode.object_pose[1:, :3], axis=-1)
    summary["w0_object_error_cm_last_step"] = float(error[-1] * 100.0)

    # 3. the Gymnasium env on the shipped defaults, following the reference (zero residual)
    log("3/3 PsiW0-Retarget-v0: one episode on the retargeted reference")
    import gymnasium as gym

    import psi_gym  # noqa: F401  (registers the env)

    env = gym.make("PsiW0-Retarget-v0", render_mode="rgb_array", world_model=model)
    obs, info = env.reset(seed=args.seed)
    frames, total, steps = [env.render()], 0.0, 0
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, np.float32))
        frames.append(env.render())
        total += float(reward)
        steps += 1
    task = env.unwrapped.context.task
    env.close()
    write_video(args.out / "env_episode.mp4", np.stack(frames), fps=10)
    summary.update({"env_task": task, "env_steps": steps, "env_return": total,
                    "env_success": bool(info.get("success", False)), "seconds": time.perf_counter() - start})
    print(json.dumps(summary))
    return 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())

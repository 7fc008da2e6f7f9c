"""The flywheel's filters against the simulator, on many candidates at once: which W0-only test keeps true successes?

A flywheel iteration keeps 5-12 trajectories, so its precision moves by 0.2 from one random draw to
the next. This script makes the candidates of several iterations' demos in one go (the flywheel's
own `refine_and_filter`: raw retarget, CEM inside W0, a varied start each; the filters as the
flywheel runs them), judges them all, and scores other W0-only tests on the same candidates:

* ``as run``: what the flywheel's filter chain kept;
* ``w0 verdict``: the env's verdict alone;
* ``+ unanimous N mm``: also what W0's dynamics calls a success from each of ``--samples`` starts
  with W0's reading of the object shifted by N mm (the consistency test done on the state);
* ``+ state margin``: also W0's tracked final object clearing the task's threshold by a margin;
* ``+ second opinion``: also other W0s' dynamics (``--committee``: trained apart, e.g. another size
  or architecture) call the plan a success from their own reading of the first frame;
* ``+ calibrated p >= t``: also the shipped calibrated success puts the plan's W0 object path at p >= t
  (``--calibrated``: the flywheel's ``--min-success-probability``; `--reward-model calibrated_state`
  makes the candidates with the calibrated search).

Precision (judge successes among kept) and recall per task. The candidates are cached per
(pool, iterations, demos, seed, W0's weights) under ``--cache``, so the scores can be rerun in seconds;
`success_calibration.py --flywheel-candidates` judges its calibrated verdict on the same caches.

Run: ``python benchmarks/flywheel_filters.py --train-demo-seed 5101 --iterations 3 --demos 12 --world-model default``
(about 6 minutes for the candidates on one core).
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch


def make_candidates(args: argparse.Namespace, world_model: str) -> list[dict]:
    from psi_gym.flywheel.loop import FlywheelConfig, make_demos, refine_and_filter

    config = FlywheelConfig(demos_per_iteration=args.demos, train_demo_seed=args.train_demo_seed, seed=args.seed,
                            reward_model=args.reward_model, progress=False)
    rows = []
    for iteration in range(1, args.iterations + 1):
        demos = make_demos(args.train_demo_seed, range((iteration - 1) * args.demos, iteration * args.demos),
                           config.generalization_every)
        outcome = refine_and_filter(config, world_model, demos, iteration, {},
                                    np.random.default_rng([args.seed, iteration, 1]), print)
        for candidate, keep, truth in zip(outcome.candidates, outcome.keep, outcome.judge_success):
            episode = candidate.episode
            rows.append({"source": candidate.source, "task": episode.task, "scene": episode.scene,
                         "w0_success": candidate.w0_success, "keep": bool(keep), "truth": bool(truth),
                         "action": episode.action, "start_state": episode.state[0], "first": episode.frames[0],
                         "final": episode.object_pose[-1, :3], "demo": candidate.demo})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-demo-seed", type=int, default=5101, help="the flywheel's training demo pool")
    parser.add_argument("--iterations", type=int, default=3, help="iterations' worth of demos")
    parser.add_argument("--demos", type=int, default=12, help="demos per iteration")
    parser.add_argument("--seed", type=int, default=1, help="the flywheel's --seed (its random draws)")
    parser.add_argument("--world-model", default="default", help="W0: 'default' or a folder")
    parser.add_argument("--reward-model", default="object_tracking",
                        help="the W0 env's reward model during the flywheel's refinement and filters (a built-in name)")
    parser.add_argument("--samples", type=int, default=8, help="shifted starts per candidate")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.003, 0.006, 0.01], help="m: shift std per axis")
    parser.add_argument("--margin", type=float, nargs="+", default=[0.005, 0.01], help="m: margins to the threshold")
    parser.add_argument("--committee", nargs="*", default=[], help="other W0 folders whose dynamics give a second opinion")
    parser.add_argument("--calibrated", type=float, nargs="*", default=[0.5, 0.6, 0.7, 0.8],
                        help="bars of the calibrated success (the flywheel's --min-success-probability) to score")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path("runs/flywheel-filters"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from psi_gym.sim.scene import SceneParams
    from psi_gym.sim.tasks import LIFT_HEIGHT, PUSH_TOLERANCE, get_task
    from psi_gym.world_model import default_checkpoint_path, load_world_model

    folder = str(default_checkpoint_path()) if args.world_model == "default" else args.world_model
    # keyed on the weights, not the folder's name: 'default' names other weights once a new W0 ships
    tag = hashlib.sha1((Path(folder) / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()[:10]
    reward = "" if args.reward_model == "object_tracking" else f"-{args.reward_model}"  # the default keeps its old name
    cache = args.cache / f"{args.train_demo_seed}-{args.iterations}x{args.demos}-s{args.seed}-{tag}{reward}-v2.pkl"  # v2: rows hold their demo
    if cache.is_file():
        rows = pickle.loads(cache.read_bytes())
    else:
        rows = make_candidates(args, folder)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(rows))

    model = load_world_model(folder, device="cpu")
    scenes = [SceneParams.from_dict(r["scene"]) for r in rows]
    targets = torch.from_numpy(np.stack([r["action"] for r in rows])).float()
    first = np.stack([r["first"] for r in rows])
    start = np.stack([r["start_state"] for r in rows])

    def unroll(noise: float, generator: torch.Generator, model=model) -> np.ndarray:
        """The dynamics from W0's reading of each first frame, the object shifted by ``noise`` (x, y)."""
        with torch.no_grad():
            state = model.initial_state(first, start)
            shift = torch.randn(len(rows), 3, generator=generator) * noise
            shift[:, 2] = 0
            state.object_position = state.object_position + shift
            state.previous_object_position = state.previous_object_position + shift
            geometry = model.dynamics.target_geometry(targets)
            for t in range(targets.shape[1]):
                state = model.dynamics.step(state, targets[:, t], (geometry[0][:, t], geometry[1][:, t]))
        return state.object_position.numpy()

    def verdict(position: np.ndarray) -> np.ndarray:
        return np.array([get_task(r["task"]).is_success(s, position[i]) for i, (r, s) in enumerate(zip(rows, scenes))])

    def margin(position: np.ndarray) -> np.ndarray:
        return np.array([position[i, 2] - (s.object_rest_z + LIFT_HEIGHT) if r["task"].startswith("lift")
                         else PUSH_TOLERANCE - np.linalg.norm(position[i, :2] - np.asarray(s.mark_xy))
                         for i, (r, s) in enumerate(zip(rows, scenes))])

    truth = np.array([r["truth"] for r in rows])
    tasks = np.array([r["task"] for r in rows])
    as_run = np.array([r["keep"] for r in rows])
    final_margin = margin(np.stack([r["final"] for r in rows]))

    def show(name: str, keep: np.ndarray) -> None:
        line = f"{name:34s}"
        for task in ("all", "lift_apple", "lift_can", "push_box"):
            chosen = np.ones(len(rows), bool) if task == "all" else tasks == task
            kept, good = keep & chosen, keep & chosen & truth
            line += (f" | {task[:8]} {good.sum()}/{kept.sum()}={good.sum() / max(kept.sum(), 1):.2f}"
                     f" r{good.sum() / max((truth & chosen).sum(), 1):.2f}")
        print(line)

    print(f"{len(rows)} candidates, {truth.sum()} succeed in the simulator; W0 {folder}")
    show("as run", as_run)
    show("w0 verdict", np.array([r["w0_success"] for r in rows]))
    for noise in args.noise:
        generator = torch.Generator().manual_seed(0)
        unanimous = np.all([verdict(unroll(noise, generator)) for _ in range(args.samples)], axis=0)
        show(f"as run + unanimous {noise * 1000:.0f} mm", as_run & unanimous)
    for value in args.margin:
        show(f"as run + state margin {value * 100:.1f} cm", as_run & (final_margin >= value))
    opinions = []
    for other in args.committee:
        opinions.append(verdict(unroll(0.0, torch.Generator().manual_seed(0), load_world_model(other, device="cpu"))))
        show(f"as run + {Path(other).parent.name if Path(other).name == 'final' else Path(other).name} agrees",
             as_run & opinions[-1])
    if len(opinions) > 1:
        show("as run + the whole committee agrees", as_run & np.all(opinions, axis=0))
    if args.calibrated:  # the flywheel's CalibratedSuccessFilter: the shipped calibrator on W0's object path
        from psi_gym.agents.calibration import object_paths
        from psi_gym.rewards.calibrated_state import resolve_calibrator
        from psi_gym.rewards.success_calibration import path_features

        paths = object_paths(model, first, start, targets.numpy())
        probability = resolve_calibrator("default").probability(np.stack([
            path_features(paths[i], r["demo"].task, scenes[i], r["demo"].human_object_pose) for i, r in enumerate(rows)]))
        for bar in args.calibrated:
            show(f"as run + calibrated p >= {bar:g}", as_run & (probability >= bar))


if __name__ == "__main__":
    main()

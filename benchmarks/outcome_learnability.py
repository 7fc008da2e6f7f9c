"""Issue 10's learnability check: how well can the simulator's outcome be ranked from this data at all?

A small classifier is trained to predict the simulator's verdict straight from an episode's start
and its commanded action sequence, on W0's own training data (``psi-gym collect --sources
residual``: retargeted references plus smooth residuals of the sizes refinement searches, every
episode labelled by the simulator). It is then asked to rank eval-w0's held-out candidates (the
pools of `w0_dynamics_ranking.py`: 16 residual plans per held-out demo, the simulator's results
cached per seed) beside W0's own ranking (the return and verdict read off W0's tracked object,
as the env with ``reward_model="state_tracking"`` gives them). Two classifiers:

``plan``      the object's start as W0's perception reads it off the first frame (kind, size, pose,
              the push mark relative to it) and, per step, the commanded hand: its 29 points
              relative to the object's start (W0's forward kinematics), palm orientation, targets;
``plan+w0``   the same and W0's unrolled prediction per step: the object's displacement and
              orientation, the hand's points at W0's predicted joints relative to W0's object.

Each is trained on a fraction of the episodes (``--fractions``: the learning curve says whether
more such data would help), ``--fits`` times with different seeds, the scores averaged. A 10%
split of the training episodes stops each fit (validation loss); the held-out pools are only
scored. In training the object's start is the simulator's true pose with 3 mm of noise (the
perception's reading is not exact); on the pools it is the perception's reading, as in the env.
The ``plan+w0`` features on the training episodes are W0's predictions on data it was trained on.

Per pool: median Spearman (score vs the simulator's return, per demo), the top pick's simulator
success, and the precision and recall of "success" verdicts against the simulator: W0's verdict,
the classifier at p >= 0.5, and both together (ranked by the mean of their ranks per demo,
a success where both say so).

Run: ``python benchmarks/outcome_learnability.py --pools 13:48 14:96 15:96`` (about 15 minutes on
2 cores with the simulator's results cached; the first run of a pool simulates its candidates)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from psi_gym.data.arguments import pool_spec  # noqa: E402
from w0_dynamics_ranking import ranking_pool, tracked_returns  # noqa: E402

TASKS = ("lift_apple", "lift_can", "push_box")


def read_training_episodes(root: Path, limit: int | None = None) -> list[dict]:
    """Start joints, object start pose, joint targets, scene and the simulator's verdict of each
    episode of a dataset. `EpisodeDataset` opens and checks it; the arrays come from its data
    tables alone (`EpisodeDataset[i]` would decode every episode's video, which this never reads)."""
    import pyarrow.parquet as pq

    from psi_gym.data.lerobot import ARRAY_FEATURES, DATA_PATH, DatasetError, EpisodeDataset

    try:
        metas = EpisodeDataset(root).episodes_table.to_pylist()
    except DatasetError as error:
        raise SystemExit(f"--data {root}: no episodes to train on ({error})") from None
    if not metas:
        raise SystemExit(f"--data {root}: no episodes to train on (the dataset is empty)")
    metas = metas[:limit] if limit else metas
    keys = {name: ARRAY_FEATURES[name] for name in ("state", "action", "object_pose")}
    arrays: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for meta in metas:
        file_key = (meta["data/chunk_index"], meta["data/file_index"])
        if file_key not in arrays:
            table = pq.read_table(root / DATA_PATH.format(chunk_index=file_key[0], file_index=file_key[1]),
                                  columns=[*keys.values(), "index"])
            arrays[file_key] = {"first": int(table["index"][0].as_py()),
                                **{name: np.array(table[key].to_pylist(), np.float32) for name, key in keys.items()}}
    episodes = []
    for meta in metas:
        file = arrays[(meta["data/chunk_index"], meta["data/file_index"])]
        start, length = meta["dataset_from_index"] - file["first"], meta["length"]
        episodes.append(dict(task=meta["task_name"], scene=json.loads(meta["scene_json"]), success=bool(meta["success"]),
                             start_joints=file["state"][start], start_pose=file["object_pose"][start],
                             targets=file["action"][start: start + length - 1]))  # the last row's action is padding
    return episodes


def fixed_length(targets: list[np.ndarray], steps: int) -> torch.Tensor:
    """(B, steps, 22): each plan cut or held at its last target."""
    out = np.zeros((len(targets), steps, 22), np.float32)
    for i, plan in enumerate(targets):
        n = min(len(plan), steps)
        out[i, :n], out[i, n:] = plan[:n], plan[n - 1]
    return torch.from_numpy(out)


@torch.no_grad()
def features(dynamics, start, targets: torch.Tensor, tasks: list[str], scenes: list[dict], with_w0: bool):
    """Per-step (B, H, F) and static (B, S) features (see the module doc)."""
    from psi_gym.world_model.dynamics import _link_middles

    origin = start.object_position
    points, palm = dynamics.target_geometry(targets)
    per_step = [((points - origin[:, None, None]) * 10).flatten(2), palm[..., :2].flatten(2), dynamics.normalize_joints(targets)]
    if with_w0:
        state, geometry = start.clone(), (points, palm)
        objects, turns, hands = [], [], []
        for t in range(targets.shape[1]):
            state = dynamics.step(state, targets[:, t], (geometry[0][:, t], geometry[1][:, t]))
            objects.append((state.object_position - origin) * 100)
            turns.append(state.object_rotation[..., :2].flatten(1))
            hand, _ = dynamics.kinematics(state.joint_state)
            hands.append(((_link_middles(hand) - state.object_position[:, None]) * 10).flatten(1))
        per_step += [torch.stack(objects, 1), torch.stack(turns, 1), torch.stack(hands, 1)]
    task = torch.zeros(len(tasks), len(TASKS))
    task[torch.arange(len(tasks)), torch.tensor([TASKS.index(t) for t in tasks])] = 1
    mark = torch.tensor([scene.get("mark_xy") or [0.0, 0.0] for scene in scenes], dtype=torch.float32)
    static = torch.cat([task, start.object_descriptor / 5, (mark - origin[:, :2]) * 10, origin * 10,
                        start.object_rotation[..., :2].flatten(1)], 1)
    return torch.cat(per_step, -1).float(), static.float()


class OutcomeNet(torch.nn.Module):
    """Temporal convolutions over the per-step features, then an MLP with the static ones: a logit."""

    def __init__(self, step_features: int, static_features: int, steps: int, width: int = 128) -> None:
        super().__init__()
        self.conv = torch.nn.Sequential(
            torch.nn.Conv1d(step_features, width, 5, padding=2), torch.nn.GELU(),
            torch.nn.Conv1d(width, width, 5, padding=2, stride=2), torch.nn.GELU(),
            torch.nn.Conv1d(width, width, 5, padding=2, stride=2), torch.nn.GELU())
        reduced = ((steps + 1) // 2 + 1) // 2
        self.head = torch.nn.Sequential(torch.nn.Linear(width * reduced + static_features, 256), torch.nn.GELU(),
                                        torch.nn.Dropout(0.2), torch.nn.Linear(256, 1))

    def forward(self, per_step: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.conv(per_step.transpose(1, 2)).flatten(1), static], 1)).squeeze(-1)


def fit(per_step: torch.Tensor, static: torch.Tensor, label: torch.Tensor, seed: int, epochs: int):
    """A classifier stopped at its best validation loss (10% of the rows); returns ``predict`` and that loss."""
    torch.manual_seed(seed)
    mean, std = per_step.mean((0, 1)), per_step.std((0, 1)) + 1e-3
    static_mean, static_std = static.mean(0), static.std(0) + 1e-3
    net = OutcomeNet(per_step.shape[-1], static.shape[-1], per_step.shape[1])
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    order = torch.randperm(len(label), generator=torch.Generator().manual_seed(seed))
    held, train = order[: len(label) // 10], order[len(label) // 10:]
    logits = lambda rows: net((per_step[rows] - mean) / std, (static[rows] - static_mean) / static_std)  # noqa: E731
    best = (float("inf"), None)
    for _ in range(epochs):
        net.train()
        for rows in train[torch.randperm(len(train))].split(128):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(rows), label[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            held_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(held), label[held]).item()
        if held_loss < best[0]:
            best = (held_loss, {k: v.clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best[1])

    @torch.no_grad()
    def predict(x: torch.Tensor, s: torch.Tensor) -> np.ndarray:
        return torch.sigmoid(net((x - mean) / std, (s - static_mean) / static_std)).numpy()

    return predict, best[0]


def verdict_figures(said: np.ndarray, truth: np.ndarray) -> dict:
    kept = int(said.sum())
    hits = int((said & truth).sum())
    return {"kept": kept, "precision": round(hits / kept, 3) if kept else None,
            "recall": round(hits / max(1, int(truth.sum())), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("runs/residual-s100"), help="sim-labelled training episodes")
    parser.add_argument("--world-model", default="default")
    parser.add_argument("--pools", nargs="+", type=pool_spec, default=[(13, 48), (14, 96), (15, 96)],
                        help="SEED:DEMOS held-out pools (eval-w0's --seed and --demos)")
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--fits", type=int, default=2, help="classifiers per variant and fraction, scores averaged")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--limit", type=int, default=None, help="read only the first N training episodes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("runs/w0-dynamics-ranking"))
    parser.add_argument("--json", action="store_true", help="one JSON line per pool and scorer")
    args = parser.parse_args()
    if not all(0.0 < f <= 1.0 for f in args.fractions):
        parser.error(f"--fractions must lie in (0, 1], got {args.fractions}")
    if min(args.fits, args.epochs, args.candidates - 1) < 1:
        parser.error("--fits and --epochs must be >= 1 and --candidates >= 2")
    torch.set_num_threads(args.threads)

    from psi_gym.agents.rollouts import plan_targets
    from psi_gym.world_model import WorldModel
    from psi_gym.world_model.world_state import WorldState, object_descriptor, quaternion_to_matrix

    began = time.perf_counter()
    model = WorldModel.from_pretrained(args.world_model).eval()
    dynamics = model.dynamics
    episodes = read_training_episodes(args.data, args.limit)  # first: a wrong --data fails at once
    pools = []
    for seed, demos in args.pools:
        refs, first_frames, rows, plans, (sim_return, sim_success, _) = ranking_pool(seed, demos, args.candidates, args.cache)
        pools.append((seed, refs, first_frames, rows, plans, sim_return, np.asarray(sim_success, bool)))
    steps = int(max(ref.horizon for pool in pools for ref in pool[1]))

    label = torch.tensor([float(e["success"]) for e in episodes])
    pose = torch.from_numpy(np.stack([e["start_pose"] for e in episodes]))
    noise = torch.randn(len(episodes), 3, generator=torch.Generator().manual_seed(0)) * 0.003
    noise[:, 2] = 0.0
    joints = torch.from_numpy(np.stack([e["start_joints"] for e in episodes]))
    rotation = quaternion_to_matrix(pose[:, 3:].numpy())
    start = WorldState(joint_state=joints, previous_joint_state=joints.clone(), previous_joint_target=joints.clone(),
                       object_position=pose[:, :3] + noise, previous_object_position=pose[:, :3] + noise,
                       object_rotation=rotation, previous_object_rotation=rotation.clone(),
                       object_descriptor=torch.from_numpy(np.stack([object_descriptor(e["scene"]) for e in episodes])),
                       scene_frame=torch.zeros(len(episodes), 1, 1, 3, dtype=torch.uint8))
    targets = fixed_length([e["targets"] for e in episodes], steps)
    tasks, scenes = [e["task"] for e in episodes], [e["scene"] for e in episodes]
    print(f"{len(episodes)} training episodes ({label.mean():.3f} successes), {steps} steps; "
          f"{time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)

    variants = {"plan": False, "plan+w0": True}
    training = {}
    for name, with_w0 in variants.items():
        chunks = [features(dynamics, start.select(slice(i, i + 1024)), targets[i: i + 1024], tasks[i: i + 1024],
                           scenes[i: i + 1024], with_w0) for i in range(0, len(episodes), 1024)]
        training[name] = (torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks]))

    # the held-out pools' inputs, as the env sees them
    pool_inputs, w0_scores = [], []
    for seed, refs, first_frames, rows, plans, sim_return, sim_success in pools:
        demo_of = np.repeat(np.arange(len(refs)), args.candidates)
        with torch.no_grad():
            pool_start = model.initial_state(first_frames[demo_of], np.stack([ref.start_state for ref in rows]))
        pool_targets = fixed_length([plan_targets(ref, plan) for ref, plan in zip(rows, plans)], steps)
        pool_inputs.append({name: features(dynamics, pool_start, pool_targets, [r.task for r in rows],
                                           [r.scene for r in rows], with_w0) for name, with_w0 in variants.items()})
        returns, done, _ = tracked_returns(dynamics, pool_start.clone(), pool_targets, rows)
        w0_scores.append((returns, done))

    def report(seed, refs, sim_return, sim_success, score, said, scorer, extra):
        shape = (len(refs), args.candidates)
        ranked, sim, truth = score.reshape(shape), sim_return.reshape(shape), sim_success.reshape(shape)
        rho = [spearmanr(a, b).correlation if np.ptp(a) > 0 and np.ptp(b) > 0 else 0.0 for a, b in zip(ranked, sim)]
        pick = truth[np.arange(len(refs)), ranked.argmax(1)]
        result = {"pool": seed, "demos": len(refs), "scorer": scorer, **extra,
                  "spearman_median": round(float(np.median(rho)), 3), "top_pick_sim_success": round(float(pick.mean()), 3),
                  "sim_top_pick_sim_success": round(float(truth.max(1).mean()), 3),
                  "raw_sim_success": round(float(truth[:, 0].mean()), 3), "verdict": verdict_figures(said, sim_success)}
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            v = result["verdict"]
            print(f"pool {seed} {scorer:<28} Spearman {result['spearman_median']:6.3f}  pick {result['top_pick_sim_success']:.3f} "
                  f"(sim's {result['sim_top_pick_sim_success']:.3f}, raw {result['raw_sim_success']:.3f})  "
                  f"verdict: kept {v['kept']:4d}, precision {v['precision']}, recall {v['recall']}", flush=True)

    for (seed, refs, _, _, _, sim_return, sim_success), (returns, done) in zip(pools, w0_scores):
        report(seed, refs, sim_return, sim_success, returns, done, "w0 (tracked state)", {})
    for fraction in args.fractions:
        count = max(10, int(round(fraction * len(episodes))))
        subset = torch.randperm(len(episodes), generator=torch.Generator().manual_seed(1))[:count]
        for name in variants:
            predictors, losses = [], []
            for k in range(args.fits):
                predict, loss = fit(training[name][0][subset], training[name][1][subset], label[subset], k, args.epochs)
                predictors.append(predict)
                losses.append(loss)
            print(f"{name}, {count} episodes: validation BCE {np.round(losses, 3).tolist()}; "
                  f"{time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
            extra = {"episodes": count, "validation_bce": round(float(np.mean(losses)), 3)}
            for (seed, refs, _, _, _, sim_return, sim_success), inputs, (returns, done) in zip(pools, pool_inputs, w0_scores):
                probability = np.mean([predict(*inputs[name]) for predict in predictors], 0)
                said = probability >= 0.5
                report(seed, refs, sim_return, sim_success, probability, said, f"{name} ({count})", extra)
                # both: ranked by the mean of the two ranks per demo, a success where both say so
                shape = (len(refs), args.candidates)
                both = (rankdata(returns.reshape(shape), axis=1) + rankdata(probability.reshape(shape), axis=1)).ravel()
                report(seed, refs, sim_return, sim_success, both, said & done, f"{name} ({count}) + w0", extra)


if __name__ == "__main__":
    main()

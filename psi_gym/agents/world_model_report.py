"""Does Psi-W0 rank refinements the way the simulator does? (``psi-gym eval-w0``)

An RL environment is judged by one thing: optimising inside it must improve what happens in the
world. So W0 is evaluated the way the env uses it, on held-out demos made fresh from a seed:
whole episodes (the env's horizon ``H = T + episode_slack``), actions near the reference, the env's
own reward model and verdict at the end of the episode, against the simulator replaying the very
same joint targets.

1. **Candidates.** Per demo, ``K`` plans (`psi_gym.sim.residuals`): the raw retarget (theta = 0)
   and ``K - 1`` random smooth residuals of the sizes refinement searches (0.15 - 1). Each runs in
   the W0 vector env (one batched call per step) and in MuJoCo.
2. **Full horizon.** Per step: PSNR of W0's frames against the simulator's (and of the first
   frame held still, the "nothing moves" baseline), and the error of the object position W0
   tracks, ``|p_W0 - p_sim|`` (median and 90th percentile).
3. **Ranking.** Per demo, Spearman's rho between the W0 env's return and the simulator's score of
   the same plans (the same reward rule read off the true object trajectory and the simulator's
   verdict: `psi_gym.agents.rollouts.sim_tracking_return`); the simulator's success of W0's top
   pick, of the simulator's own top pick (the upper reference) and of the raw retarget.
4. **Verdicts.** The env's verdict (its reward model on the final predicted frame) against the
   simulator's: agreement, ``false_success_rate`` = P(W0 says success | sim says failure),
   ``false_failure_rate``. Beside it an **independent judge**: the task's own success rule
   (`psi_gym.sim.tasks.Task.is_success`) applied to the object pose W0 *tracks* — it never reads
   pixels and shares no weights with the env's estimator — and the estimator on the simulator's
   true final frames (the reward model's own ceiling).
5. **Near misses.** Per demo, small perturbations (size ``near_miss_size``) of the simulator's best
   candidate, kept where the simulator's outcome flips: same start, nearly the same actions,
   opposite outcomes. ``near_miss_agreement`` and the false success/failure rates on them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from psi_gym.agents.rollouts import DemoRef, demo_refs, run_plans_in_env, run_plans_in_sim
from psi_gym.sim.residuals import RESIDUAL_SIZES, random_theta, residual_actions
from psi_gym.sim.scene import SceneParams
from psi_gym.sim.tasks import TASKS, get_task
from psi_gym.world_model.evaluation import psnr


@dataclass
class WorldModelReportConfig:
    """What `world_model_report` evaluates (see the module doc)."""

    demos: int = 24
    """held-out demos, made fresh from ``seed`` (tasks in turn)."""
    candidates: int = 16
    """plans per demo: the raw retarget and ``candidates - 1`` random residuals."""
    near_misses: int = 8
    """perturbations tried per demo around the simulator's best candidate."""
    near_miss_size: float = 0.25
    """size of those perturbations (uniform in [-size, size] per parameter, clipped to [-1, 1])."""
    generalization_fraction: float = 0.25
    """share of demos from the generalization tier (noisy hand pose)."""
    seed: int = 0
    num_envs: int = 64
    video_dir: Path | None = None
    videos: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("demos", "candidates", "num_envs"):
            if getattr(self, name) < (2 if name == "candidates" else 1):
                raise ValueError(f"{name} must be >= {2 if name == 'candidates' else 1}, got {getattr(self, name)}")
        if self.near_misses < 0 or not 0 < self.near_miss_size <= 1:
            raise ValueError("near_misses must be >= 0 and near_miss_size in (0, 1]")


def heldout_demos(seed: int, count: int, generalization_fraction: float = 0.25, image_size: int = 64) -> list[Any]:
    """``count`` fresh human demos (tasks in turn; a ``generalization_fraction`` of them of the
    generalization tier), retargeted: robot `Episode` demos any PsiW0-Retarget env can start from."""
    from psi_gym.retarget.human_demos import episode_rng, make_demo
    from psi_gym.retarget.pipeline import retarget_episode

    tasks = sorted(TASKS)
    demos = []
    for index in range(count):
        tier = "generalization" if episode_rng(seed, index, stream=9).random() < generalization_fraction else "precision"
        demos.append(retarget_episode(make_demo(tasks[index % len(tasks)], seed, 7_000_000 + index, tier, image_size)))
    return demos


def heldout_refs(seed: int, count: int) -> tuple[list[DemoRef], np.ndarray]:
    """`heldout_demos` as a refiner sees them, without a world model: their `DemoRef` (read through
    a PsiW0-Retarget env on an untrained W0, which is never stepped) and their first frames (N, H, W, 3)."""
    from gymnasium.vector import AutoresetMode

    from psi_gym.envs.psi_w0_retarget_vector import PsiW0RetargetVectorEnv

    demos = heldout_demos(seed, count)
    env = PsiW0RetargetVectorEnv(num_envs=1, world_model="random:debug", reward_model=lambda batch: np.zeros(len(batch)),
                                 demos=demos, successful_demos_only=False, autoreset_mode=AutoresetMode.DISABLED)
    refs = demo_refs(env)
    env.close()
    return refs, np.stack([demo.frames[0] for demo in demos])


def _thetas(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.concatenate([[0.0], rng.choice(RESIDUAL_SIZES, size=count - 1)])
    thetas = np.stack([random_theta(rng, size) for size in sizes])
    return thetas, sizes


def candidate_pool(seed: int, demos: int, candidates: int, cache: Path | None = None) -> tuple:
    """eval-w0's ranking candidates for ``seed``: ``demos`` held-out demos (`heldout_refs`), each with
    the raw retarget and ``candidates - 1`` random smooth residuals of the sizes refinement searches
    (drawn as the ranking test draws them), and the simulator's results on them. Returns ``(refs,
    first_frames, rows, plans, (sim_return, sim_success, sim_last))``, ``rows``/``plans`` one per
    candidate, demo by demo; ``sim_last`` (B, 3) is the object's true position at the end. With
    ``cache`` the simulator's results are kept in ``cache/sim-s{seed}-{demos}x{candidates}.npz`` and
    read back from there (the plans are drawn again: they depend on the seed only)."""
    refs, first_frames = heldout_refs(seed, demos)
    rng = np.random.default_rng([seed, 1])
    rows, plans = [], []
    for ref in refs:
        theta, _ = _thetas(rng, candidates)
        for k in range(candidates):
            rows.append(ref)
            plans.append(residual_actions(theta[k], ref.horizon, ref.demo_steps))
    path = None if cache is None else Path(cache) / f"sim-s{seed}-{demos}x{candidates}.npz"
    if path is not None and path.exists():
        saved = np.load(path)
        return refs, first_frames, rows, plans, (saved["returns"], saved["success"], saved["last"])
    sim = run_plans_in_sim(rows, plans, render=False)
    last = np.stack([v.recording.object_pose[-1, :3] if v.recording is not None else np.full(3, np.nan)
                     for v in sim.verdicts])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, returns=sim.returns, success=sim.success, last=last)
    return refs, first_frames, rows, plans, (sim.returns, sim.success, last)


def verdict_rates(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float | int | None]:
    """W0's verdicts (``predicted``) against the simulator's (``truth``): ``agreement``,
    ``false_success_rate`` = P(W0 success | sim failure), ``false_failure_rate``, both success
    rates and the ``count`` (None where a rate has no cases)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)

    def share(mask: np.ndarray) -> float | None:
        return float(mask.mean()) if mask.size else None

    return {
        "agreement": share(predicted == truth),
        "false_success_rate": share(predicted[~truth]),
        "false_failure_rate": share(~predicted[truth]),
        "predicted_success": share(predicted),
        "sim_success": share(truth),
        "count": int(truth.size),
    }


@dataclass
class CandidateRanking:
    """Per demo, how W0 ranks its K candidates against the simulator (`rank_candidates`)."""

    spearman: list[float | None]
    """Spearman's rho of W0's returns vs the simulator's; None where either is constant (ranks nothing)."""
    w0_top_pick_sim_success: np.ndarray
    """(D,) bool: the simulator's verdict on W0's best candidate."""
    sim_top_pick_sim_success: np.ndarray
    """(D,) bool: ... on the simulator's own best (the upper reference)."""
    raw_sim_success: np.ndarray
    """(D,) bool: ... on candidate 0, the raw retarget."""


def rank_candidates(w0_returns: np.ndarray, sim_returns: np.ndarray, sim_success: np.ndarray) -> CandidateRanking:
    """The ranking test on (D, K) arrays, one row per demo, candidate 0 the raw retarget: W0's
    returns against the simulator's score of the same plans and the simulator's verdicts."""
    w0_returns, sim_returns = np.asarray(w0_returns, np.float64), np.asarray(sim_returns, np.float64)
    sim_success = np.asarray(sim_success, bool)
    if not w0_returns.shape == sim_returns.shape == sim_success.shape or w0_returns.ndim != 2:
        raise ValueError(f"expected three (demos, candidates) arrays of one shape, got {w0_returns.shape}, "
                         f"{sim_returns.shape}, {sim_success.shape}")
    spearman = [None if np.ptp(w0) == 0 or np.ptp(sim) == 0 else float(spearmanr(w0, sim).correlation)
                for w0, sim in zip(w0_returns, sim_returns)]
    rows = np.arange(len(sim_success))
    return CandidateRanking(spearman, sim_success[rows, np.argmax(w0_returns, axis=1)],
                            sim_success[rows, np.argmax(sim_returns, axis=1)], sim_success[:, 0].copy())


def _track_verdicts(episodes: Sequence[Any]) -> np.ndarray:
    """The independent judge: `Task.is_success` on the object pose W0 tracked at the end."""
    return np.array([get_task(ep.task).is_success(SceneParams.from_dict(ep.scene), ep.object_pose[-1]) for ep in episodes])


def world_model_report(model: Any, reward_model: Any, estimator: Any, config: WorldModelReportConfig) -> dict[str, Any]:
    """The report (see the module doc) for ``model`` in an env with ``reward_model``; ``estimator``
    (anything with ``success_probability(frames, tasks)``) reads the simulator's true final frames."""
    from gymnasium.vector import AutoresetMode

    from psi_gym.envs.psi_w0_retarget_vector import PsiW0RetargetVectorEnv

    start_time = time.perf_counter()
    rng = np.random.default_rng([config.seed, 1])
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if config.progress else (lambda message: None)
    log(f"eval-w0: {config.demos} held-out demos (seed {config.seed}) ...")
    demos = heldout_demos(config.seed, config.demos, config.generalization_fraction, model.image_size)
    env = PsiW0RetargetVectorEnv(num_envs=min(config.num_envs, config.demos * config.candidates), world_model=model,
                                 reward_model=reward_model, demos=demos, successful_demos_only=False,
                                 autoreset_mode=AutoresetMode.DISABLED)
    try:
        refs = demo_refs(env)
        # 1. candidates
        rows: list[DemoRef] = []
        thetas, sizes, plans = [], [], []
        for ref in refs:
            theta, size = _thetas(rng, config.candidates)
            for k in range(config.candidates):
                rows.append(ref)
                thetas.append(theta[k])
                sizes.append(size[k])
                plans.append(residual_actions(theta[k], ref.horizon, ref.demo_steps))
        seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=len(rows))]
        log(f"eval-w0: {len(rows)} candidates in the simulator ...")
        sim = run_plans_in_sim(rows, plans, render=True)
        log(f"eval-w0: {len(rows)} candidates in W0 ...")
        w0 = run_plans_in_env(env, rows, plans, seeds, record_episodes=True)

        # 5. near misses around the simulator's best candidate of each demo
        near_rows, near_plans, near_base = [], [], []
        for d, ref in enumerate(refs):
            block = slice(d * config.candidates, (d + 1) * config.candidates)
            best = d * config.candidates + int(np.argmax(sim.returns[block]))
            for _ in range(config.near_misses):
                theta = np.clip(thetas[best] + rng.uniform(-config.near_miss_size, config.near_miss_size, thetas[best].shape), -1, 1)
                near_rows.append(ref)
                near_plans.append(residual_actions(theta, ref.horizon, ref.demo_steps))
                near_base.append(best)
        near_sim = run_plans_in_sim(near_rows, near_plans, render=False) if near_rows else None
        flips = [i for i in range(len(near_rows)) if near_sim.success[i] != sim.success[near_base[i]]]
        near_w0 = None
        if flips:
            log(f"eval-w0: {len(flips)} near misses (of {len(near_rows)} tried) in W0 ...")
            near_w0 = run_plans_in_env(env, [near_rows[i] for i in flips], [near_plans[i] for i in flips],
                                       [int(s) for s in rng.integers(0, 2**31 - 1, size=len(flips))], record_episodes=True)
    finally:
        env.close()

    tasks = np.array([ref.task for ref in rows])
    sim_success = sim.success
    w0_success = w0.success
    track_success = _track_verdicts(w0.episodes)
    true_final = np.stack([v.recording.frames[-1] if v.recording is not None else np.zeros((model.image_size,) * 2 + (3,), np.uint8)
                           for v in sim.verdicts])
    estimator_true = np.asarray(estimator.success_probability(true_final, list(tasks)).cpu().numpy()) > 0.5

    # 2. full horizon
    horizon = max(len(ep.frames) for ep in w0.episodes) - 1
    psnr_by_step, copy_by_step, error_median, error_p90, estimator_error = [], [], [], [], []
    for t in range(1, horizon + 1):
        live = [i for i, ep in enumerate(w0.episodes) if len(ep.frames) > t and sim.verdicts[i].recording is not None]
        predicted = np.stack([w0.episodes[i].frames[t] for i in live])
        truth = np.stack([sim.verdicts[i].recording.frames[t] for i in live])
        first = np.stack([sim.verdicts[i].recording.frames[0] for i in live])
        psnr_by_step.append(psnr(predicted, truth))
        copy_by_step.append(psnr(first, truth))
        error = np.array([np.linalg.norm(w0.episodes[i].object_pose[t, :3] - sim.verdicts[i].recording.object_pose[t, :3])
                          for i in live]) * 100.0
        error_median.append(float(np.median(error)))
        error_p90.append(float(np.percentile(error, 90)))
    eight = min(8, horizon)

    # 3. ranking
    shape = (len(refs), config.candidates)
    ranked = rank_candidates(w0.returns.reshape(shape), sim.returns.reshape(shape), sim_success.reshape(shape))
    rhos = [0.0 if rho is None else rho for rho in ranked.spearman]  # a constant return ranks nothing
    w0_pick, sim_pick = ranked.w0_top_pick_sim_success.tolist(), ranked.sim_top_pick_sim_success.tolist()
    raw = ranked.raw_sim_success.tolist()
    per_task = defaultdict(lambda: defaultdict(list))
    for d, ref in enumerate(refs):
        for name, value in (("spearman", rhos[d]), ("w0_top_pick_sim_success", w0_pick[d]),
                            ("sim_top_pick_sim_success", sim_pick[d]), ("raw_sim_success", raw[d])):
            per_task[ref.task][name].append(value)

    def summary_of(values: dict[str, list]) -> dict[str, float]:
        return {"spearman_median": float(np.median(values["spearman"])),
                **{key: float(np.mean(values[key])) for key in ("w0_top_pick_sim_success", "sim_top_pick_sim_success",
                                                                  "raw_sim_success")}}

    report: dict[str, Any] = {
        "seed": config.seed, "demos": len(refs), "candidates_per_demo": config.candidates,
        "episodes": len(rows), "episode_horizon": horizon,
        "ranking": {**summary_of({"spearman": rhos, "w0_top_pick_sim_success": w0_pick,
                                  "sim_top_pick_sim_success": sim_pick, "raw_sim_success": raw}),
                    "spearman_per_demo": [round(r, 4) for r in rhos],
                    "per_task": {task: summary_of(values) for task, values in sorted(per_task.items())}},
        "verdicts": {
            "env": verdict_rates(w0_success, sim_success),
            "independent_judge_w0_state": verdict_rates(track_success, sim_success),
            "estimator_on_true_frames": verdict_rates(estimator_true, sim_success),
            "per_task": {task: verdict_rates(w0_success[tasks == task], sim_success[tasks == task])
                         for task in sorted(set(tasks))},
        },
        "psnr_by_step": [round(v, 3) for v in psnr_by_step],
        "psnr_copy_first_by_step": [round(v, 3) for v in copy_by_step],
        f"psnr_first_{eight}_steps": float(np.mean(psnr_by_step[:eight])),
        f"psnr_gain_first_{eight}_steps": float(np.mean(psnr_by_step[:eight]) - np.mean(copy_by_step[:eight])),
        "psnr_full_horizon": float(np.mean(psnr_by_step)),
        "object_error_cm_median_by_step": [round(v, 3) for v in error_median],
        "object_error_cm_p90_by_step": [round(v, 3) for v in error_p90],
        "object_error_cm_last_step_median": error_median[-1],
        "object_error_cm_last_step_p90": error_p90[-1],
    }
    near = {"tried": len(near_rows), "pairs": len(flips)}
    if flips:
        truth = np.array([near_sim.success[i] for i in flips])
        near.update(verdict_rates(near_w0.success, truth))
        near["independent_judge_w0_state"] = verdict_rates(_track_verdicts(near_w0.episodes), truth)
        # the pair's other member: the base candidate, already run above
        base = np.array([near_base[i] for i in flips])
        member_right = near_w0.success == truth
        base_right = w0_success[base] == sim_success[base]
        near["near_miss_agreement"] = float(np.concatenate([member_right, base_right]).mean())
        near["pair_both_right"] = float((member_right & base_right).mean())
    report["near_misses"] = near
    report["seconds"] = round(time.perf_counter() - start_time, 1)
    if config.video_dir is not None:
        report["videos"] = _write_videos(Path(config.video_dir), refs, config, w0, sim)
    return report


def _write_videos(out: Path, refs: Sequence[DemoRef], config: WorldModelReportConfig, w0: Any, sim: Any) -> list[str]:
    """Per demo (the first ``videos``): the simulator's and W0's frames of W0's top pick and of the
    simulator's top pick, side by side."""
    from psi_gym.data.video import side_by_side, write_video

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for d, ref in enumerate(refs[: config.videos]):
        block = np.arange(d * config.candidates, (d + 1) * config.candidates)
        for name, i in (("w0_pick", block[np.argmax(w0.returns[block])]), ("sim_pick", block[np.argmax(sim.returns[block])])):
            recording = sim.verdicts[i].recording
            if recording is None:
                continue
            frames = w0.episodes[i].frames
            steps = min(len(frames), len(recording.frames))
            path = out / f"{d:02d}_{ref.task}_{name}_sim{int(sim.success[i])}_w0{int(w0.success[i])}_sim_vs_w0.mp4"
            write_video(path, side_by_side(recording.frames[:steps], frames[:steps]), fps=5)
            written.append(str(path))
    return written

"""Refine retargeted demos inside W0 and count what the simulator says (``psi-gym refine``).

The experiment behind the project's headline, with its controls, on demos the refiner never tuned on:

1. *Tuning* demos and *held-out* demos come from different seeds (e.g. the shipped set, seed 2026,
   and ``psi-gym demos --seed 9001`` + ``psi-gym retarget``). Only held-out demos are reported.
2. The refiner works **inside W0** only, on the W0 vector env's return (one batched W0 forward per
   step for all candidates): ``cem`` (population search over the smooth residual of
   `psi_gym.sim.residuals`, one distribution per demo) or ``ppo`` (PPO on R2, TorchRL).
3. **The judge** (the simulator, evaluation only) replays every plan's joint targets from the demo's
   scene and start joints and judges the task at the end of the episode (`psi_gym.sim.verify`).

Reported per task and overall (fractions of held-out demos):

=================================== ======================================================
``raw_success``                     the raw retarget (residual 0) over the env's horizon, sim
``refined_success``                 the refined plans, sim-verified
``w0_predicted_success``            the refined plans, W0's own verdict (what W0 believes)
``control_random_success``          a random residual of the same size (RMS) as each refined
                                    one, sim
``control_mean_residual_success``   one mean residual per task, from the same refiner run on
                                    the tuning demos only, applied to the held-out demos, sim
``sim_search_success``              the same search scored by the simulator (the upper
                                    reference: what W0 stands in for); for ``ppo``, CEM
``policy_closed_loop_sim_success``  R2 (after PPO) run closed loop in the simulator (judge)
=================================== ======================================================

Nothing that trains or refines reads the judge: the refiner sees W0's returns on held-out demos,
the mean residual comes from W0 on tuning demos; the simulator only scores ``sim_search`` (the
reference, reported, never used).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psi_gym.agents.rollouts import DemoRef, demo_refs, run_in_env, run_plans_in_env, run_plans_in_sim, select_demos
from psi_gym.agents.search import SearchConfig, cem_search, score_in_env, score_in_sim, theta_plan
from psi_gym.sim.residuals import NUM_PARAMETERS

REFINERS = ("cem", "ppo")
METRICS = ("raw_success", "refined_success", "w0_predicted_success", "control_random_success",
           "control_mean_residual_success", "sim_search_success", "policy_closed_loop_sim_success")


@dataclass
class RefineConfig:
    """What ``psi-gym refine`` runs (every field is a command-line option)."""

    demos: str = ""
    """held-out demo set (a retargeted dataset folder, or human demos): reported."""
    tuning_demos: str = "default"
    """tuning demo set, another seed (default: the 48 shipped demos, seed 2026): the mean-residual control."""
    refiner: str = "cem"
    """``cem`` or ``ppo``."""
    num_demos: int = 8
    """held-out demos used (the first ones whose human demo succeeded; tasks alternate in the sets)."""
    num_tuning_demos: int = 8
    world_model: Any = "default"
    estimator: str = "default"
    reward_model: str = "object_tracking"
    search: SearchConfig = field(default_factory=SearchConfig)
    max_rows: int = 128
    """W0 env rows stepped together (one batched W0 call per step)."""
    policy: str | None = None
    """R2 folder to start PPO from (``psi-gym train-r2``); None: a fresh R2 (``policy_architecture``)."""
    policy_architecture: str = "wan"
    ppo_iterations: int = 20
    ppo_num_envs: int = 16
    ppo_epochs: int = 4
    ppo_learning_rate: float = 3e-4
    ppo_log_std: float = -1.0
    seed: int = 0
    out: str | None = None
    """run folder: records.jsonl, summary.json, thetas, PPO checkpoints, videos."""
    videos: int = 4
    """mp4s of refined rollouts, W0's frames beside the simulator's replay (0: none)."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.refiner not in REFINERS:
            raise ValueError(f"refiner must be one of {REFINERS}, got {self.refiner!r}")
        if self.num_demos < 1 or self.num_tuning_demos < 1:
            raise ValueError(f"num_demos and num_tuning_demos must be >= 1, got {self.num_demos}, {self.num_tuning_demos}")


@dataclass
class DemoRecord:
    """One held-out demo's outcomes."""

    demo_id: str
    task: str
    raw_success: bool
    refined_success: bool
    w0_predicted_success: bool
    control_random_success: bool
    control_mean_residual_success: bool
    sim_search_success: bool
    policy_closed_loop_sim_success: bool | None
    refined_w0_return: float
    refined_sim_return: float
    raw_sim_return: float
    refined_size_rms: float


def rate(values: Sequence[bool | None]) -> float | None:
    values = [bool(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise(records: Sequence[DemoRecord]) -> dict[str, Any]:
    """Per task and overall fractions of every metric (see the module doc)."""
    by_task: dict[str, list[DemoRecord]] = defaultdict(list)
    for record in records:
        by_task[record.task].append(record)

    def block(group: Sequence[DemoRecord]) -> dict[str, Any]:
        out: dict[str, Any] = {"demos": len(group)}
        for metric in METRICS:
            out[metric] = rate([getattr(r, metric) for r in group])
        controls = [out["control_random_success"], out["control_mean_residual_success"]]
        out["gain_over_raw"] = out["refined_success"] - out["raw_success"]
        out["gain_over_best_control"] = out["refined_success"] - max(controls)
        out["w0_sim_agreement"] = rate([r.w0_predicted_success == r.refined_success for r in group])
        return out

    return {"overall": block(records), "per_task": {task: block(group) for task, group in sorted(by_task.items())}}


def _make_env(config: RefineConfig, demos: Any, num_envs: int):
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    import psi_gym  # noqa: F401  (registers the envs)

    return gym.make_vec("PsiW0-Retarget-v0", num_envs=num_envs, autoreset_mode=AutoresetMode.DISABLED,
                        world_model=config.world_model, estimator=config.estimator, reward_model=config.reward_model,
                        demos=demos)


def _random_plans_of_size(demos: Sequence[DemoRef], sizes: Sequence[float], rng: np.random.Generator,
                          knots: int) -> list[np.ndarray]:
    """A random smooth residual per demo, scaled to the RMS ``sizes[i]`` of the refined plan."""
    plans = []
    for demo, size in zip(demos, sizes):
        plan = theta_plan(rng.uniform(-1.0, 1.0, (knots, NUM_PARAMETERS)), demo)
        rms = float(np.sqrt(np.mean(plan ** 2)))
        plans.append(np.clip(plan * (size / rms if rms > 0 else 0.0), -1.0, 1.0))
    return plans


def _rms(plan: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(plan, np.float64) ** 2)))


def _mean_plans(tuning: Sequence[DemoRef], tuning_plans: Sequence[np.ndarray], heldout: Sequence[DemoRef]) -> list[np.ndarray]:
    """One average residual per task (over the tuning demos' refined plans), for each held-out demo.
    Plans are aligned by step; a held-out demo of a task no tuning demo has gets residual 0."""
    by_task: dict[str, list[np.ndarray]] = defaultdict(list)
    for demo, plan in zip(tuning, tuning_plans):
        by_task[demo.task].append(plan)
    plans = []
    for demo in heldout:
        group = by_task.get(demo.task)
        if not group:
            plans.append(np.zeros((demo.horizon, 22), np.float32))
            continue
        length = demo.horizon
        padded = [np.concatenate([p[:length], np.repeat(p[-1:], max(0, length - len(p)), axis=0)]) for p in group]
        plans.append(np.mean(padded, axis=0).astype(np.float32))
    return plans


def _bar(config: RefineConfig, total: int, description: str):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="iter")


def _save_npz(path: Path, **arrays: Any) -> None:
    from psi_gym.data.atomic import write_file_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, lambda handle: np.savez(handle, **arrays))


class _Log:
    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.progress:
            import sys

            print(f"[refine {time.perf_counter() - self.start:6.0f}s] {message}", file=sys.stderr, flush=True)


def refine_demos(config: RefineConfig) -> dict[str, Any]:
    """Run the experiment of the module doc; return the JSON summary (and write the run folder)."""
    import torch

    log = _Log(config.progress)
    timings: dict[str, float] = {}
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    out = Path(config.out) if config.out else None

    tick = time.perf_counter()
    population_rows = min(config.max_rows, max(config.num_demos, config.num_tuning_demos) * config.search.population
                          * max(1, config.search.robust_starts))
    # each env holds exactly its demos (indices 0 .. n-1): the held-out ones, or the tuning ones
    heldout_episodes = select_demos(config.demos, config.num_demos)
    tuning_episodes = select_demos(config.tuning_demos, config.num_tuning_demos)
    heldout_env = _make_env(config, heldout_episodes, population_rows)
    heldout = demo_refs(heldout_env)
    tuning_env = _make_env(config, tuning_episodes, population_rows)
    tuning = demo_refs(tuning_env)
    overlap = {d.demo_id for d in heldout} & {d.demo_id for d in tuning}
    if overlap:
        raise ValueError(f"tuning and held-out demos overlap ({sorted(overlap)[:3]} ...): make the held-out demos "
                         "with another seed (psi-gym demos --seed 9001 ... && psi-gym retarget ...)")
    timings["setup"] = time.perf_counter() - tick
    log(f"{len(heldout)} held-out demos, {len(tuning)} tuning demos, refiner {config.refiner}")
    eval_seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=len(heldout))]

    # 1. Raw retarget (judge).
    tick = time.perf_counter()
    raw = run_plans_in_sim(heldout, [np.zeros((d.horizon, 22), np.float32) for d in heldout])
    timings["raw_sim"] = time.perf_counter() - tick

    # 2. Refine in W0: held-out demos, and the same refiner on tuning demos (the mean-residual control).
    policy_success: list[bool | None] = [None] * len(heldout)
    ppo_history: list[dict[str, float]] = []
    tick = time.perf_counter()
    w0_rollouts = 0
    if config.refiner == "cem":
        bar = _bar(config, 2 * config.search.iterations, "cem in W0 (held-out, then tuning demos)")

        def progress(record: dict[str, float]) -> None:
            log(f"cem iteration {record['iteration']}: best W0 return {record['best_return']:.2f}, "
                f"mean candidate {record['mean_candidate_return']:.2f}")
            if bar is not None:
                bar.update(1)

        def checkpoint(name: str):  # the search state after every iteration: what a rerun can look at
            def save(iteration: int, mean: np.ndarray, std: np.ndarray) -> None:
                if out is not None:
                    _save_npz(out / f"cem-{name}.npz", mean=mean, std=std, iteration=iteration)
            return save

        def scorer(env: Any):
            return score_in_env(env, config.search.robust_starts, config.search.robust_noise, seed=config.seed)

        search = cem_search(heldout, scorer(heldout_env), config.search, rng, progress, checkpoint("heldout"))
        refined_plans = search.plans
        tuning_search = cem_search(tuning, scorer(tuning_env), config.search, rng, progress, checkpoint("tuning"))
        if bar is not None:
            bar.close()
        tuning_plans = tuning_search.plans
        w0_rollouts += search.rollouts + tuning_search.rollouts
        thetas = {"heldout_theta": search.theta, "tuning_theta": tuning_search.theta}
    else:
        from psi_gym.agents.policy import PsiR2Config, PsiR2Policy
        from psi_gym.agents.ppo import PPOConfig, ppo_refine

        if config.policy:
            policy = PsiR2Policy.from_pretrained(config.policy)
        else:
            policy = PsiR2Policy.from_policy_config(PsiR2Config(architecture=config.policy_architecture))
        # PPO draws its episodes from the chosen held-out demos only
        ppo_env = _make_env(config, heldout_episodes, config.ppo_num_envs)
        ppo = ppo_refine(ppo_env, policy, PPOConfig(
            iterations=config.ppo_iterations, epochs=config.ppo_epochs, learning_rate=config.ppo_learning_rate,
            log_std=config.ppo_log_std, seed=config.seed, progress=config.progress),
            out=(out / "ppo") if out else None,
            on_iteration=lambda r: log(f"ppo iteration {r['iteration']}: W0 return {r['w0_return']:.2f}, "
                                       f"W0 success {r['w0_success']:.2f}"))
        ppo_history = ppo.history
        w0_rollouts += ppo.frames // max(1, int(np.mean([d.horizon for d in heldout])))

        def act(obs: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
            return policy.act(obs, deterministic=True)

        refined_plans = run_in_env(heldout_env, heldout, eval_seeds, act=act).actions
        tuning_plans = run_in_env(tuning_env, tuning, [int(s) for s in rng.integers(0, 2**31 - 1, len(tuning))],
                                  act=act).actions
        thetas = {}
        # closed loop in the simulator (the judge): R2 after PPO
        import gymnasium as gym
        from gymnasium.vector import AutoresetMode

        judge = gym.make_vec("PsiSim-Retarget-v0", num_envs=min(8, len(heldout)), autoreset_mode=AutoresetMode.DISABLED,
                             demos=heldout_episodes, role="judge")
        policy_success = [bool(s) for s in run_in_env(judge, heldout, eval_seeds, act=act).success]
    timings["refine_w0"] = time.perf_counter() - tick

    # 3. What W0 says of the refined plans, with its frames for the videos.
    tick = time.perf_counter()
    w0 = run_plans_in_env(heldout_env, heldout, refined_plans, eval_seeds, record_frames=out is not None and config.videos > 0)
    timings["w0_verdict"] = time.perf_counter() - tick

    # 4. The judge on the refined plans and the controls.
    tick = time.perf_counter()
    refined = run_plans_in_sim(heldout, refined_plans, render=out is not None and config.videos > 0)
    sizes = [_rms(p) for p in refined_plans]
    random_plans = _random_plans_of_size(heldout, sizes, rng, config.search.knots)
    control_random = run_plans_in_sim(heldout, random_plans)
    mean_plans = _mean_plans(tuning, tuning_plans, heldout)
    control_mean = run_plans_in_sim(heldout, mean_plans)
    timings["judge"] = time.perf_counter() - tick

    # 5. The upper reference: the same search scored by the simulator.
    tick = time.perf_counter()
    sim_search = cem_search(heldout, score_in_sim, config.search, rng)
    sim_reference = run_plans_in_sim(heldout, sim_search.plans)
    timings["sim_search"] = time.perf_counter() - tick

    records = [
        DemoRecord(
            demo_id=d.demo_id, task=d.task, raw_success=bool(raw.success[i]), refined_success=bool(refined.success[i]),
            w0_predicted_success=bool(w0.success[i]), control_random_success=bool(control_random.success[i]),
            control_mean_residual_success=bool(control_mean.success[i]),
            sim_search_success=bool(sim_reference.success[i]), policy_closed_loop_sim_success=policy_success[i],
            refined_w0_return=float(w0.returns[i]), refined_sim_return=float(refined.returns[i]),
            raw_sim_return=float(raw.returns[i]), refined_size_rms=sizes[i],
        )
        for i, d in enumerate(heldout)
    ]
    summary = summarise(records)
    result: dict[str, Any] = {
        "refiner": config.refiner,
        "seed": config.seed,
        "demos": str(config.demos),
        "tuning_demos": str(config.tuning_demos),
        "world_model": str(config.world_model),
        "estimator": str(config.estimator),
        "num_demos": len(heldout),
        "num_tuning_demos": len(tuning),
        **{metric: summary["overall"][metric] for metric in METRICS},
        "gain_over_raw": summary["overall"]["gain_over_raw"],
        "gain_over_best_control": summary["overall"]["gain_over_best_control"],
        "w0_sim_agreement": summary["overall"]["w0_sim_agreement"],
        "per_task": summary["per_task"],
        "refined_size_rms": float(np.mean(sizes)),
        "w0_rollouts": int(w0_rollouts),
        "sim_search_rollouts": int(sim_search.rollouts),
        "search": asdict(config.search),
        "ppo_history": ppo_history,
        "seconds": {key: round(value, 2) for key, value in timings.items()},
        "total_seconds": round(sum(timings.values()), 2),
        "out": str(out) if out else None,
        "videos": [],
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        result["videos"] = _write_videos(out, heldout, w0, refined, config.videos)
        with open(out / "records.jsonl", "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(asdict(record)) + "\n")
        if thetas:
            _save_npz(out / "thetas.npz", **thetas, sim_search_theta=sim_search.theta,
                      heldout_demo_ids=np.asarray([d.demo_id for d in heldout]),
                      tuning_demo_ids=np.asarray([d.demo_id for d in tuning]))
        (out / "summary.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    log(f"raw {result['raw_success']:.2f} -> refined (sim) {result['refined_success']:.2f}; W0 said "
        f"{result['w0_predicted_success']:.2f}; controls random {result['control_random_success']:.2f}, "
        f"mean residual {result['control_mean_residual_success']:.2f}; sim search {result['sim_search_success']:.2f}")
    return result


def _write_videos(out: Path, demos: Sequence[DemoRef], w0: Any, refined: Any, count: int) -> list[str]:
    """mp4s: W0's refined rollout | the simulator's replay of the same joint targets."""
    from psi_gym.data.video import side_by_side, write_video

    paths = []
    for i in range(min(count, len(demos))):
        sim_frames = refined.verdicts[i].recording.frames if refined.verdicts[i].recording is not None else None
        if w0.frames is None or sim_frames is None or len(sim_frames) == 0:
            continue
        steps = min(len(w0.frames[i]), len(sim_frames))
        path = out / "videos" / f"{i:02d}-{demos[i].demo_id}.mp4"
        write_video(path, side_by_side(w0.frames[i][:steps], sim_frames[:steps]), fps=10)
        paths.append(str(path))
    return paths


__all__ = ["METRICS", "DemoRecord", "RefineConfig", "refine_demos", "summarise"]

"""Policy evaluation in W0 against the simulator (``psi-gym evaluate``).

The report's first use of a world model: roll a policy out in W0 and estimate its success without
a robot. Whether that estimate can be trusted is measured here: for several policies of different
quality, each is run closed loop on the same held-out demos (same seeds)

* in the W0 vector env: success = W0's verdict at the end of the episode (the estimate);
* in the simulator twin in its judge role: success = the simulator's verdict (the truth);

and the two are compared across policies: Pearson and Spearman correlation of the success rates
(and of the mean returns), and the mean absolute error of the estimate.

Policies (`Candidate`): R2 checkpoints (``psi-gym train-r2`` along training, ``psi-gym refine
--refiner ppo``), each deterministic or with exploration noise (``NAME@noise``: pre-tanh standard
deviation), and baselines that need no training: ``raw`` (residual 0, the raw retarget),
``random:S`` (a smooth random residual of size S per episode, `psi_gym.sim.residuals`), and
``oracle`` / ``oracle+S``: per demo, the residual a CEM search scored by the simulator found (plus a
random residual of size S) — good policies by construction, so that the set spans the range of
quality an evaluation must rank. The oracle reads the simulator on the evaluation demos: it is a
policy *under* evaluation, never a number that trains or tunes anything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from psi_gym.agents.rollouts import DemoRef, demo_refs, run_in_env, select_demos
from psi_gym.agents.search import theta_plan
from psi_gym.sim.residuals import DEFAULT_KNOTS, NUM_PARAMETERS


@dataclass
class Candidate:
    """A policy to evaluate: closed loop (``act``) or open loop (``plans``: demo -> plan)."""

    name: str
    act: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray] | None = None
    plans: Callable[[Sequence[DemoRef]], list[np.ndarray]] | None = None


def policy_candidate(folder: str, noise: float = 0.0, seed: int = 0, name: str | None = None) -> Candidate:
    """An R2 checkpoint, deterministic (``noise=0``) or sampling with pre-tanh std ``noise``."""
    import torch

    from psi_gym.agents.policy import PsiR2Policy

    policy = PsiR2Policy.from_pretrained(folder).eval()
    generator = torch.Generator().manual_seed(seed)
    if noise > 0:
        with torch.no_grad():
            policy.log_std.fill_(math.log(noise))

    def act(obs: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        return policy.act(obs, deterministic=noise <= 0, generator=generator)

    return Candidate(name or (f"{folder}@{noise:g}" if noise > 0 else folder), act=act)


def baseline_candidate(spec: str, seed: int = 0) -> Candidate:
    """``raw`` or ``random:S`` (see the module doc)."""
    if spec == "raw":
        return Candidate("raw", plans=lambda demos: [np.zeros((d.horizon, 22), np.float32) for d in demos])
    kind, _, size = spec.partition(":")
    if kind == "random" and size:
        amplitude = float(size)

        def plans(demos: Sequence[DemoRef]) -> list[np.ndarray]:
            rng = np.random.default_rng(seed)
            return [theta_plan(rng.uniform(-amplitude, amplitude, (DEFAULT_KNOTS, NUM_PARAMETERS)), d) for d in demos]

        return Candidate(spec, plans=plans)
    raise ValueError(f"unknown baseline {spec!r}: expected 'raw' or 'random:SIZE' (e.g. random:0.5)")


def oracle_candidate(spec: str, seed: int = 0, search: Any = None) -> Candidate:
    """``oracle`` (CEM scored by the simulator, per demo) or ``oracle+S`` (its plan + a random residual
    of size S). The search runs once per demo list and is shared by every ``oracle*`` candidate."""
    from psi_gym.agents.search import SearchConfig, cem_search, score_in_sim

    _, _, size = spec.partition("+")
    amplitude = float(size) if size else 0.0
    cache: dict[tuple[str, ...], list[np.ndarray]] = _ORACLE_CACHE

    def plans(demos: Sequence[DemoRef]) -> list[np.ndarray]:
        key = tuple(d.demo_id for d in demos)
        if key not in cache:
            cache[key] = cem_search(demos, score_in_sim, search or SearchConfig(), np.random.default_rng(seed)).plans
        rng = np.random.default_rng(seed + 1)
        noise = [theta_plan(rng.uniform(-amplitude, amplitude, (DEFAULT_KNOTS, NUM_PARAMETERS)), d) for d in demos]
        return [np.clip(p + n, -1.0, 1.0) for p, n in zip(cache[key], noise)]

    return Candidate(spec, plans=plans)


_ORACLE_CACHE: dict[tuple[str, ...], list[np.ndarray]] = {}


def parse_candidate(spec: str, seed: int = 0) -> Candidate:
    """``raw``, ``random:S``, ``oracle``, ``oracle+S``, ``FOLDER`` or ``FOLDER@NOISE``."""
    if spec == "raw" or spec.startswith("random:"):
        return baseline_candidate(spec, seed)
    if spec == "oracle" or spec.startswith("oracle+"):
        return oracle_candidate(spec, seed)
    folder, _, noise = spec.rpartition("@") if "@" in spec else (spec, "", "")
    return policy_candidate(folder, float(noise) if noise else 0.0, seed, name=spec)


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, float | None]:
    """Pearson and Spearman of two sequences (None where undefined: fewer than 3 or constant)."""
    from scipy import stats

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson": None, "spearman": None}
    return {"pearson": float(stats.pearsonr(x, y)[0]), "spearman": float(stats.spearmanr(x, y)[0])}


def run_candidate(env: Any, demos: Sequence[DemoRef], seeds: Sequence[int], candidate: Candidate):
    if candidate.plans is not None:
        return run_in_env(env, demos, seeds, plans=candidate.plans(demos))
    return run_in_env(env, demos, seeds, act=candidate.act)


def evaluate_candidates(candidates: Sequence[Candidate], w0_env: Any, judge_env: Any, demos: Sequence[DemoRef],
                        seeds: Sequence[int], log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Each candidate in W0 and in the judge on the same demos and seeds; the correlations."""
    from psi_gym.envs.sim_retarget import is_judge

    if not is_judge(judge_env):
        raise ValueError("the truth comes from the simulator in its judge role: PsiSim-Retarget-v0 with role='judge'")
    rows = []
    for candidate in candidates:
        start = time.perf_counter()
        in_w0 = run_candidate(w0_env, demos, seeds, candidate)
        in_sim = run_candidate(judge_env, demos, seeds, candidate)
        row = {
            "policy": candidate.name,
            "w0_success": float(in_w0.success.mean()),
            "sim_success": float(in_sim.success.mean()),
            "w0_return": float(in_w0.returns.mean()),
            "sim_return": float(in_sim.returns.mean()),
            "agreement": float((in_w0.success == in_sim.success).mean()),
            "seconds": round(time.perf_counter() - start, 2),
        }
        rows.append(row)
        if log is not None:
            log(f"{candidate.name}: W0 {row['w0_success']:.2f} vs sim {row['sim_success']:.2f}")
    w0 = [r["w0_success"] for r in rows]
    sim = [r["sim_success"] for r in rows]
    return {
        "policies": rows,
        "num_policies": len(rows),
        "num_demos": len(demos),
        "success": correlation(w0, sim),
        "returns": correlation([r["w0_return"] for r in rows], [r["sim_return"] for r in rows]),
        "mean_abs_error": float(np.mean(np.abs(np.subtract(w0, sim)))) if rows else None,
        "w0_top_pick": rows[int(np.argmax(w0))]["policy"] if rows else None,
        "sim_top_pick": rows[int(np.argmax(sim))]["policy"] if rows else None,
    }


@dataclass
class EvaluateConfig:
    """What ``psi-gym evaluate`` runs."""

    policies: Sequence[str] = ("raw", "random:0.3", "random:0.6", "random:1.0")
    demos: str = "default"
    num_demos: int = 24
    world_model: Any = "default"
    estimator: str = "default"
    num_envs: int = 24
    seed: int = 0
    progress: bool = True


def evaluate_policies(config: EvaluateConfig) -> dict[str, Any]:
    """The experiment of the module doc; the JSON summary."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    import psi_gym  # noqa: F401

    start = time.perf_counter()
    episodes = select_demos(config.demos, config.num_demos)
    w0_env = gym.make_vec("PsiW0-Retarget-v0", num_envs=min(config.num_envs, len(episodes)),
                          autoreset_mode=AutoresetMode.DISABLED, world_model=config.world_model,
                          estimator=config.estimator, demos=episodes)
    judge_env = gym.make_vec("PsiSim-Retarget-v0", num_envs=min(config.num_envs, len(episodes), 8),
                             autoreset_mode=AutoresetMode.DISABLED, demos=episodes, role="judge")
    demos = demo_refs(w0_env)
    seeds = [int(s) for s in np.random.default_rng(config.seed).integers(0, 2**31 - 1, size=len(demos))]
    candidates = [parse_candidate(spec, config.seed) for spec in config.policies]

    def log(message: str) -> None:
        if config.progress:
            import sys

            print(f"[evaluate {time.perf_counter() - start:6.0f}s] {message}", file=sys.stderr, flush=True)

    result = evaluate_candidates(candidates, w0_env, judge_env, demos, seeds, log)
    return {"demos": str(config.demos), "world_model": str(config.world_model), "seed": config.seed, **result,
            "seconds": round(time.perf_counter() - start, 2)}


__all__ = ["Candidate", "EvaluateConfig", "baseline_candidate", "correlation", "evaluate_candidates",
           "evaluate_policies", "oracle_candidate", "parse_candidate", "policy_candidate"]

"""The population-search refiner: the cross-entropy method (CEM) over a smooth residual per demo.

Each demo gets its own search distribution over ``theta`` (K knots x 10: wrist x, y, z, yaw, pitch,
roll and a closure per finger, `psi_gym.sim.residuals`), a diagonal Gaussian with mean ``mu`` and
standard deviation ``sigma``. Every iteration, for every demo at once:

1. draw P candidates ``theta_i = clip(mu + sigma * eps_i, -1, 1)`` (candidate 0 is ``mu`` itself);
2. turn each into a plan ``a = residual_actions(theta, H, T)`` and score all D x P plans with one
   *scorer* (`score_in_env`: the W0 vector env, N candidates = N rows, one W0 forward per step; or
   `score_in_sim`: the simulator, the upper reference);
3. keep the E best of each demo (the elites) and set ``mu, sigma`` to their mean and standard
   deviation (``sigma`` floored at ``min_std``).

The refined residual is the final ``mu`` (the mean, not the best single candidate: the best of many
noisy W0 scores is the one W0 over-rates most). The seeds of W0's noise are shared by all
candidates of one demo in one iteration (common random numbers): candidates differ by their plan,
not by their luck.

A robust search (``SearchConfig.robust_starts = R > 0``) scores every plan from R readings of its
demo's start instead of W0's own one: W0's reading of the object moved by Gaussian
``robust_noise`` m per horizontal axis (the env's ``object_shift`` reset option), the same R
readings for every candidate of a demo during the whole search; the score is the mean return over
the readings. W0 reads the object's start off the first frame and advances it deterministically,
so a plan tuned to the exact start W0 saw (a grasp that only closes where W0 put the object) is the
likeliest exploit; it cannot win R readings at once. It costs R times the W0 rollouts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psi_gym.agents.rollouts import DemoRef, run_plans_in_env, run_plans_in_sim
from psi_gym.sim.residuals import DEFAULT_KNOTS, NUM_PARAMETERS, residual_actions

Scorer = Callable[[Sequence[DemoRef], Sequence[np.ndarray], Sequence[int]], np.ndarray]
"""``scorer(demos, plans, seeds) -> returns`` (one per plan; higher is better). A scorer that runs
more than one rollout per plan says how many in its ``rollouts_per_plan`` attribute."""


@dataclass
class SearchConfig:
    """Numbers of `cem_search` (the defaults cost ~100 rollouts per demo)."""

    population: int = 16
    """P: candidates per demo per iteration (candidate 0 is the current mean)."""
    iterations: int = 6
    """CEM iterations."""
    elites: int = 4
    """E: best candidates the distribution is refitted to."""
    init_std: float = 0.5
    """initial standard deviation of every parameter (the mean starts at 0: the raw retarget)."""
    min_std: float = 0.05
    """floor of the standard deviation (keeps exploring)."""
    knots: int = DEFAULT_KNOTS
    """K: time knots of the residual."""
    robust_starts: int = 0
    """R: 0 scores each plan from W0's own reading of its demo's start; R > 0 from R readings with
    the object moved by ``robust_noise`` (see the module doc; `score_in_env` does it). Measured in
    W0's dynamics (`benchmarks/w0_exploits.py --robust 4`, 6 pools of 96 held-out demos, README):
    refined sim success 278 -> 324 of 576, higher on 5 of 6 pools. In the flywheel's small search
    (8 x 3, three seeds) it kept more trajectories at a lower precision (0.62 vs 0.68), so 0 stays
    the default; README, "Measured figures", has `psi-gym refine`'s figures."""
    robust_noise: float = 0.01
    """m: standard deviation of a reading's shift per horizontal axis (3 mm changed nothing in the
    benchmark; 1 cm did)."""

    def __post_init__(self) -> None:
        if self.population < 2 or not 1 <= self.elites <= self.population:
            raise ValueError(f"need population >= 2 and 1 <= elites <= population, got {self.population}, {self.elites}")
        if self.iterations < 1 or self.knots < 2:
            raise ValueError(f"need iterations >= 1 and knots >= 2, got {self.iterations}, {self.knots}")
        if not (self.init_std > 0 and self.min_std >= 0):
            raise ValueError(f"need init_std > 0 and min_std >= 0, got {self.init_std}, {self.min_std}")
        if self.robust_starts < 0 or not (np.isfinite(self.robust_noise) and self.robust_noise >= 0):
            raise ValueError(f"need robust_starts >= 0 and a finite robust_noise >= 0 (metres), got "
                             f"{self.robust_starts}, {self.robust_noise}")


@dataclass
class SearchResult:
    """The refined residual of each demo and how the search went."""

    theta: np.ndarray  # (D, K, 10) final means
    plans: list[np.ndarray]  # D x (H, 22) their residual actions
    best_returns: np.ndarray  # (D, iterations) best candidate score per iteration
    mean_returns: np.ndarray  # (D, iterations) score of the mean candidate per iteration
    rollouts: int  # rollouts the scorer ran in all (plans scored x its rollouts_per_plan)
    history: list[dict[str, float]] = field(default_factory=list)


def theta_plan(theta: np.ndarray, demo: DemoRef) -> np.ndarray:
    """Residual actions (H, 22) of ``theta`` (K, 10) on ``demo``."""
    return residual_actions(theta, demo.horizon, demo.demo_steps)


def cem_search(demos: Sequence[DemoRef], scorer: Scorer, config: SearchConfig | None = None,
               rng: np.random.Generator | None = None, progress: Callable[[dict[str, float]], None] | None = None,
               checkpoint: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> SearchResult:
    """Refine one residual per demo with CEM (see the module doc). ``progress(record)`` and
    ``checkpoint(iteration, mean, std)`` are called after every iteration."""
    config = config or SearchConfig()
    rng = rng if rng is not None else np.random.default_rng(0)
    D, P, E, K = len(demos), config.population, config.elites, config.knots
    mean = np.zeros((D, K, NUM_PARAMETERS))
    std = np.full((D, K, NUM_PARAMETERS), config.init_std)
    best_returns = np.zeros((D, config.iterations), np.float32)
    mean_returns = np.zeros((D, config.iterations), np.float32)
    history = []
    for iteration in range(config.iterations):
        noise = rng.standard_normal((D, P, K, NUM_PARAMETERS))
        noise[:, 0] = 0.0  # candidate 0: the mean
        candidates = np.clip(mean[:, None] + std[:, None] * noise, -1.0, 1.0)
        seeds = rng.integers(0, 2**31 - 1, size=D)
        rows_demo = [demos[d] for d in range(D) for _ in range(P)]
        plans = [theta_plan(candidates[d, p], demos[d]) for d in range(D) for p in range(P)]
        returns = np.asarray(scorer(rows_demo, plans, [int(seeds[d]) for d in range(D) for _ in range(P)]),
                             np.float64).reshape(D, P)
        order = np.argsort(-returns, axis=1, kind="stable")[:, :E]
        elites = np.take_along_axis(candidates, order[:, :, None, None], axis=1)
        mean = elites.mean(axis=1)
        std = np.maximum(elites.std(axis=1), config.min_std)
        best_returns[:, iteration] = returns.max(axis=1)
        mean_returns[:, iteration] = returns[:, 0]
        record = {"iteration": iteration, "best_return": float(returns.max(axis=1).mean()),
                  "mean_candidate_return": float(returns[:, 0].mean()), "std": float(std.mean())}
        history.append(record)
        if progress is not None:
            progress(record)
        if checkpoint is not None:
            checkpoint(iteration, mean.astype(np.float32), std.astype(np.float32))
    plans = [theta_plan(mean[d], demos[d]) for d in range(D)]
    return SearchResult(theta=mean.astype(np.float32), plans=plans, best_returns=best_returns,
                        mean_returns=mean_returns, rollouts=D * P * config.iterations * getattr(scorer, "rollouts_per_plan", 1),
                        history=history)


def start_readings(demo: DemoRef, readings: int, noise: float, seed: int) -> np.ndarray:
    """(readings, 2): the shifts of W0's reading of ``demo``'s object start in a robust search
    (metres along x and y), a function of the demo's index and ``seed`` only, so every candidate of
    the demo, in every iteration, meets the same readings."""
    return np.random.default_rng([int(seed), int(demo.index)]).normal(0.0, noise, (readings, 2))


def score_in_env(vector_env: Any, robust_starts: int = 0, robust_noise: float = 0.01, seed: int = 0) -> Scorer:
    """Score plans by their return in the W0 vector env (``autoreset_mode=DISABLED``); the simulator
    in its robot role works too, never the judge. ``robust_starts`` R > 0: by the mean return over
    R readings of the demo's start (`start_readings` with ``robust_noise`` and ``seed``; see the
    module doc), all R x B episodes batched together."""
    from psi_gym.envs.sim_retarget import is_judge

    if is_judge(vector_env):
        raise ValueError("a refiner was handed the simulator in its judge role: the judge is evaluation only")
    if robust_starts < 0 or not (np.isfinite(robust_noise) and robust_noise >= 0):
        raise ValueError(f"need robust_starts >= 0 and a finite robust_noise >= 0, got {robust_starts}, {robust_noise}")

    def scorer(demos: Sequence[DemoRef], plans: Sequence[np.ndarray], seeds: Sequence[int]) -> np.ndarray:
        if robust_starts == 0:
            return run_plans_in_env(vector_env, demos, plans, seeds).returns
        R, B = robust_starts, len(demos)
        shifts = np.stack([start_readings(demo, R, robust_noise, seed) for demo in demos], axis=1)  # (R, B, 2)
        returns = run_plans_in_env(vector_env, list(demos) * R, list(plans) * R, list(seeds) * R,
                                   object_shifts=shifts.reshape(R * B, 2)).returns
        return returns.reshape(R, B).mean(axis=0)

    scorer.rollouts_per_plan = max(1, robust_starts)  # type: ignore[attr-defined]
    return scorer


def score_in_sim(demos: Sequence[DemoRef], plans: Sequence[np.ndarray], seeds: Sequence[int]) -> np.ndarray:
    """Score plans by the same tracking return read off the simulator's true object pose, with the
    simulator's verdict for the bonus (the upper reference: what W0 stands in for). Seeds are unused:
    the simulator is deterministic."""
    return run_plans_in_sim(demos, plans).returns


__all__ = ["SearchConfig", "SearchResult", "cem_search", "score_in_env", "score_in_sim", "start_readings", "theta_plan"]

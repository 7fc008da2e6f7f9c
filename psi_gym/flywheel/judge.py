"""The judge: the simulator, for the flywheel's report only. Nothing here trains or filters.

Everything the flywheel reports as true comes from here, and nothing from here flows back into
data, filters or training (the loop calls it after its decisions are made, and stores its numbers
in the run's reports, never in the buffer):

* `judge_verdicts`: each candidate trajectory's joint targets replayed in MuJoCo from its scene
  (`psi_gym.sim.verify.verify`), the task's success at the end;
* `precision_recall` and `filter_funnel`: the filters' kept set against those verdicts;
* `RankingSet` / `ranking_report`: W0's false-success rate and ranking Spearman on fixed candidates
  of held-out demos (raw retarget + smooth random residuals of several sizes), judged once by the
  simulator and scored again by each iteration's W0, with the metrics of ``psi-gym eval-w0``
  (`psi_gym.agents.world_model_report.rank_candidates` and ``verdict_rates``);
* `policy_success`: R2 run closed loop on held-out demos in ``PsiSim-Retarget-v0`` with
  ``role="judge"``.

Held-out demos and their seeds are made apart from the training pool (another demo seed) and are
never handed to the refiner, the filters or a trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from psi_gym.agents.rollouts import DemoRef, run_in_env, run_plans_in_env, run_plans_in_sim
from psi_gym.agents.search import theta_plan
from psi_gym.agents.world_model_report import rank_candidates, verdict_rates
from psi_gym.data.episode import Episode
from psi_gym.sim.residuals import random_theta
from psi_gym.sim.verify import Verdict, verify


def judge_verdicts(episodes: Sequence[Episode], render: bool = False) -> list[Verdict]:
    """The simulator's verdict on each trajectory (its joint targets replayed from its scene)."""
    return [verify(episode, render=render) for episode in episodes]


def precision_recall(keep: np.ndarray, truth: np.ndarray) -> dict[str, float | int | None]:
    """Precision (judge successes among kept), recall (kept among judge successes), the judge's
    base rate over all candidates, and the counts."""
    keep, truth = np.asarray(keep, bool), np.asarray(truth, bool)
    kept, good = int(keep.sum()), int(truth.sum())
    both = int((keep & truth).sum())
    return {"candidates": int(len(keep)), "kept": kept, "judge_successes": good,
            "precision": both / kept if kept else None, "recall": both / good if good else None,
            "base_rate": good / len(keep) if len(keep) else None}


def filter_funnel(stages: Sequence[tuple[str, np.ndarray]], truth: np.ndarray) -> list[dict[str, Any]]:
    """After each filter of a chain: how many were still in and how many of them truly succeed."""
    return [{"filter": name, **precision_recall(mask, truth)} for name, mask in stages]


# ------------------------------------------------------------------------------- ranking
@dataclass
class RankingSet:
    """K fixed candidate plans per held-out demo, judged once by the simulator."""

    demos: list[DemoRef]
    plans: list[np.ndarray]
    """D*K plans, demo-major."""
    seeds: list[int]
    """W0's reset seed of each plan (fixed: iterations differ only by their W0)."""
    sim_returns: np.ndarray
    """(D, K) the tracking return on the true object pose (`psi_gym.agents.rollouts.sim_tracking_return`)."""
    sim_success: np.ndarray
    """(D, K) the simulator's verdict."""

    @property
    def num_candidates(self) -> int:
        return self.sim_success.shape[1]


def build_ranking_set(demos: Sequence[DemoRef], candidates: int, rng: np.random.Generator,
                      sizes: tuple[float, float] = (0.15, 0.7)) -> RankingSet:
    """Per demo: the raw retarget and ``candidates - 1`` smooth random residuals of sizes spread over
    ``sizes`` (`psi_gym.sim.residuals.random_theta`); all judged by the simulator now."""
    if candidates < 2:
        raise ValueError(f"a ranking needs >= 2 candidates per demo, got {candidates}")
    amplitudes = np.linspace(*sizes, candidates - 1)
    rows, plans = [], []
    for demo in demos:
        rows.append(demo)
        plans.append(np.zeros((demo.horizon, 22), np.float32))
        for amplitude in amplitudes:
            rows.append(demo)
            plans.append(theta_plan(random_theta(rng, float(amplitude)), demo))
    sim = run_plans_in_sim(rows, plans)
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=len(plans))]
    shape = (len(demos), candidates)
    return RankingSet(list(demos), plans, seeds, sim.returns.reshape(shape), sim.success.reshape(shape))


def ranking_report(w0_env: Any, ranking: RankingSet) -> dict[str, Any]:
    """W0 (the env holding the ranking set's demos, ``autoreset_mode=DISABLED``) on the fixed
    candidates, against the simulator:

    * ``false_success_rate``: of the candidates the simulator calls failures, the fraction W0 calls
      successes (the env's own verdict at the end of the episode); ``false_failure_rate`` likewise;
    * ``median_spearman``: per demo, Spearman of W0 return vs simulator return over its K
      candidates (demos where either is constant are skipped), the median;
    * ``w0_top_pick_sim_success`` / ``sim_top_pick_sim_success`` / ``raw_sim_success``: the
      simulator's success of W0's best candidate per demo, of its own best, of the raw retarget.
    """
    rows = [demo for demo in ranking.demos for _ in range(ranking.num_candidates)]
    result = run_plans_in_env(w0_env, rows, ranking.plans, ranking.seeds)
    shape = ranking.sim_success.shape
    w0_returns, w0_success = result.returns.reshape(shape), result.success.reshape(shape)
    ranked = rank_candidates(w0_returns, ranking.sim_returns, ranking.sim_success)
    rates = verdict_rates(w0_success, ranking.sim_success)
    defined = [rho for rho in ranked.spearman if rho is not None]
    return {
        "demos": int(shape[0]), "candidates_per_demo": int(shape[1]),
        "false_success_rate": rates["false_success_rate"], "false_failure_rate": rates["false_failure_rate"],
        "w0_success_rate": rates["predicted_success"], "sim_success_rate": rates["sim_success"],
        "outcome_agreement": rates["agreement"],
        "median_spearman": float(np.median(defined)) if defined else None,
        "spearman_demos": len(defined),
        "w0_top_pick_sim_success": float(ranked.w0_top_pick_sim_success.mean()),
        "sim_top_pick_sim_success": float(ranked.sim_top_pick_sim_success.mean()),
        "raw_sim_success": float(ranked.raw_sim_success.mean()),
    }


# ------------------------------------------------------------------------------- policy
def policy_success(judge_env: Any, demos: Sequence[DemoRef], seeds: Sequence[int],
                   act: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]) -> dict[str, Any]:
    """A policy closed loop on held-out demos in the simulator in its judge role: its success rate."""
    from psi_gym.envs.sim_retarget import is_judge

    if not is_judge(judge_env):
        raise ValueError("policy_success needs PsiSim-Retarget-v0 with role='judge'")
    result = run_in_env(judge_env, demos, seeds, act=act)
    return {"sim_success": float(result.success.mean()), "demos": len(demos),
            "per_demo": [bool(s) for s in result.success]}


__all__ = ["RankingSet", "build_ranking_set", "filter_funnel", "judge_verdicts", "policy_success", "precision_recall",
           "ranking_report"]

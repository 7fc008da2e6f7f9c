"""Policy evaluation: W0 vs the simulator judge, correlations, candidates."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import psi_gym  # noqa: F401
from psi_gym.agents.evaluation import (
    baseline_candidate,
    correlation,
    evaluate_candidates,
    oracle_candidate,
    parse_candidate,
)
from psi_gym.agents.rollouts import demo_refs, run_plans_in_sim
from psi_gym.agents.search import SearchConfig


def test_correlation():
    assert correlation([0.1, 0.2, 0.3], [1, 2, 3]) == pytest.approx({"pearson": 1.0, "spearman": 1.0})
    assert correlation([0.1, 0.2, 0.3], [3, 1, 2])["spearman"] == pytest.approx(-0.5)
    assert correlation([0.1, 0.1, 0.1], [1, 2, 3]) == {"pearson": None, "spearman": None}  # undefined, not 0


def test_candidates_parse():
    assert parse_candidate("raw").name == "raw" and parse_candidate("random:0.5").plans is not None
    with pytest.raises(ValueError, match="baseline"):
        baseline_candidate("random:")


def test_evaluate_candidates_in_w0_and_in_the_judge():
    w0 = gym.make_vec("PsiW0-Retarget-v0", num_envs=2, autoreset_mode=AutoresetMode.DISABLED,
                      world_model="random:debug", estimator="random")
    judge = gym.make_vec("PsiSim-Retarget-v0", num_envs=2, autoreset_mode=AutoresetMode.DISABLED, role="judge")
    robot = gym.make_vec("PsiSim-Retarget-v0", num_envs=2, autoreset_mode=AutoresetMode.DISABLED, role="robot")
    demos = demo_refs(w0, [0, 1])
    oracle = oracle_candidate("oracle", search=SearchConfig(population=3, iterations=1, elites=1))
    candidates = [baseline_candidate("raw"), baseline_candidate("random:1.0"), oracle]
    result = evaluate_candidates(candidates, w0, judge, demos, seeds=[0, 1])
    assert result["num_policies"] == 3 and [r["policy"] for r in result["policies"]] == ["raw", "random:1.0", "oracle"]
    raw_truth = run_plans_in_sim(demos, [np.zeros((d.horizon, 22), np.float32) for d in demos]).success.mean()
    assert result["policies"][0]["sim_success"] == raw_truth
    with pytest.raises(ValueError, match="judge"):
        evaluate_candidates(candidates[:1], w0, robot, demos, seeds=[0, 1])

"""``psi-gym eval-w0``: W0 against the simulator as the env uses it, smoke-tested with tiny sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from psi_gym.cli import main
from tests.envs.helpers import save_tiny_estimator


def test_eval_w0_reports_ranking_verdicts_near_misses_and_the_full_horizon(tmp_path, capsys):
    estimator = save_tiny_estimator(tmp_path / "estimator")  # a folder: the CLI loads it and hands it on
    # seed 3: one demo whose near misses flip the simulator's outcome (pairs exist)
    code = main(["eval-w0", "--checkpoint", "random:debug", "--estimator", str(estimator), "--episodes", "2",
                 "--horizon", "2", "--demos", "1", "--candidates", "3", "--near-misses", "3", "--num-envs", "3",
                 "--seed", "3", "--threads", "1", "--no-progress", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checkpoint"] == "random:debug" and report["seed"] == 3
    # frame fidelity from episode starts
    assert len(report["psnr_per_step"]) == len(report["object_error_cm_per_step"]) >= 2 and report["horizon"] == 2
    # whole episodes in the env, against the simulator
    horizon = report["episode_horizon"]
    assert horizon >= 8 and report["episodes"] == 3 and report["candidates_per_demo"] == 3
    for key in ("psnr_by_step", "psnr_copy_first_by_step", "object_error_cm_median_by_step",
                "object_error_cm_p90_by_step"):
        assert len(report[key]) == horizon and np.isfinite(report[key]).all(), key
    assert report["object_error_cm_last_step_median"] == pytest.approx(report["object_error_cm_median_by_step"][-1], abs=1e-3)
    ranking = report["ranking"]
    assert -1 <= ranking["spearman_median"] <= 1 and len(ranking["spearman_per_demo"]) == 1
    for key in ("w0_top_pick_sim_success", "sim_top_pick_sim_success", "raw_sim_success"):
        assert 0 <= ranking[key] <= 1, key
    verdicts = report["verdicts"]
    for judge in ("env", "independent_judge_w0_state", "estimator_on_true_frames"):
        assert verdicts[judge]["count"] == 3 and 0 <= verdicts[judge]["agreement"] <= 1, judge
        assert {"false_success_rate", "false_failure_rate"} <= set(verdicts[judge])
    near = report["near_misses"]
    assert near["tried"] == 3 and 0 <= near["pairs"] <= 3
    if near["pairs"]:
        assert 0 <= near["near_miss_agreement"] <= 1 and 0 <= near["pair_both_right"] <= near["near_miss_agreement"]
        assert near["count"] == near["pairs"]


def test_ranking_and_verdict_metrics_on_hand_made_candidates():
    """The metrics ``eval-w0`` and the flywheel's judge share (`rank_candidates`, `verdict_rates`)."""
    from psi_gym.agents.world_model_report import rank_candidates, verdict_rates

    w0 = np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]])  # demo 1: W0 returns constant, ranks nothing
    sim = np.array([[0.1, 0.9, 0.5], [0.2, 0.8, 0.4]])
    truth = np.array([[False, True, False], [True, False, True]])
    ranked = rank_candidates(w0, sim, truth)
    assert ranked.spearman == [pytest.approx(1.0), None]
    assert ranked.w0_top_pick_sim_success.tolist() == [True, True]  # demo 1: ties go to candidate 0
    assert ranked.sim_top_pick_sim_success.tolist() == [True, False]
    assert ranked.raw_sim_success.tolist() == [False, True]
    with pytest.raises(ValueError, match="one shape"):
        rank_candidates(w0, sim[:1], truth)

    rates = verdict_rates(np.array([True, True, False, False]), np.array([True, False, False, True]))
    assert rates == {"agreement": 0.5, "false_success_rate": 0.5, "false_failure_rate": 0.5, "predicted_success": 0.5,
                     "sim_success": 0.5, "count": 4}
    assert verdict_rates(np.array([True]), np.array([True]))["false_success_rate"] is None

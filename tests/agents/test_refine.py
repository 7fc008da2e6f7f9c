"""``psi-gym refine``: its JSON keys, controls on the same held-out demos, tuning kept apart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from psi_gym.agents.refine import METRICS, _mean_plans, _random_plans_of_size, _rms
from psi_gym.agents.rollouts import DemoRef
from psi_gym.agents.search import theta_plan
from psi_gym.cli import main


@pytest.fixture(scope="module")
def heldout_demos(tmp_path_factory):
    """3 human demos of another seed than the shipped (tuning) set."""
    folder = tmp_path_factory.mktemp("heldout") / "demos"
    assert main(["demos", "--num", "3", "--seed", "9001", "--out", str(folder)]) == 0
    return folder


def test_refine_json_keys_and_controls_on_the_same_demos(heldout_demos, tmp_path, capsys):
    argv = ["refine", "--demos", str(heldout_demos), "--num-demos", "3", "--num-tuning-demos", "3",
            "--world-model", "random:debug", "--estimator", "random", "--population", "3", "--iterations", "1",
            "--elites", "1", "--seed", "5", "--out", str(tmp_path / "run"), "--videos", "1", "--threads", "1",
            "--no-progress", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(METRICS) <= set(summary) and summary["policy_closed_loop_sim_success"] is None  # cem: no policy
    assert {"per_task", "gain_over_raw", "gain_over_best_control", "w0_sim_agreement", "seconds", "refined_size_rms",
            "w0_rollouts", "sim_search_rollouts", "num_demos", "num_tuning_demos"} <= set(summary)
    n = summary["num_demos"]  # the held-out demos whose human demo succeeded, up to 3
    assert n >= 2 and summary["num_tuning_demos"] == 3 and summary["w0_rollouts"] == (n + 3) * 3 * 1
    for task, block in summary["per_task"].items():
        assert set(METRICS) <= set(block) and block["demos"] >= 1
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    # every control is measured on exactly the held-out demos that are reported
    assert len(records) == n and all(r["demo_id"].startswith(tuple(summary["per_task"])) for r in records)
    assert all(all(isinstance(r[m], bool) for m in METRICS if m != "policy_closed_loop_sim_success") for r in records)
    assert all("-s9001-" in r["demo_id"] for r in records)
    assert len(summary["videos"]) == 1 and (tmp_path / "run" / "summary.json").is_file()
    thetas = np.load(tmp_path / "run" / "thetas.npz")
    assert thetas["heldout_theta"].shape == (n, 3, 10) and len(thetas["heldout_demo_ids"]) == n
    assert int(np.load(tmp_path / "run" / "cem-heldout.npz")["iteration"]) == 0  # the search state, per iteration


def test_refine_refuses_overlapping_tuning_and_heldout(capsys):
    argv = ["refine", "--demos", "default", "--tuning-demos", "default", "--num-demos", "2", "--num-tuning-demos", "2",
            "--world-model", "random:debug", "--estimator", "random", "--population", "2", "--iterations", "1",
            "--elites", "1", "--no-progress"]
    assert main(argv) == 2
    assert "overlap" in capsys.readouterr().err


def _demo(task: str, horizon: int = 6) -> DemoRef:
    return DemoRef(0, task, task, {}, np.zeros(22, np.float32), np.zeros((horizon - 1, 22), np.float32),
                   np.zeros((horizon - 1, 7), np.float32), horizon)


def test_mean_residual_control_comes_from_the_tuning_demos_of_each_task():
    tuning = [_demo("lift_apple"), _demo("lift_apple"), _demo("push_box")]
    tuning_plans = [np.full((6, 22), 0.2, np.float32), np.full((6, 22), 0.4, np.float32), np.full((6, 22), -0.5, np.float32)]
    heldout = [_demo("lift_apple"), _demo("push_box"), _demo("lift_can")]
    plans = _mean_plans(tuning, tuning_plans, heldout)
    np.testing.assert_allclose(plans[0], 0.3, atol=1e-6)
    np.testing.assert_allclose(plans[1], -0.5)
    np.testing.assert_array_equal(plans[2], 0.0)  # no tuning demo of that task: the raw retarget


def test_random_control_has_the_size_of_the_refined_plan():
    demos = [_demo("lift_apple", 40), _demo("lift_can", 40)]
    refined = [theta_plan(np.full((3, 10), 0.3), demos[0]), theta_plan(np.full((3, 10), -0.1), demos[1])]
    sizes = [_rms(p) for p in refined]
    random = _random_plans_of_size(demos, sizes, np.random.default_rng(0), knots=3)
    np.testing.assert_allclose([_rms(p) for p in random], sizes, rtol=0.05)
    assert not np.allclose(random[0], refined[0])

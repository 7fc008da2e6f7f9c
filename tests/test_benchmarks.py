"""The benchmark scripts a README figure names run on a tiny size and write what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_w0_exploits_judges_the_refined_plans_and_writes_its_exploits(tmp_path):
    out = tmp_path / "exploits"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "w0_exploits.py"), "--pool", "43", "--demos", "3",
                             "--population", "4", "--iterations", "2", "--elites", "2", "--per-demo", "2",
                             "--collect", str(out), "--robust", "2", "--robust-noise", "0"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("3 held-out demos (pool 43); raw retarget in the simulator:")
    plain = next(line for line in lines if line.startswith("default: refined in W0, sim success"))
    # the robust search from 2 readings of the start, moved by 0 m: the plain search again
    robust = next(line for line in lines if line.startswith("default, robust search (2 starts, 0.0 cm): sim success"))
    assert robust.split("sim success ")[1][:5] == plain.split("sim success ")[1][:5], (plain, robust)
    assert robust.split("W0 says ")[1][:5] == plain.split("W0 says ")[1][:5], (plain, robust)

    from psi_gym.data.lerobot import EpisodeDataset
    from psi_gym.sim.verify import verify

    dataset = EpisodeDataset(out)
    assert 3 <= len(dataset) <= 3 * (1 + 2)  # each demo's final plan and up to 2 later candidates
    episode = dataset[0]
    assert episode.metadata["kind"] == "w0_exploit" and episode.frames.shape[1:] == (64, 64, 3)
    assert verify(episode).success == episode.success  # the label is the simulator's, replayed again


def test_w0_frame_error_sources_draws_each_mix_of_true_and_predicted_state(tmp_path):
    import json

    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "w0_frame_error_sources.py"), "--episodes", "2",
                             "--horizon", "2", "--fit-episodes", "4", "--threads", "1"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["checkpoint"] == "default" and report["horizon"] == 2 and report["episodes"] == 2
    for key in ("psnr_w0", "psnr_true_state", "psnr_true_joints_w0_object", "psnr_w0_joints_true_object",
                "psnr_servo_joints_w0_object"):
        assert 10.0 < report[key] < 60.0, (key, report[key])
    assert report["psnr_true_state"] > report["psnr_first_frame_held"]  # the renderer draws what moved
    assert len(report["wrist_error_cm_median_by_step"]) == 2 and min(report["wrist_error_cm_median_by_step"]) >= 0
    # a servo fitted to 4 other rollouts puts the wrist within millimetres one step ahead (the shipped W0: ~6 mm)
    assert report["servo_wrist_error_cm_median_by_step"][0] < 0.3, report["servo_wrist_error_cm_median_by_step"]


def test_outcome_learnability_trains_classifiers_and_scores_the_pool_beside_w0(tmp_path):
    import json

    from psi_gym.cli import main

    data = tmp_path / "residual"
    assert main(["collect", "--num", "12", "--seed", "4", "--sources", "residual", "--out", str(data)]) == 0
    common = ["--pools", "11:2", "--candidates", "3", "--cache", str(tmp_path / "cache"), "--threads", "1", "--json"]
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "outcome_learnability.py"), "--data", str(data),
                             "--fractions", "1.0", "--fits", "1", "--epochs", "2", *common],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {row["scorer"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {"w0 (tracked state)", "plan (12)", "plan (12) + w0", "plan+w0 (12)", "plan+w0 (12) + w0"}
    for row in rows.values():
        assert row["pool"] == 11 and row["demos"] == 2
        assert -1.0 <= row["spearman_median"] <= 1.0 and 0.0 <= row["top_pick_sim_success"] <= 1.0
        assert 0 <= row["verdict"]["kept"] <= 6
    for name in ("plan", "plan+w0"):  # "+ w0" keeps what both keep
        both = rows[f"{name} (12) + w0"]["verdict"]["kept"]
        assert both <= min(rows[f"{name} (12)"]["verdict"]["kept"], rows["w0 (tracked state)"]["verdict"]["kept"])
        assert rows[f"{name} (12)"]["episodes"] == 12 and rows[f"{name} (12)"]["validation_bce"] > 0

    # W0's row is w0_dynamics_ranking's figure on the same candidates (one pool definition, one simulator cache)
    ranking = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "w0_dynamics_ranking.py"), "--seed", "11",
                              "--demos", "2", "--candidates", "3", "--cache", str(tmp_path / "cache"), "--json"],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert ranking.returncode == 0, ranking.stderr[-2000:]
    reference = json.loads(ranking.stdout.splitlines()[-1])
    assert rows["w0 (tracked state)"]["spearman_median"] == reference["spearman_median"]
    assert rows["w0 (tracked state)"]["top_pick_sim_success"] == reference["w0_top_pick_sim_success"]
    assert reference["start"] == "perceived" and 0.0 < reference["perception_error_mm_median"] < 50.0

    # --true-start: the dynamics from the simulator's object pose, the same perception error reported beside
    true_start = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "w0_dynamics_ranking.py"), "--seed", "11",
                                 "--demos", "2", "--candidates", "3", "--cache", str(tmp_path / "cache"), "--json",
                                 "--true-start"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert true_start.returncode == 0, true_start.stderr[-2000:]
    moved = json.loads(true_start.stdout.splitlines()[-1])
    assert moved["start"] == "true" and moved["perception_error_mm_median"] == reference["perception_error_mm_median"]

    missing = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "outcome_learnability.py"), "--data",
                              str(tmp_path / "nothing"), *common], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert missing.returncode != 0 and "no episodes" in missing.stderr


def test_success_calibration_trains_on_some_pools_and_is_judged_on_others(tmp_path):
    """The calibrated verdict: features of W0's unroll (W0's return and verdict among them, as the
    state_tracking reward gives them), trained on one pool, judged on another and on flywheel-style
    candidates; bad arguments refused before any work."""
    import json
    import pickle

    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from success_calibration import FEATURES, fit_calibrator, pool_features

    from psi_gym.agents.rollouts import plan_targets
    from psi_gym.agents.world_model_report import candidate_pool
    from psi_gym.world_model import load_world_model

    cache = tmp_path / "cache"
    pool = pool_features(load_world_model("random:debug"), 5, 3, 4, cache)  # its 12 plans: successes and failures
    features, column = pool["features"], {name: i for i, name in enumerate(FEATURES)}
    assert features.shape == (12, len(FEATURES)) and np.isfinite(features).all()
    np.testing.assert_allclose(pool["w0_return"], features[:, column["tracking_per_step"]] * 40
                               + 10.0 * features[:, column["verdict"]], atol=1e-3)
    assert pool["success"].any() and not pool["success"].all()  # the simulator's labels
    # the calibrator learns what decides the label
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES))).astype(np.float32)
    y = x[:, column["margin_end_cm"]] > 0.3
    model, summary = fit_calibrator(x, y, np.arange(400) // 8, members=2, steps=200)
    p = model.probability(x)
    assert p[y].mean() > p[~y].mean() + 0.5 and summary["train_rows"] + summary["validation_rows"] == 400

    # flywheel-style candidates: the cached pool's plans as flywheel_filters.py writes them
    refs, first, rows, plans, (_, success, _) = candidate_pool(5, 3, 4, cache)
    demo = np.repeat(np.arange(3), 4)
    candidates = [{"first": first[demo[i]], "start_state": ref.start_state, "action": plan_targets(ref, plan), "demo": ref,
                   "truth": bool(success[i]), "keep": bool(i % 2), "w0_success": bool(i % 3 == 0)}
                  for i, (ref, plan) in enumerate(zip(rows, plans))]
    (tmp_path / "candidates-v2.pkl").write_bytes(pickle.dumps(candidates))
    script = [sys.executable, str(ROOT / "benchmarks" / "success_calibration.py"), "--world-model", "random:debug",
              "--candidates", "4", "--members", "2", "--steps", "50", "--threads", "1", "--cache", str(cache)]
    result = subprocess.run([*script, "--pools", "5:3", "--eval-pools", "6:2", "--flywheel-candidates",
                             str(tmp_path / "candidates-v2.pkl"), "--save", str(tmp_path / "calibrator.safetensors"), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    from success_calibration import load_calibrator

    saved = load_calibrator(tmp_path / "calibrator.safetensors").probability(features)
    assert saved.shape == (12,) and ((0 <= saved) & (saved <= 1)).all() and len(load_calibrator(
        tmp_path / "calibrator.safetensors").mlps) == 2
    report = json.loads(result.stdout.splitlines()[-1])
    evaluation = report["evaluation"][0]
    assert evaluation["seed"] == 6 and {"spearman_median", "top_pick_sim_success", "precision"} <= set(evaluation["w0"])
    assert {"p>=0.5", "p>=0.8", "spearman_median"} <= set(evaluation["calibrated"])
    flywheel = report["flywheel"][0]
    assert flywheel["count"] == 12 and flywheel["as_run"]["kept"] == 6
    assert all(flywheel[f"as_run+p>={t}"]["kept"] <= 6 for t in (0.5, 0.6, 0.7, 0.8))
    # judged on a pool it trained on, a malformed pool, a missing or an old cache: refused in one line
    (tmp_path / "old.pkl").write_bytes(pickle.dumps([{"first": 0}]))
    for argv, expected in ((["--pools", "5:3", "--eval-pools", "5:3"], "never saw"), (["--pools", "5"], "SEED:DEMOS"),
                           (["--flywheel-candidates", str(tmp_path / "none.pkl")], "no file"),
                           (["--pools", "5:3", "--eval-pools", "--flywheel-candidates", str(tmp_path / "old.pkl")], "-v2")):
        refused = subprocess.run([*script, *argv], capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert expected in refused.stderr and "Traceback" not in refused.stderr, refused.stderr[-2000:]

    # the calibrated probability in the search's objective (w0_exploits.py --calibrator)
    exploits = [sys.executable, str(ROOT / "benchmarks" / "w0_exploits.py"), "--pool", "43", "--demos", "3",
                "--population", "4", "--iterations", "2", "--elites", "2"]
    result = subprocess.run([*exploits, "--calibrator", str(tmp_path / "calibrator.safetensors"), "--robust", "2",
                             "--robust-noise", "0"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    line = next(line for line in lines if line.startswith("default, calibrated search (tracking + 20 p)"))
    assert 0.0 <= float(line.split("sim success ")[1][:5]) <= 1.0
    # from 2 readings of the start moved by 0 m: the same scores, the same plans, the same outcome
    robust = next(line for line in lines if line.startswith("default, robust calibrated search (2 starts, 0.0 cm)"))
    assert robust.split("): ")[1] == line.split("): ")[1], (line, robust)
    refused = subprocess.run([*exploits, "--calibrator", str(tmp_path / "old.pkl")], capture_output=True, text=True,
                             timeout=600, cwd=tmp_path)
    assert refused.returncode == 2 and "not a calibrator" in refused.stderr and "Traceback" not in refused.stderr
    # the shipped calibrator (the env's calibrated_state reward: W0's object path only) in the same search
    shipped = ROOT / "psi_gym" / "assets" / "calibrator-default" / "calibrator.safetensors"
    result = subprocess.run([*exploits, "--calibrator", str(shipped)], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(line.startswith("default, calibrated search (tracking + 20 p): sim success")
               for line in result.stdout.splitlines()), result.stdout


def test_w0_ceiling_scores_the_simulator_as_a_w0_and_a_perfect_reading_is_the_simulator_itself(tmp_path):
    import json

    command = [sys.executable, str(ROOT / "benchmarks" / "w0_ceiling.py"), "--seed", "43", "--demos", "2", "--candidates", "3",
               "--near-misses", "2", "--cache", str(tmp_path / "cache"), "--json", "--perception", "true",
               "--oracles", "perceived start", "typical physics"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    exact, typical = (json.loads(line) for line in result.stdout.splitlines())
    # no perception error and the true physics: the oracle is the simulator, so it agrees with itself
    assert exact["oracle"] == "perceived start" and exact["perception_error_mm_median"] == 0.0
    assert exact["agreement"] == 1.0 and exact["false_success_rate"] == 0.0 and exact["last_step_error_cm_median"] == 0.0
    assert exact["oracle_top_pick_sim_success"] == exact["sim_top_pick_sim_success"]
    assert exact["near_miss_agreement"] in (None, 1.0)
    assert typical["oracle"] == "typical physics" and 0.0 <= typical["agreement"] <= 1.0
    assert typical["last_step_error_cm_median"] >= 0.0 and -1.0 <= typical["spearman_median"] <= 1.0
    assert len(list((tmp_path / "cache").glob("oracle-*.npz"))) == 4  # candidates and near misses of both


def test_table_symmetry_replays_moved_plans_and_asks_a_w0_the_same(tmp_path):
    import json

    command = [sys.executable, str(ROOT / "benchmarks" / "table_symmetry.py"), "--seed", "43", "--demos", "2", "--candidates",
               "3", "--cache", str(tmp_path / "cache"), "--json", "--models", "default"]
    still = subprocess.run([*command[:-2], "--shift", "0", "--turn", "0"], capture_output=True, text=True, timeout=600,
                           cwd=tmp_path)
    assert still.returncode == 0, still.stderr[-2000:]
    unmoved = json.loads(still.stdout.splitlines()[0])
    # not moved, the simulator repeats itself exactly
    assert unmoved["replays"] == 6 and unmoved["last_position_cm_max"] == 0.0 and unmoved["verdict_agreement"] == 1.0
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    sim, w0 = (json.loads(line) for line in result.stdout.splitlines())
    assert sim["replays"] + sim["skipped"] == 6 and 0.0 <= sim["verdict_agreement"] <= 1.0
    assert w0["model"] == "default" and w0["equivariance_cm_median"] >= 0.0 and w0["last_step_error_cm_median"] >= 0.0
    assert len(list((tmp_path / "cache").glob("moved-*.npz"))) == 2

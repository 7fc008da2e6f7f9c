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

"""``make demo`` (`psi_gym.showcase`): the small flywheel, end to end through ``main``, on a briefly
trained debug W0 given by ``--world-model`` (the sizes shrunk; everything else as ``make demo`` runs)."""

from __future__ import annotations

import json

import pytest
import torch

from psi_gym.agents.search import SearchConfig
from psi_gym.flywheel.writeback import RetrainConfig

TINY = dict(iterations=1, demos_per_iteration=2, heldout_demos=2, ranking_candidates=2, robot_episodes=2,
            search=SearchConfig(population=2, iterations=1, elites=1), min_quality=0.0, videos=1,
            retrain=RetrainConfig(bc_steps=2, w0_steps=2, w0_batch_size=2, w0_rehearsal=2, threads=1))


@pytest.fixture(scope="module")
def briefly_trained_w0(tmp_path_factory):
    from psi_gym.retarget.robot_rollouts import make_rollout
    from psi_gym.world_model.config import TrainConfig, debug_config
    from psi_gym.world_model.training import train_world_model

    config = TrainConfig(model=debug_config(), num_steps=3, batch_size=2, dynamics_batch_size=2,
                         perception_batch_size=2, num_threads=1, progress=False)
    out = tmp_path_factory.mktemp("w0")
    return train_world_model([make_rollout(0, index) for index in range(2)], config, out, log_with="none").final_dir


@pytest.fixture(scope="module")
def optimistic_estimator(tmp_path_factory):
    """An estimator that calls every frame a success: W0's verdicts pass the filters, so the run keeps
    trajectories (``dedupe_distance=0``: the refined ones too), retrains on them and writes their
    videos (the briefly trained W0 with the shipped estimator keeps none)."""
    from psi_gym.rewards.object_state import ObjectStateEstimator, ObjectStateEstimatorConfig

    estimator = ObjectStateEstimator.from_estimator_config(ObjectStateEstimatorConfig())
    with torch.no_grad():
        estimator.margin_head.weight.zero_()
        estimator.margin_head.bias.fill_(1.0)
    folder = tmp_path_factory.mktemp("estimator")
    estimator.save_pretrained(folder)
    return str(folder)


@pytest.mark.slow
def test_showcase_runs_the_flywheel_on_the_world_model_it_is_given(tmp_path, capsys, briefly_trained_w0,
                                                                    optimistic_estimator):
    from psi_gym import showcase

    threads = torch.get_num_threads()
    out = tmp_path / "demo"
    try:
        assert showcase.main(["--out", str(out), "--world-model", briefly_trained_w0], **TINY,
                             estimator=optimistic_estimator, dedupe_distance=0.0) == 0
    finally:
        torch.set_num_threads(threads)
    captured = capsys.readouterr()
    assert repr(briefly_trained_w0) in captured.err
    lines = captured.out.strip().splitlines()
    compact = json.loads(lines[-1])
    assert compact["out"] == str(out) and compact["seconds"] > 0
    assert set(compact["r2_sim_success_gain"]) == {"robot", "no_robot"} == set(compact["w0_false_success_change"])
    # the per-iteration table, one block per variant: iteration 0 (before) and 1
    assert "robot (robot episodes per iteration: 2)" in lines and "no_robot (robot episodes per iteration: 0)" in lines
    assert sum(line.split()[:1] == ["it"] for line in lines) == 2
    assert sum(line.split()[:1] == ["1"] for line in lines) == 2

    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["world_model"] == briefly_trained_w0 and summary["iterations"] == 1
    assert summary["gain"] == compact["r2_sim_success_gain"]
    first = summary["variants"]["robot"]["iterations"][1]
    assert first["kept"] > 0 and first["w0_trained"] and first["r2_trained"] and first["robot_episodes"] == 2
    assert 0.0 <= first["r2_sim_success"] <= 1.0 and (out / "robot" / "iteration-1" / "w0" / "final").is_dir()
    assert (out / "flywheel.png").stat().st_size > 1000
    assert f"plot: {out / 'flywheel.png'}" in lines
    videos = summary["videos"]
    assert len(videos) == 1 and ("refined_w0" in videos[0] or "scene_variation" in videos[0])
    assert f"videos: {', '.join(videos) or '-'}" in lines
    for video in videos:  # W0 | the simulator's replay of the best kept refined rollouts
        assert video.startswith(str(out / "videos")) and video.endswith(".mp4")
        assert (out / "videos" / video.rsplit("/", 1)[1]).stat().st_size > 1000


@pytest.mark.parametrize("argv", [["--world-model", "/no/such/w0"], ["--seed", "-1"]])
def test_bad_input_is_one_line_naming_the_flag(tmp_path, capsys, argv):
    from psi_gym import showcase

    with pytest.raises(SystemExit) as exit_info:
        showcase.main(["--out", str(tmp_path / "demo"), *argv])
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err.strip().splitlines()[-1]

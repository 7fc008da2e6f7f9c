"""``make demo`` (`psi_gym.showcase`) runs end to end on whatever W0 it is given."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.mark.slow
def test_showcase_runs_on_a_briefly_trained_world_model(tmp_path, capsys):
    from psi_gym import showcase
    from psi_gym.retarget.robot_rollouts import make_rollout
    from psi_gym.world_model.config import TrainConfig, debug_config
    from psi_gym.world_model.training import train_world_model

    threads = torch.get_num_threads()
    try:
        config = TrainConfig(model=debug_config(), num_steps=3, batch_size=2, dynamics_batch_size=2,
                             perception_batch_size=2, progress=False)
        trained = train_world_model([make_rollout(0, index) for index in range(2)], config, tmp_path / "w0",
                                    log_with="none")
        assert showcase.main(["--out", str(tmp_path / "demo"), "--demos", "1", "--world-model", trained.final_dir]) == 0
    finally:
        torch.set_num_threads(threads)  # the showcase runs on one thread
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["env_task"] in ("lift_apple", "lift_can", "push_box") and summary["env_steps"] > 0
    assert summary["w0_open_loop_psnr"] > 0 and summary["w0_object_error_cm_last_step"] >= 0
    for video in ("demo_lift_apple_human_vs_robot.mp4", "w0_true_vs_predicted.mp4", "env_episode.mp4"):
        assert (tmp_path / "demo" / video).stat().st_size > 1000, video

import dataclasses

import numpy as np
import pytest
import torch

from psi_gym.sim.hands import WRIST_RANGE, hand_spec
from psi_gym.sim.verify import replay_verdict
from psi_gym.world_model.dataset import EpisodeTensors
from psi_gym.world_model.dynamics import StateDynamics, surface_distance
from psi_gym.world_model.hand_geometry import HandKinematics
from psi_gym.world_model.symmetry import (
    augment_unrolls,
    move_joints,
    move_positions,
    move_rotations,
    move_scene,
    move_unrolls,
    random_motion,
    turn_matrix,
)
from psi_gym.world_model.training import TrainConfig, train_world_model

from .conftest import trim


def _dataset(episodes) -> EpisodeTensors:
    embeddings = {ep.instruction: torch.zeros(384) for ep in episodes}
    return EpisodeTensors(episodes, embeddings)


def test_moving_the_joints_moves_the_hand_with_the_table():
    ranges = torch.tensor(hand_spec("robot").joint_ranges(), dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    joints = ranges[:, 0] + (ranges[:, 1] - ranges[:, 0]) * torch.rand(16, 22, generator=generator)
    theta, shift = random_motion(16, 0.05, 0.5, generator)
    kinematics = HandKinematics()
    points, palm = kinematics(joints)
    moved_points, moved_palm = kinematics(move_joints(joints, theta, shift))
    turn = turn_matrix(theta)
    expected = points @ turn.transpose(-1, -2)
    expected[..., :2] += shift[:, None]
    torch.testing.assert_close(moved_points, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(moved_palm, turn @ palm, atol=1e-6, rtol=0)
    torch.testing.assert_close(move_positions(points, theta, shift), expected, atol=1e-6, rtol=0)


def test_a_moved_start_and_plan_is_the_moved_episode_in_the_simulator(sim_episodes):
    # in the first steps the simulator keeps the symmetry to a fraction of a millimetre (the object
    # settling on the table); over whole episodes contact makes rounding differences grow
    # (benchmarks/table_symmetry.py measures how far)
    theta, shift = torch.tensor([0.4], dtype=torch.float64), torch.tensor([[0.03, -0.04]], dtype=torch.float64)
    for episode in sim_episodes:
        steps = 8
        start = torch.as_tensor(episode.state[:1], dtype=torch.float64)
        targets = torch.as_tensor(episode.action[:steps], dtype=torch.float64)[None]
        scene = move_scene(episode.scene, float(theta[0]), shift[0].numpy())
        verdict = replay_verdict(scene, move_joints(start, theta, shift)[0].numpy(),
                                 move_joints(targets, theta, shift)[0].numpy())
        moved_joints = move_joints(torch.as_tensor(episode.state[: steps + 1], dtype=torch.float64)[None], theta, shift)[0]
        np.testing.assert_allclose(verdict.recording.state, moved_joints.numpy(), atol=2e-4)
        moved_object = move_positions(torch.as_tensor(episode.object_pose[: steps + 1, :3], dtype=torch.float64)[None],
                                      theta, shift)[0]
        np.testing.assert_allclose(verdict.recording.object_pose[:, :3], moved_object.numpy(), atol=1e-3)


def test_moved_unrolls_keep_where_the_hand_touches_the_object(sim_episodes):
    batch = _dataset(sim_episodes).unrolls(6, 0, torch.Generator().manual_seed(0))
    theta, shift = random_motion(6, 0.05, 0.5, torch.Generator().manual_seed(1))
    moved = move_unrolls(batch, theta, shift)
    dynamics = StateDynamics(hidden_dim=8, num_layers=1)
    for state in (batch.start, moved.start):
        assert state.joint_state.shape == (6, 22)
    points, _ = dynamics.target_geometry(batch.targets)
    moved_points, _ = dynamics.target_geometry(moved.targets)
    descriptor = batch.start.object_descriptor
    for t in range(batch.targets.shape[1]):
        before = surface_distance(points[:, t], batch.object_position[:, t], batch.object_rotation[:, t], descriptor)
        after = surface_distance(moved_points[:, t], moved.object_position[:, t], moved.object_rotation[:, t], descriptor)
        torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    torch.testing.assert_close(moved.object_rotation, move_rotations(batch.object_rotation, theta))
    assert torch.equal(moved.object_position[..., 2], batch.object_position[..., 2])
    assert not torch.equal(moved.object_position, batch.object_position)
    torch.testing.assert_close(moved.start.joint_state[:, 3], batch.start.joint_state[:, 3] + theta)


def test_rows_that_would_leave_the_wrists_range_are_not_moved(sim_episodes):
    batch = _dataset(sim_episodes).unrolls(4, 0, torch.Generator().manual_seed(0))
    theta = torch.tensor([0.0, 0.0, 0.0, 0.2])
    shift = torch.tensor([[0.02, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # row 1: out of the 0.25 m range
    pressed = batch.targets.clone()
    pressed[2, 3, 0] = WRIST_RANGE[0, 1]  # row 2: its wrist reached a limit, where the copy would not be physical
    batch = dataclasses.replace(batch, targets=pressed)
    moved = move_unrolls(batch, theta, shift)
    assert not torch.equal(moved.targets[0], batch.targets[0]) and not torch.equal(moved.targets[3], batch.targets[3])
    for row in (1, 2):
        assert torch.equal(moved.targets[row], batch.targets[row])
        assert torch.equal(moved.object_position[row], batch.object_position[row])
        assert torch.equal(moved.start.joint_state[row], batch.start.joint_state[row])


def test_no_symmetry_draws_nothing_and_bad_ranges_are_refused(sim_episodes):
    batch = _dataset(sim_episodes).unrolls(3, 0, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(5)
    assert augment_unrolls(batch, 0.0, 0.0, generator) is batch
    assert torch.equal(torch.rand(1, generator=generator), torch.rand(1, generator=torch.Generator().manual_seed(5)))
    for shift, turn in ((-0.01, 0.0), (0.0, float("nan")), (float("inf"), 0.0)):
        with pytest.raises(ValueError, match="max_shift and max_turn"):
            random_motion(3, shift, turn, generator)


def test_training_with_the_symmetry_runs_and_checks_its_ranges(sim_episodes, tmp_path):
    episodes = [trim(ep, 6) for ep in sim_episodes[:2]]
    from psi_gym.world_model.config import debug_config

    from .conftest import IMAGE_SIZE

    config = TrainConfig(model=debug_config(image_size=IMAGE_SIZE), num_steps=2, batch_size=2, dynamics_batch_size=4,
                         perception_batch_size=2, parts=("dynamics",), warmup_steps=1, progress=False,
                         symmetry_shift=0.05, symmetry_turn=0.5)
    summary = train_world_model(episodes, config, tmp_path / "sym", log_with="none")
    assert summary.steps == 2 and np.isfinite(summary.final_object_cm)
    for name, value in (("symmetry_shift", -0.1), ("symmetry_turn", float("nan")), ("symmetry_shift", True)):
        with pytest.raises(ValueError, match=name):
            train_world_model(episodes, dataclasses.replace(config, **{name: value}), tmp_path / "bad", log_with="none")
        assert not (tmp_path / "bad").exists()

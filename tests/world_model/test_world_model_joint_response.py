"""The dynamics' servo response for the hand's joints (`JointResponse`, ``dynamics_joint_prior``):
fitted by least squares, it predicts MuJoCo's hand where there is no contact; the state carries the
previous target it needs, from the data, the W0 and the simulator alike."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from psi_gym.world_model.config import debug_config
from psi_gym.world_model.dataset import EpisodeTensors
from psi_gym.world_model.dynamics import JointResponse, StateDynamics
from psi_gym.world_model.model import WorldModel
from psi_gym.world_model.training import TrainConfig, fit_joint_responses, train_world_model

from .conftest import IMAGE_SIZE, make_episodes, random_inputs, trim


def _dataset(episodes) -> EpisodeTensors:
    return EpisodeTensors(episodes, {ep.instruction: torch.zeros(384) for ep in episodes})


def _servo_trajectories(coefficients: torch.Tensor, episodes: int, steps: int, seed: int = 0):
    """Joint paths of an exact ARX(2) servo with ``coefficients`` (J, 3) under smooth random targets,
    starting at rest; as (q_{t+1}, q_t, q_{t-1}, u_t, u_{t-1}) transitions."""
    generator = torch.Generator().manual_seed(seed)
    joints = coefficients.shape[0]
    a, b, c = coefficients.double().unbind(-1)
    rows = []
    for _ in range(episodes):
        q = torch.rand(joints, generator=generator, dtype=torch.float64)
        q_prev, u_prev = q.clone(), q.clone()
        targets = q + torch.cumsum(torch.randn(steps, joints, generator=generator, dtype=torch.float64) * 0.05, 0)
        for u in targets:
            q_next = q + a * (u - q) + b * (q - q_prev) + c * (u - u_prev)
            rows.append((q_next, q, q_prev, u, u_prev))
            q_prev, q, u_prev = q, q_next, u
    return tuple(torch.stack(column).float() for column in zip(*rows))


def test_the_least_squares_fit_recovers_a_servos_coefficients():
    truth = torch.tensor([[0.06, 0.37, 0.54], [0.12, 0.23, 0.65], [0.5, 0.1, 0.2]])
    response = JointResponse(3)
    torch.testing.assert_close(response.coefficients, torch.tensor([[1.0, 0.0, 0.0]] * 3))  # q_{t+1} = u_t
    fitted = response.fit(*_servo_trajectories(truth, episodes=4, steps=30))
    torch.testing.assert_close(fitted, truth, atol=1e-4, rtol=0)
    torch.testing.assert_close(response.coefficients, truth, atol=1e-4, rtol=0)
    transitions = _servo_trajectories(truth, episodes=1, steps=2)
    with pytest.raises(ValueError, match="at least 3 transitions"):
        response.fit(*transitions)
    with pytest.raises(ValueError, match=r"five \(N, 3\) tensors"):
        response.fit(*(x[:, :2] for x in _servo_trajectories(truth, episodes=1, steps=5)))


def test_fitted_to_mujoco_rollouts_it_predicts_the_hands_next_joints_within_a_millimetre():
    """The robot's own servo: fitted on four real rollouts, it predicts two others' wrist a step ahead
    to well under a millimetre (median), where "the hand reaches its target" is off by millimetres."""
    episodes = make_episodes(6, seed=5)
    response = JointResponse(22)
    response.fit(*_dataset(episodes[:4]).joint_transitions())
    q_next, q, q_prev, u, u_prev = _dataset(episodes[4:]).joint_transitions()
    predicted = q + response(u - q, q - q_prev, u - u_prev)
    servo_error = (predicted[:, :3] - q_next[:, :3]).norm(dim=-1).median()
    target_error = (u[:, :3] - q_next[:, :3]).norm(dim=-1).median()
    assert servo_error < 0.001 and servo_error < target_error / 4, (servo_error, target_error)


def test_joint_transitions_are_each_step_with_the_hand_at_rest_before_the_first(sim_episodes):
    episodes = [trim(sim_episodes[0], 4), trim(sim_episodes[1], 3)]
    q_next, q, q_prev, u, u_prev = _dataset(episodes).joint_transitions()
    assert q.shape == (7, 22)
    for offset, episode in ((0, episodes[0]), (4, episodes[1])):
        steps = episode.num_steps
        np.testing.assert_array_equal(q[offset: offset + steps].numpy(), episode.state[:steps])
        np.testing.assert_array_equal(q_next[offset: offset + steps].numpy(), episode.state[1: steps + 1])
        np.testing.assert_array_equal(u[offset: offset + steps].numpy(), episode.action)
        np.testing.assert_array_equal(q_prev[offset].numpy(), episode.state[0])  # at rest before the first step
        np.testing.assert_array_equal(u_prev[offset].numpy(), episode.state[0])
        np.testing.assert_array_equal(q_prev[offset + 1: offset + steps].numpy(), episode.state[: steps - 1])
        np.testing.assert_array_equal(u_prev[offset + 1: offset + steps].numpy(), episode.action[: steps - 1])


def test_unroll_starts_carry_the_previous_target(sim_episodes):
    episode = sim_episodes[0]
    batch = _dataset([episode]).unrolls(16, 5, torch.Generator().manual_seed(0))
    for row in range(16):
        start = int(np.flatnonzero((episode.state == batch.start.joint_state[row].numpy()).all(1))[0])
        expected = episode.action[start - 1] if start > 0 else episode.state[0]
        np.testing.assert_array_equal(batch.start.previous_joint_target[row].numpy(), expected)


def test_a_fresh_dynamics_with_the_prior_steps_the_joints_by_the_servo_alone():
    """Its MLP starts at zero, so the joints move by the response exactly; the features gain
    ``u_t - u_{t-1}``; the step records its target for the next one."""
    plain, prior = StateDynamics(16, 1), StateDynamics(16, 1, joint_prior=True)
    assert prior.flat_dim == plain.flat_dim + 22 and prior.trunk[0].in_features == prior.flat_dim
    prior.joint_response.coefficients.copy_(torch.rand(22, 3, generator=torch.Generator().manual_seed(1)))
    model = WorldModel.from_model_config(debug_config(image_size=IMAGE_SIZE))
    frames, joints, action, _ = random_inputs(model, 3)
    state = model.initial_state(frames[:, -1], joints)
    assert torch.equal(state.previous_joint_target, state.joint_state)  # at rest where it begins
    state.previous_joint_state = state.joint_state + 0.01
    state.previous_joint_target = state.joint_state - 0.02
    targets = torch.from_numpy(action)
    features = prior.features(state, targets)
    step = prior.joint_step
    torch.testing.assert_close(features[:, prior.flat_dim - 22: prior.flat_dim], (targets - state.previous_joint_target) / step)
    with torch.no_grad():
        after = prior.step(state, targets)
    a, b, c = prior.joint_response.coefficients.unbind(-1)
    q = state.joint_state
    expected = q + a * (targets - q) + b * (q - state.previous_joint_state) + c * (targets - state.previous_joint_target)
    torch.testing.assert_close(after.joint_state, expected)
    torch.testing.assert_close(after.object_position, state.object_position)  # the object part is the MLP's alone
    assert torch.equal(after.previous_joint_target, targets) and torch.equal(after.previous_joint_state, q)
    with torch.no_grad():
        assert torch.equal(plain.step(state, targets).joint_state, q)  # without the prior nothing moves


def test_a_fresh_training_run_fits_the_response_to_its_data_and_saves_it(sim_episodes, tmp_path):
    episodes = [trim(ep, 6) for ep in sim_episodes[:3]]
    config = TrainConfig(model=debug_config(image_size=IMAGE_SIZE, dynamics_joint_prior=True), num_steps=1, batch_size=2,
                         dynamics_batch_size=2, perception_batch_size=2, progress=False, checkpoint_every=1)
    train_world_model(episodes, config, tmp_path / "w0", log_with="none")
    saved = WorldModel.from_pretrained(tmp_path / "w0" / "final")
    assert saved.config.dynamics_joint_prior
    expected = JointResponse(22)
    expected.fit(*_dataset(episodes).joint_transitions())
    torch.testing.assert_close(saved.dynamics.joint_response.coefficients, expected.coefficients)
    assert not torch.equal(expected.coefficients, JointResponse(22).coefficients)
    # fine-tuning keeps the model's own response (it is not refitted to new data)
    other = [trim(ep, 6) for ep in sim_episodes[3:]]
    train_world_model(other, dataclasses.replace(config, init_from=str(tmp_path / "w0" / "final")), tmp_path / "ft",
                      log_with="none")
    tuned = WorldModel.from_pretrained(tmp_path / "ft" / "final")
    torch.testing.assert_close(tuned.dynamics.joint_response.coefficients, expected.coefficients)
    assert fit_joint_responses(WorldModel.from_model_config(debug_config(image_size=IMAGE_SIZE)), _dataset(other)) == []

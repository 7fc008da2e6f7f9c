"""W0's hand servo (`WorldModelConfig.hand_servo`, ``psi-gym fit-hand-servo``): the hand W0 draws and
reports follows a servo response fitted to robot rollouts, while its dynamics keeps its own joints
(and so its object) unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from psi_gym.world_model.model import WorldModel
from psi_gym.world_model.training import fit_hand_servo
from psi_gym.world_model.world_state import WorldState
from tests.default_world_model import require_default_world_model

from .conftest import make_debug_model, make_episodes, random_inputs


def test_without_a_servo_the_drawn_hand_is_the_dynamics_joints(debug_model):
    frames, joints, action, embedding = random_inputs(debug_model, 3)
    assert not debug_model.config.hand_servo and debug_model.hand_response is None
    out = debug_model.predict(frames, joints, action, embedding)
    state = out.world_state
    np.testing.assert_array_equal(out.state, state.joint_state.numpy())
    torch.testing.assert_close(state.hand_joint_state, state.joint_state)
    torch.testing.assert_close(state.previous_hand_joint_state, torch.from_numpy(joints))
    with pytest.raises(ValueError, match="no hand servo"):
        debug_model.servo_hand(state, torch.from_numpy(action))


def test_the_servo_moves_the_drawn_hand_and_leaves_the_dynamics_alone():
    """Coefficients (1, 0, 0): the drawn hand reaches each target in one step; the dynamics' joints,
    the object and the next step's dynamics input are those of the same W0 without a servo."""
    plain = make_debug_model(moving=True)
    servo = plain.with_hand_servo(torch.tensor([[1.0, 0.0, 0.0]] * 22)).eval()
    assert servo.config.hand_servo and not plain.config.hand_servo
    frames, joints, action, embedding = random_inputs(plain, 3)
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a, b = plain.predict(frames, joints, action, embedding, generator=generator()), \
        servo.predict(frames, joints, action, embedding, generator=generator())
    np.testing.assert_allclose(b.state, action, atol=1e-6)  # the targets lie within the joints' ranges
    torch.testing.assert_close(b.world_state.joint_state, a.world_state.joint_state)
    np.testing.assert_array_equal(b.object_position, a.object_position)
    assert not np.array_equal(b.frames, a.frames)  # the renderer draws the servo's hand
    next_action = action[::-1].copy()
    a2 = plain.predict(frames, a.state, next_action, embedding, world_state=a.world_state)
    b2 = servo.predict(frames, b.state, next_action, embedding, world_state=b.world_state)
    np.testing.assert_array_equal(b2.object_position, a2.object_position)
    np.testing.assert_allclose(b2.state, next_action, atol=1e-6)
    torch.testing.assert_close(b2.world_state.previous_hand_joint_state, torch.from_numpy(action))


def test_it_is_saved_with_the_model_and_kept_by_a_new_dynamics(tmp_path):
    coefficients = torch.rand(22, 3, generator=torch.Generator().manual_seed(3))
    model = make_debug_model().with_hand_servo(coefficients)
    model.save_pretrained(tmp_path / "w0")
    loaded = WorldModel.from_pretrained(tmp_path / "w0")
    assert loaded.config.hand_servo
    torch.testing.assert_close(loaded.hand_response.coefficients, coefficients)
    torch.testing.assert_close(loaded.with_new_dynamics(dynamics_hidden_dim=8).hand_response.coefficients, coefficients)


def test_an_env_buffer_keeps_the_drawn_hand_apart_from_the_joints():
    """`WorldState.assign` writes each field's rows in place: a state built without the hand fields
    holds copies, so writing rows whose drawn hand differs never touches the joints."""
    q = torch.zeros(2, 22)
    buffer = WorldState(joint_state=q, previous_joint_state=q.clone(), previous_joint_target=q.clone(),
                        object_position=torch.zeros(2, 3), previous_object_position=torch.zeros(2, 3),
                        object_rotation=torch.eye(3).repeat(2, 1, 1), previous_object_rotation=torch.eye(3).repeat(2, 1, 1),
                        object_descriptor=torch.zeros(2, 6), scene_frame=torch.zeros(2, 4, 4, 3, dtype=torch.uint8))
    row = buffer.select([0])
    row.hand_joint_state = torch.ones(1, 22)
    buffer.assign([1], row)
    assert buffer.joint_state.abs().sum() == 0 and torch.equal(buffer.hand_joint_state[1], torch.ones(22))


def test_fitted_to_mujoco_rollouts_the_drawn_hand_tracks_the_simulators_open_loop():
    """Fitted on four rollouts, a W0 whose dynamics is untrained (it moves nothing) reports two other
    rollouts' wrist within millimetres over 8 steps of open-loop prediction; without the servo the
    hand stays where it began, centimetres off."""
    episodes = make_episodes(6, seed=5)
    plain = make_debug_model()
    servo = fit_hand_servo(plain, episodes[:4]).eval()
    errors = {}
    for name, model in (("plain", plain), ("servo", servo)):
        held_out = episodes[4:]
        frames = np.stack([ep.frames[:1] for ep in held_out])
        joints = np.stack([ep.state[0] for ep in held_out])
        embedding = torch.zeros(len(held_out), 384)
        state = None
        for t in range(8):
            action = np.stack([ep.action[t] for ep in held_out])
            out = model.predict(frames, joints, action, embedding, world_state=state)
            state, joints = out.world_state, out.state
        truth = np.stack([ep.state[8] for ep in held_out])
        errors[name] = float(np.median(np.linalg.norm(out.state[:, :3] - truth[:, :3], axis=-1)))
    assert errors["servo"] < 0.005 and errors["servo"] < errors["plain"] / 4, errors


def test_the_fit_read_in_chunks_is_the_fit_read_at_once():
    """The episodes are read a few at a time (a dataset's frames are never all in memory): the same
    least squares as reading them all, and a bad chunk size is refused."""
    episodes = make_episodes(5, seed=7)
    model = make_debug_model()
    whole = fit_hand_servo(model, episodes).hand_response.coefficients
    for chunk in (1, 2):
        torch.testing.assert_close(fit_hand_servo(model, episodes, chunk=chunk).hand_response.coefficients, whole,
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="chunk"):
        fit_hand_servo(model, episodes, chunk=0)


def test_the_command_fits_and_saves_a_w0_with_a_servo(tmp_path, capsys):
    from psi_gym.cli import main
    from psi_gym.data.lerobot import write_dataset

    data = tmp_path / "rollouts"
    write_dataset(data, make_episodes(3, seed=2))
    model_dir = tmp_path / "base"
    make_debug_model().save_pretrained(model_dir)
    out = tmp_path / "servo"
    assert main(["fit-hand-servo", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(out) and len(summary["wrist_coefficients"]) == 3
    loaded = WorldModel.from_pretrained(out)
    assert loaded.config.hand_servo and not torch.equal(loaded.hand_response.coefficients,
                                                        torch.tensor([[1.0, 0.0, 0.0]] * 22))
    assert main(["fit-hand-servo", "--model", str(model_dir), "--data", str(data), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["fit-hand-servo", "--model", str(model_dir), "--data", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_the_shipped_w0s_servo_settles_on_a_held_target():
    """The default W0 ships a fitted hand servo; held at a constant target, its drawn hand must reach
    it within the env's episode (48 steps) and not swing far past it: a servo fitted badly (unstable,
    or one that never moves) fails here."""
    require_default_world_model()
    model = WorldModel.from_pretrained("default")
    assert model.config.hand_servo and model.hand_response is not None
    response = model.hand_response
    step = 0.1
    q = q_previous = target_previous = torch.zeros(1, 22)
    target = torch.full((1, 22), step)
    peak = torch.zeros(1, 22)
    with torch.no_grad():
        for _ in range(48):
            moved = q + response(target - q, q - q_previous, target - target_previous)
            q_previous, q, target_previous = q, moved, target
            peak = torch.maximum(peak, q)
    assert float((target - q).abs().max()) < 0.02 * step
    assert float(peak.max()) < 1.25 * step

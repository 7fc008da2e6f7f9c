"""A W0 whose dynamics is an ensemble: it steps by its members' mean, saves and loads, trains each
member on its own unroll, and `psi-gym ensemble-w0` builds one from W0 folders."""

import json

import pytest
import torch

from psi_gym.cli import main
from psi_gym.world_model.dynamics import DynamicsEnsemble, StateDynamics
from psi_gym.world_model.ensemble import ensemble_world_model
from psi_gym.world_model.losses import dynamics_loss
from psi_gym.world_model.model import WorldModel

from .conftest import make_debug_model, random_inputs


def _moving_dynamics(model: WorldModel, seed: int) -> WorldModel:
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        torch.nn.init.normal_(model.dynamics.out.weight, std=0.05)
    return model


def test_the_ensemble_steps_by_its_members_mean_and_keeps_the_first_models_other_parts(tmp_path):
    a, b, c = (_moving_dynamics(make_debug_model(seed=k), seed=10 + k) for k in range(3))
    ensemble = ensemble_world_model([a, b, c]).eval()
    assert isinstance(ensemble.dynamics, DynamicsEnsemble) and ensemble.config.dynamics_members == 3
    for key, value in a.state_dict().items():
        if not key.startswith("dynamics."):
            torch.testing.assert_close(ensemble.state_dict()[key], value, atol=0, rtol=0, msg=key)
    frames, joints, action, embedding = random_inputs(a, 2)
    targets = torch.from_numpy(action)
    with torch.no_grad():
        state = a.initial_state(frames[:, -1], joints)
        features = a.dynamics.features(state, targets)
        mean = torch.stack([m.dynamics.delta(features) for m in (a, b, c)]).mean(0)
        expected = a.dynamics.advance(state, mean, targets)
        stepped = ensemble.dynamics.step(ensemble.initial_state(frames[:, -1], joints), targets)
    torch.testing.assert_close(stepped.object_position, expected.object_position)
    torch.testing.assert_close(stepped.joint_state, expected.joint_state)
    torch.testing.assert_close(stepped.object_rotation, expected.object_rotation)
    # saved and loaded as any W0; predict runs
    ensemble.save_pretrained(tmp_path / "ens")
    loaded = WorldModel.from_pretrained(tmp_path / "ens").eval()
    for key, value in ensemble.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, atol=0, rtol=0, msg=key)
    out = loaded.predict(frames, joints, action, embedding, output_type="pt")
    torch.testing.assert_close(out.object_position, stepped.object_position)
    with pytest.raises(ValueError, match="at least 2 dynamics members"):
        ensemble_world_model([a])
    with pytest.raises(ValueError, match="differ in size"):
        ensemble_world_model([a, make_debug_model(dynamics_hidden_dim=8)])
    with pytest.raises(ValueError, match="joint prior"):
        ensemble_world_model([a, make_debug_model(dynamics_joint_prior=True)])


def test_an_ensemble_keeps_each_members_servo_response():
    models = [make_debug_model(seed=k, dynamics_joint_prior=True) for k in range(2)]
    for k, model in enumerate(models):
        model.dynamics.joint_response.coefficients.fill_(0.1 * (k + 1))
    ensemble = ensemble_world_model(models)
    for k, member in enumerate(ensemble.dynamics.members):
        assert torch.all(member.joint_response.coefficients == 0.1 * (k + 1))


def test_each_member_is_trained_on_its_own_unroll(sim_episodes):
    from psi_gym.world_model.dataset import EpisodeTensors

    model = make_debug_model(dynamics_members=2).train()
    assert [type(member) for member in model.dynamics.members] == [StateDynamics] * 2
    dataset = EpisodeTensors(sim_episodes, {ep.instruction: torch.zeros(384) for ep in sim_episodes})
    batch = dataset.unrolls(4, 0, torch.Generator().manual_seed(0))
    parts = dynamics_loss(model, batch)
    alone = [dynamics_loss(type("One", (), {"dynamics": member})(), batch) for member in model.dynamics.members]
    torch.testing.assert_close(parts["loss"], (alone[0]["loss"] + alone[1]["loss"]) / 2)
    parts["loss"].backward()
    assert all(p.grad is not None for p in model.dynamics.members[1].parameters() if p.requires_grad)


def test_ensemble_w0_command(tmp_path, capsys):
    for k in range(2):
        _moving_dynamics(make_debug_model(seed=k), seed=k).save_pretrained(tmp_path / f"m{k}")
    args = ["ensemble-w0", "--models", str(tmp_path / "m0"), str(tmp_path / "m1"), "--out", str(tmp_path / "ens"), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dynamics_members"] == 2
    assert WorldModel.from_pretrained(tmp_path / "ens").config.dynamics_members == 2
    assert main(args) == 2  # an existing model is not replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["ensemble-w0", "--models", str(tmp_path / "m0"), "--out", str(tmp_path / "one")]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert main(["ensemble-w0", "--models", str(tmp_path / "nothing"), str(tmp_path / "m0"), "--out", str(tmp_path / "x")]) == 2
    assert "--models" in capsys.readouterr().err

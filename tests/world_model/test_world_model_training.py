import dataclasses
import json

import numpy as np
import pytest
import torch

from psi_gym.world_model.config import debug_config
from psi_gym.world_model.dataset import WindowDataset, compute_normalization
from psi_gym.world_model.model import WorldModel
from psi_gym.world_model.training import (
    TrainConfig,
    build_model,
    change_weights,
    sample_sigmas,
    train_world_model,
    world_model_loss,
)

from .conftest import IMAGE_SIZE


def _dataset(model, episodes):
    embeddings = {ep.instruction: torch.zeros(384) for ep in episodes}
    normalize = {"state": model.normalize_state, "action": model.normalize_action,
                 "object": model.normalize_object_position}
    return WindowDataset(episodes, model.num_context_frames, embeddings, normalize)


def test_windows_repeat_first_frame_and_target_next(synthetic_episodes):
    model = WorldModel.from_model_config(debug_config(image_size=IMAGE_SIZE))
    dataset = _dataset(model, synthetic_episodes)
    assert len(dataset) == sum(ep.num_steps for ep in synthetic_episodes)
    ep = synthetic_episodes[0]
    to_model = WindowDataset._to_model_frames
    first, third = dataset.get(torch.tensor([0])), dataset.get(torch.tensor([2]))
    frame = lambda t: to_model(torch.from_numpy(ep.frames[t]))
    torch.testing.assert_close(first.context[0, 0], frame(0))  # t=0: frame 0 repeated
    torch.testing.assert_close(first.context[0, 1], frame(0))
    torch.testing.assert_close(first.target_frame[0], frame(1))
    torch.testing.assert_close(third.context[0, 0], frame(1))
    torch.testing.assert_close(third.context[0, 1], frame(2))
    torch.testing.assert_close(third.target_frame[0], frame(3))
    assert first.previous.tolist() == [-1] and third.previous.tolist() == [1]
    # second episode's first window has no previous window
    second = dataset.get(torch.tensor([ep.num_steps]))
    assert second.previous.tolist() == [-1]


def test_normalisation_covers_data(synthetic_episodes):
    ranges = compute_normalization(synthetic_episodes)
    actions = np.concatenate([ep.action for ep in synthetic_episodes])
    assert (np.array(ranges["action_low"]) < actions.min(0)).all()
    assert (np.array(ranges["action_high"]) > actions.max(0)).all()


def test_change_weights_mark_moving_pixels():
    config = TrainConfig(change_weight=4.0, change_dilation=1)
    last = torch.zeros(1, 3, 8, 8)
    target = last.clone()
    target[0, 0, 4, 4] = 1.0
    weights = change_weights(target, last, config)
    assert weights.shape == (1, 1, 8, 8)
    assert weights[0, 0, 4, 4] == 5.0 and weights[0, 0, 3, 5] == 5.0  # dilated neighbour
    assert weights[0, 0, 0, 0] == 1.0


@pytest.mark.parametrize("kind", ["uniform", "logit_normal", "inference_mix"])
def test_sigma_sampling_in_range(kind):
    sigma = sample_sigmas(TrainConfig(time_sampling=kind), 256, torch.Generator().manual_seed(0), 2)
    assert sigma.shape == (256,) and (sigma > 0).all() and (sigma <= 1).all()


def test_overfitting_a_fixed_batch_lowers_the_loss(synthetic_episodes):
    config = TrainConfig(model=debug_config(image_size=IMAGE_SIZE), seed=0)
    model = build_model(config, synthetic_episodes).train()
    dataset = _dataset(model, synthetic_episodes)
    batch = dataset.get(torch.arange(0, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_at_fixed_noise():
        with torch.no_grad():
            return float(world_model_loss(model, batch, config, torch.Generator().manual_seed(0), 2)["loss"])

    before = loss_at_fixed_noise()
    for step in range(15):
        parts = world_model_loss(model, batch, config, torch.Generator().manual_seed(step), 2)
        parts["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    after = loss_at_fixed_noise()
    assert after < 0.7 * before, (before, after)


def test_train_checkpoint_and_resume(synthetic_episodes, tmp_path):
    config = TrainConfig(model=debug_config(image_size=IMAGE_SIZE), num_steps=4, batch_size=4, checkpoint_every=2,
                         keep_checkpoints=1, progress=False, self_rollout_prob=0.5, context_noise=0.05, seed=3)
    summary = train_world_model(synthetic_episodes, config, tmp_path / "run")
    assert summary.steps == 4 and summary.resumed_from is None
    assert np.isfinite(summary.final_loss)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-0000004"]  # kept 1
    checkpoint = run / "checkpoint-0000004"
    for name in ("model/config.json", "optimizer.safetensors", "optimizer.json", "trainer_state.json",
                 "rng.safetensors"):
        assert (checkpoint / name).is_file(), name
    json.loads((run / "summary.json").read_text())
    model = WorldModel.from_pretrained(run / "final")
    assert model.config.action_low is not None  # ranges from the data were stored

    longer = dataclasses.replace(config, num_steps=6)
    resumed = train_world_model(synthetic_episodes, longer, run)
    assert resumed.steps == 6 and resumed.resumed_from.endswith("checkpoint-0000004")


def test_training_is_seeded(synthetic_episodes, tmp_path):
    config = TrainConfig(model=debug_config(image_size=IMAGE_SIZE), num_steps=2, batch_size=4, progress=False, seed=5)
    a = train_world_model(synthetic_episodes, config, tmp_path / "a")
    b = train_world_model(synthetic_episodes, config, tmp_path / "b")
    assert a.final_loss == b.final_loss
    wa = WorldModel.from_pretrained(tmp_path / "a" / "final").state_dict()
    wb = WorldModel.from_pretrained(tmp_path / "b" / "final").state_dict()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key])


def test_rejects_mismatched_episodes(synthetic_episodes, tmp_path):
    config = TrainConfig(model=debug_config(image_size=64), num_steps=1, progress=False)
    with pytest.raises(ValueError, match="expects 64x64"):
        train_world_model(synthetic_episodes, config, tmp_path / "x")


def test_init_from_wan_folder(synthetic_episodes, tmp_path):
    from diffusers import WanTransformer3DModel

    from psi_gym.world_model.config import DEBUG_BACKBONE

    WanTransformer3DModel(**DEBUG_BACKBONE.to_dict(), in_channels=48, out_channels=48).save_pretrained(
        tmp_path / "wan" / "transformer")
    config = TrainConfig(model=debug_config(image_size=IMAGE_SIZE), init_from=str(tmp_path / "wan"), num_steps=1,
                         batch_size=2, progress=False)
    summary = train_world_model(synthetic_episodes, config, tmp_path / "run")
    model = WorldModel.from_pretrained(summary.final_dir)
    assert model.config.image_size == IMAGE_SIZE and model.config.action_low is not None


@pytest.mark.parametrize("damage", ["zero-byte weights", "truncated optimizer", "garbage trainer_state"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(synthetic_episodes, tmp_path, capsys, damage):
    config = TrainConfig(model=debug_config(image_size=IMAGE_SIZE), num_steps=4, batch_size=4, checkpoint_every=2,
                         keep_checkpoints=2, progress=False, seed=3)
    run = tmp_path / "run"
    train_world_model(synthetic_episodes, config, run, log_with="none")
    newest = run / "checkpoint-0000004"
    if damage == "zero-byte weights":
        (newest / "model" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    elif damage == "truncated optimizer":
        data = (newest / "optimizer.safetensors").read_bytes()
        (newest / "optimizer.safetensors").write_bytes(data[: len(data) - 100])
    else:
        (newest / "trainer_state.json").write_text('{"step": 4, "hist')
    resumed = train_world_model(synthetic_episodes, dataclasses.replace(config, num_steps=6), run, log_with="none")
    assert resumed.resumed_from.endswith("checkpoint-0000002") and resumed.steps == 6
    assert "checkpoint-0000004 is broken" in capsys.readouterr().err
    assert len(list(run.glob("checkpoint-0000004.broken-*"))) == 1  # set aside, kept for a look
    assert sorted(p.name for p in run.glob("checkpoint-???????")) == ["checkpoint-0000004", "checkpoint-0000006"]
    assert np.isfinite(resumed.final_loss)


def test_resuming_a_finished_run_reports_its_loss(synthetic_episodes, tmp_path):
    config = TrainConfig(model=debug_config(image_size=IMAGE_SIZE), num_steps=3, batch_size=4, checkpoint_every=2,
                         progress=False, seed=1)
    first = train_world_model(synthetic_episodes, config, tmp_path / "run", log_with="none")
    again = train_world_model(synthetic_episodes, config, tmp_path / "run", log_with="none")
    assert again.resumed_from.endswith("checkpoint-0000003") and again.steps == 3
    assert again.final_loss == first.final_loss and again.frame_mse == first.frame_mse


def test_zero_steps_and_a_busy_out_dir_are_refused(synthetic_episodes, tmp_path):
    from psi_gym.data.atomic import TargetLockedError, hold_lock

    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        train_world_model(synthetic_episodes, TrainConfig(model=debug_config(image_size=IMAGE_SIZE), num_steps=0),
                          tmp_path / "run")
    assert not (tmp_path / "run" / "final").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        train_world_model(synthetic_episodes, TrainConfig(model=debug_config(image_size=IMAGE_SIZE), num_steps=1),
                          tmp_path / "file")
    import threading

    errors = []
    config = TrainConfig(model=debug_config(image_size=IMAGE_SIZE), num_steps=1, batch_size=2, progress=False)
    with hold_lock(tmp_path / "busy"):
        thread = threading.Thread(target=lambda: errors.append(_raises(
            lambda: train_world_model(synthetic_episodes, config, tmp_path / "busy"))))
        thread.start()
        thread.join()
    assert isinstance(errors[0], TargetLockedError)


def _raises(function):
    try:
        function()
    except Exception as error:  # noqa: BLE001 - handed back to the test
        return error
    return None


def test_loss_curves_go_through_the_trackers(synthetic_episodes, tmp_path):
    from psi_gym.data.metrics import read_metrics

    config = TrainConfig(model=debug_config(image_size=IMAGE_SIZE), num_steps=12, batch_size=2, checkpoint_every=10,
                         progress=False, seed=2, self_rollout_prob=0.0)
    run = tmp_path / "run"
    train_world_model(synthetic_episodes, config, run, log_with="csv")
    logs = run / "logs" / "train-w0"
    rows = read_metrics(logs / "metrics.csv")
    assert {name for _, name, _ in rows} >= {"loss", "frame_mse", "state", "object", "learning_rate"}
    assert sorted({step for step, _, _ in rows}) == [10, 12]
    assert (logs / "loss.png").stat().st_size > 1000 and json.loads((logs / "config.json").read_text())["num_steps"] == 12
    # a resumed run keeps the rows up to its checkpoint and logs the steps after it once
    train_world_model(synthetic_episodes, dataclasses.replace(config, num_steps=20), run, log_with="csv")
    steps = [step for step, name, _ in read_metrics(logs / "metrics.csv") if name == "loss"]
    assert steps == [10, 12, 20]

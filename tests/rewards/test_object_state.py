"""Object-state / success estimator: shapes, determinism, checkpoints, training, clear errors,
and the shipped default on freshly simulated rollouts (CPU, tiny configs)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from psi_gym.retarget.robot_rollouts import make_rollout
from psi_gym.rewards import object_state
from psi_gym.rewards.estimator_training import (
    AugmentConfig,
    EstimatorTrainConfig,
    augment_pixel_values,
    class_weights,
    estimator_loss,
    evaluate_estimator,
    frame_set,
    train_estimator,
)
from psi_gym.rewards.object_state import (
    EstimatorCheckpointError,
    ObjectStateEstimator,
    ObjectStateEstimatorConfig,
    frame_success_labels,
    frame_success_margins,
    frames_to_pixel_values,
    object_in_view,
)
from psi_gym.sim.tasks import TASKS

TINY = ObjectStateEstimatorConfig(channels=(8, 8, 16, 16), hidden_dim=32)
FRESH_SEED = 918_273  # a seed no shipped dataset was collected with


def tiny_estimator(seed: int = 0) -> ObjectStateEstimator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ObjectStateEstimator.from_estimator_config(TINY).eval()


@pytest.fixture(scope="module")
def episodes():
    """Nine fresh robot rollouts, three per task (task cycles with the index)."""
    return [make_rollout(FRESH_SEED, index) for index in range(9)]


def random_frames(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)


def test_output_shapes_and_task_order():
    estimator = tiny_estimator()
    assert estimator.task_names == sorted(TASKS)
    output = estimator.predict(random_frames(5))
    assert output.position.shape == (5, 3) and output.position.dtype == torch.float32
    assert output.success_logits.shape == output.success_margin.shape == (5, len(TASKS))
    same = estimator.predict(torch.from_numpy(random_frames(5)))  # torch uint8 works too
    torch.testing.assert_close(same.position, output.position)
    probability = estimator.success_probability(random_frames(5), "push_box")
    assert probability.shape == (5,) and ((probability >= 0) & (probability <= 1)).all()
    per_frame = estimator.success_probability(random_frames(3), ["lift_apple", "lift_can", "push_box"])
    torch.testing.assert_close(per_frame, torch.sigmoid(estimator.predict(random_frames(3)).success_logits.diagonal()))


def test_outputs_are_deterministic():
    frames = random_frames(4, seed=3)
    first, second = tiny_estimator(seed=1), tiny_estimator(seed=1)
    assert torch.equal(first.predict(frames).position, first.predict(frames).position)
    assert torch.equal(first.predict(frames).success_logits, second.predict(frames).success_logits)
    # The batch split does not change the numbers beyond float noise.
    torch.testing.assert_close(first.predict(frames, batch_size=1).position, first.predict(frames).position)


def test_save_load_round_trip(tmp_path):
    estimator = tiny_estimator(seed=2)
    estimator.save_pretrained(tmp_path / "estimator")
    assert (tmp_path / "estimator" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = ObjectStateEstimator.from_pretrained(tmp_path / "estimator")
    assert loaded.estimator_config == estimator.estimator_config == TINY
    frames = random_frames(6)
    assert torch.equal(loaded.predict(frames).position, estimator.predict(frames).position)
    assert torch.equal(loaded.predict(frames).success_logits, estimator.predict(frames).success_logits)


def test_labels_follow_the_simulator(episodes):
    for episode in episodes:
        labels = frame_success_labels(episode)
        assert labels.shape == (episode.frames.shape[0],) and labels.dtype == bool
        np.testing.assert_array_equal(frame_success_margins(episode) > 0, labels)
        if episode.task.startswith("lift"):
            assert labels[-1] == episode.success  # lifting: success is the final frame's condition
    # The camera projection agrees with where things are: objects start on the table, in view.
    assert object_in_view(np.stack([e.object_pose[0, :3] for e in episodes])).all()
    assert not object_in_view(np.array([[0.0, -0.45, 0.04], [240.0, -10.0, 270.0]])).any()


def test_training_steps_lower_the_loss_on_a_fixed_batch(episodes):
    torch.manual_seed(0)
    estimator = tiny_estimator(seed=0).train()
    frames = frame_set(episodes, estimator.task_names, 64)
    rows = torch.arange(0, len(frames), max(1, len(frames) // 32))[:32]
    batch = frames.subset(rows)
    pixel_values = frames_to_pixel_values(batch.frames)
    weights = class_weights(frames, len(estimator.task_names))
    optimizer = torch.optim.AdamW(estimator.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        return estimator_loss(estimator, pixel_values, batch, weights)[0]

    before = loss().item()
    for _ in range(40):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.5 * before


def test_augmentations_are_seeded_and_keep_range():
    pixels = frames_to_pixel_values(random_frames(4))
    first = augment_pixel_values(pixels, AugmentConfig(), torch.Generator().manual_seed(5))
    second = augment_pixel_values(pixels, AugmentConfig(), torch.Generator().manual_seed(5))
    assert torch.equal(first, second) and first.shape == pixels.shape
    assert first.min() >= 0 and first.max() <= 1 and not torch.equal(first, pixels)


def test_train_estimator_is_reproducible_and_saves(episodes, tmp_path):
    config = EstimatorTrainConfig(model=TINY, steps=3, batch_size=8, eval_every=0, progress=False, val_fraction=0.2)
    first = train_estimator(episodes, config, out_dir=tmp_path / "a", seed=4)
    second = train_estimator(episodes, config, out_dir=tmp_path / "b", seed=4)
    assert first.final_loss == second.final_loss
    assert first.held_out_episodes == 2 and first.train_episodes == 7
    assert set(first.held_out["per_task"]) <= set(TASKS)
    assert first.out == str(tmp_path / "a") and "eval_data" not in first.to_dict()  # sections that did not run
    loaded = ObjectStateEstimator.from_pretrained(tmp_path / "a")
    assert json.loads((tmp_path / "a" / "training_summary.json").read_text())["steps"] == 3
    # Position normalisation comes from the data, not the defaults.
    assert loaded.config.position_mean != list(TINY.position_mean)


def test_bad_inputs_are_clear_errors():
    estimator = tiny_estimator()
    with pytest.raises(ValueError, match="uint8"):
        estimator.predict(random_frames(2).astype(np.float32))
    with pytest.raises(ValueError, match=r"\(B, 64, 64, 3\).*\(2, 32, 32, 3\)"):
        estimator.predict(random_frames(2)[:, :32, :32])
    with pytest.raises(ValueError, match="batch axis"):
        estimator.predict(random_frames(1)[0])
    with pytest.raises(ValueError, match="channels"):
        estimator.predict(np.zeros((2, 3, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="numpy or torch"):
        estimator.predict([[0]])
    with pytest.raises(ValueError, match="float"):
        estimator(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown task"):
        estimator.success_probability(random_frames(2), "juggle")
    with pytest.raises(ValueError, match="one per frame"):
        estimator.success_probability(random_frames(2), ["push_box"])
    with pytest.raises(ValueError, match="unknown task"):
        ObjectStateEstimator(task_names=["juggle"])


def test_missing_or_corrupt_checkpoints_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="train-estimator"):
        ObjectStateEstimator.from_pretrained(tmp_path / "nowhere")
    not_shipped = dataclasses.replace(object_state.ESTIMATOR_ASSET, default_folder=str(tmp_path / "not-shipped"))
    monkeypatch.setattr(object_state, "ESTIMATOR_ASSET", not_shipped)
    with pytest.raises(FileNotFoundError, match=r"not-shipped.*config\.json.*psi-gym train-estimator"):
        ObjectStateEstimator.from_pretrained("default")
    monkeypatch.undo()
    folder = tmp_path / "estimator"
    tiny_estimator().save_pretrained(folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(EstimatorCheckpointError, match="could not load"):
        ObjectStateEstimator.from_pretrained(folder)
    weights.unlink()
    with pytest.raises(EstimatorCheckpointError, match="train-estimator"):
        ObjectStateEstimator.from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    tiny_estimator().save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text("{not json")
    with pytest.raises(EstimatorCheckpointError, match="JSON"):
        ObjectStateEstimator.from_pretrained(tmp_path / "other")


def test_cli_trains_a_loadable_estimator(episodes, tmp_path, capsys):
    import psi_gym.rewards.commands  # noqa: F401  (registers train-estimator)
    from psi_gym.cli import main
    from psi_gym.data.lerobot import write_dataset

    write_dataset(tmp_path / "data", episodes[:3])
    argv = ["train-estimator", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "est"),
            "--steps", "2", "--batch-size", "4", "--seed", "1", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["out"] == str(tmp_path / "est")
    ObjectStateEstimator.from_pretrained(tmp_path / "est")
    assert main(["train-estimator", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert "argument --data" in error and "no dataset" in error


def test_shipped_default_reads_fresh_rollouts(episodes):
    estimator = ObjectStateEstimator.from_pretrained("default")
    assert estimator.task_names == sorted(TASKS)
    metrics = evaluate_estimator(estimator, episodes)
    assert metrics["position_error_cm"]["median"] < 3.0, metrics
    assert metrics["success_accuracy"] > 0.9, metrics

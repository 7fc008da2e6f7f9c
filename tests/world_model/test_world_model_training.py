import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from psi_gym.world_model.config import debug_config
from psi_gym.world_model.dataset import REST_TOLERANCE, EpisodeTensors
from psi_gym.world_model.losses import (
    change_weights,
    compile_unavailable,
    compiled_steps,
    dynamics_loss,
    perception_loss,
    renderer_loss,
    sample_sigmas,
)
from psi_gym.world_model.model import WorldModel
from psi_gym.world_model.training import TrainConfig, build_model, train_world_model

from .conftest import IMAGE_SIZE, trim


def _config(**changes) -> TrainConfig:
    """A tiny, fast training run: debug model, a few samples of each kind, unrolls growing to whole episodes."""
    base = TrainConfig(model=debug_config(image_size=IMAGE_SIZE), num_steps=4, batch_size=4, dynamics_batch_size=4,
                       perception_batch_size=4, unroll_schedule=((0.0, 4), (0.5, 0)), warmup_steps=2,
                       checkpoint_every=2, progress=False, seed=3)
    return dataclasses.replace(base, **changes)


def _dataset(episodes) -> EpisodeTensors:
    return EpisodeTensors(episodes, {ep.instruction: torch.zeros(384) for ep in episodes})


def _weights(folder) -> dict[str, torch.Tensor]:
    return WorldModel.from_pretrained(folder).state_dict()


# ------------------------------------------------------------------------------------ data
def test_unrolls_start_from_true_states_with_the_episodes_targets(sim_episodes):
    episode = sim_episodes[0]
    dataset = _dataset([episode])
    batch = dataset.unrolls(16, 5, torch.Generator().manual_seed(0))
    assert batch.targets.shape == (16, 5, 22) and batch.object_rotation.shape == (16, 5, 3, 3)
    assert (batch.mask == 1).all()  # 5 steps fit in every window of a 32-step episode
    for row in range(16):
        start = int(np.flatnonzero((episode.state == batch.start.joint_state[row].numpy()).all(1))[0])
        np.testing.assert_array_equal(batch.targets[row].numpy(), episode.action[start: start + 5])
        np.testing.assert_array_equal(batch.joint_state[row].numpy(), episode.state[start + 1: start + 6])
        np.testing.assert_array_equal(batch.object_position[row].numpy(), episode.object_pose[start + 1: start + 6, :3])
        np.testing.assert_array_equal(batch.start.previous_joint_state[row].numpy(), episode.state[max(start - 1, 0)])
        np.testing.assert_array_equal(batch.start.scene_frame[row].numpy(), episode.frames[0])


def test_the_dynamics_unroll_masks_steps_past_an_episodes_end(sim_episodes):
    short, long = trim(sim_episodes[0], 3), trim(sim_episodes[1], 9)
    dataset = _dataset([short, long])
    assert dataset.max_steps == 9
    batch = dataset.unrolls(24, 0, torch.Generator().manual_seed(0))  # 0: whole episodes
    assert batch.mask.shape == (24, 9)
    is_short = batch.start.object_descriptor[:, 0] == 1  # the apple's episode
    assert is_short.any() and (~is_short).any()
    assert (batch.mask[is_short] == torch.tensor([1.0] * 3 + [0.0] * 6)).all()
    assert (batch.mask[~is_short] == 1).all()
    model = WorldModel.from_model_config(debug_config(image_size=IMAGE_SIZE))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.nn.init.normal_(model.dynamics.out.weight, std=0.05)
    with torch.no_grad():
        loss = dynamics_loss(model, batch)
        # what lies past an episode's end is not looked at ...
        moved = dataclasses.replace(batch, object_position=batch.object_position + (1 - batch.mask)[..., None],
                                    joint_state=batch.joint_state + 5 * (1 - batch.mask)[..., None])
        for key, value in dynamics_loss(model, moved).items():
            torch.testing.assert_close(value, loss[key], msg=key)
        # ... what lies before it is
        inside = batch.object_position.clone()
        inside[is_short.nonzero()[0, 0], 2] += 0.1
        assert dynamics_loss(model, dataclasses.replace(batch, object_position=inside))["loss"] > loss["loss"]


@pytest.mark.skipif(compile_unavailable("cpu") is not None, reason="torch.compile on the CPU needs a C++ compiler")
@pytest.mark.parametrize("sizes", [{}, {"dynamics_contact_width": 8}, {"dynamics_joint_prior": True}])
def test_a_compiled_dynamics_step_gives_the_same_loss_and_gradients(sim_episodes, sizes):
    """TrainConfig.compile: the unroll through compiled steps is the eager one (values and gradients),
    with and without the contact encoder and the joints' servo response."""
    dataset = _dataset([trim(sim_episodes[0], 6), trim(sim_episodes[1], 9)])
    batch = dataset.unrolls(4, 0, torch.Generator().manual_seed(0), position_noise=0.002)
    model = WorldModel.from_model_config(debug_config(image_size=IMAGE_SIZE, **sizes))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.nn.init.normal_(model.dynamics.out.weight, std=0.05)
    if model.dynamics.joint_response is not None:
        model.dynamics.joint_response.fit(*dataset.joint_transitions())
    eager = dynamics_loss(model, batch)
    eager["loss"].backward()
    eager_grads = [p.grad.clone() for p in model.dynamics.parameters()]
    model.dynamics.zero_grad(set_to_none=True)
    compiled = dynamics_loss(model, batch, compiled_steps(model))
    compiled["loss"].backward()
    for key, value in eager.items():
        torch.testing.assert_close(compiled[key], value, rtol=1e-4, atol=1e-5, msg=key)
    for eager_grad, parameter in zip(eager_grads, model.dynamics.parameters()):
        torch.testing.assert_close(parameter.grad, eager_grad, rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="step functions"):
        dynamics_loss(model, batch, [])


def test_compile_without_a_compiler_fails_before_anything_is_written(sim_episodes, tmp_path, no_cpp_compiler):
    """TrainConfig.compile where inductor finds no C++ compiler: the reason up front, no run folder."""
    assert "C++ compiler" in compile_unavailable("cpu")
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        train_world_model([trim(sim_episodes[0], 6)], _config(compile=True), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    # a run that trains no dynamics compiles nothing, so it needs no compiler
    summary = train_world_model([trim(sim_episodes[0], 6)], _config(compile=True, parts=("perception",), num_steps=1),
                                tmp_path / "perception")
    assert summary.steps == 1


def test_a_fresh_dynamics_needs_a_model_to_keep(sim_episodes):
    with pytest.raises(ValueError, match="init_from"):
        build_model(_config(fresh_dynamics=True))


def test_perception_sees_the_object_where_it_rests(sim_episodes):
    dataset = _dataset(sim_episodes)
    batch = dataset.perception_samples(32, torch.Generator().manual_seed(0))
    starts = {tuple(ep.frames[0, 0, 0]): ep for ep in sim_episodes}
    assert batch.frames.shape == (32, 3, IMAGE_SIZE, IMAGE_SIZE) and batch.descriptor.shape == (32, 6)
    first_positions = torch.stack([torch.from_numpy(ep.object_pose[0, :3]) for ep in sim_episodes])
    distance = torch.cdist(batch.position, first_positions).min(dim=1).values
    assert (distance <= REST_TOLERANCE + 1e-6).all() and len(starts) >= 1


def test_change_weights_mark_moving_pixels():
    config = TrainConfig(change_weight=4.0, change_dilation=1)
    first = torch.zeros(1, 3, 8, 8)
    target = first.clone()
    target[0, 0, 4, 4] = 1.0
    weights = change_weights(target, first, config)
    assert weights.shape == (1, 1, 8, 8)
    assert weights[0, 0, 4, 4] == 5.0 and weights[0, 0, 3, 5] == 5.0  # dilated neighbour
    assert weights[0, 0, 0, 0] == 1.0


@pytest.mark.parametrize("kind", ["uniform", "logit_normal", "inference_mix"])
def test_sigma_sampling_in_range(kind):
    sigma = sample_sigmas(TrainConfig(time_sampling=kind), 256, torch.Generator().manual_seed(0), 2)
    assert sigma.shape == (256,) and (sigma > 0).all() and (sigma <= 1).all()


def test_unroll_schedule_grows_to_whole_episodes():
    config = TrainConfig(num_steps=100, unroll_schedule=((0.0, 8), (0.25, 16), (0.5, 0)))
    assert [config.unroll_length(step) for step in (0, 24, 25, 49, 50, 99)] == [8, 8, 16, 16, 0, 0]


# -------------------------------------------------------------------------------- learning
def test_each_part_learns_a_fixed_tiny_set(sim_episodes):
    config = _config()
    model = build_model(config).train()
    dataset = _dataset(sim_episodes)
    generator = torch.Generator().manual_seed(0)
    unrolls = dataset.unrolls(8, 8, generator, config.perception_noise)
    frames = dataset.frame_samples(8, generator)
    seen = dataset.perception_samples(8, generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def losses(seed: int) -> dict[str, torch.Tensor]:
        return {"dynamics": dynamics_loss(model, unrolls)["loss"],
                "renderer": renderer_loss(model, frames, config, torch.Generator().manual_seed(seed), 1)["loss"],
                "perception": perception_loss(model, seen)["loss"]}

    with torch.no_grad():
        before = {key: float(value) for key, value in losses(0).items()}
    for step in range(30):
        sum(losses(step + 1).values()).backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        after = {key: float(value) for key, value in losses(0).items()}
    for key in before:
        assert after[key] < 0.7 * before[key], (key, before, after)


def test_unrolls_draw_the_asked_share_of_successes(sim_episodes, tmp_path):
    dataset = _dataset(sim_episodes)
    assert dataset.success.any() and not dataset.success.all(), "the fixture holds successes and failures"
    generator = torch.Generator().manual_seed(0)
    assert dataset.unrolls(8, 0, generator, success_fraction=1.0).mask.shape[0] == 8
    drawn = dataset._draw_episodes(400, generator, 0.25)
    assert dataset.success[drawn].float().mean().item() == pytest.approx(0.25, abs=1e-6)
    uniform = dataset._draw_episodes(4000, generator, None)
    assert abs(dataset.success[uniform].float().mean().item() - dataset.success.float().mean().item()) < 0.05
    with pytest.raises(ValueError, match="success_fraction"):
        train_world_model(sim_episodes, _config(success_fraction=1.5), tmp_path / "bad", log_with="none")


def test_bad_learning_rates_and_warmup_are_refused_before_anything_is_written(sim_episodes, tmp_path):
    for name, value in (("learning_rate", 0.0), ("learning_rate", float("nan")), ("min_learning_rate", -1e-5),
                        ("min_learning_rate", float("inf")), ("warmup_steps", -1), ("warmup_steps", 2.5),
                        ("warmup_steps", True)):
        with pytest.raises(ValueError, match=name):
            train_world_model(sim_episodes, _config(num_steps=1, **{name: value}), tmp_path / "bad", log_with="none")
        assert not (tmp_path / "bad").exists()


def test_training_one_part_leaves_the_others_as_they_were(sim_episodes, tmp_path):
    start = train_world_model(sim_episodes, _config(num_steps=2), tmp_path / "start", log_with="none")
    summary = train_world_model(sim_episodes, _config(num_steps=3, parts=("dynamics",), unroll_schedule=((0.0, 0),),
                                                      init_from=start.final_dir), tmp_path / "dyn", log_with="none")
    assert summary.frame_mse is None and summary.perception_cm is None and np.isfinite(summary.final_object_cm)
    before, after = _weights(start.final_dir), _weights(summary.final_dir)
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.startswith("dynamics.") for key in changed), sorted(changed)[:5]
    with pytest.raises(ValueError, match="parts must be distinct names"):
        train_world_model(sim_episodes, _config(parts=("physics",)), tmp_path / "bad", log_with="none")


def test_train_checkpoint_and_resume_gives_identical_weights(sim_episodes, tmp_path):
    config = _config(num_steps=6, keep_checkpoints=3)
    summary = train_world_model(sim_episodes, config, tmp_path / "run", log_with="none")
    assert summary.steps == 6 and summary.resumed_from is None and summary.num_episodes == 6
    for name in ("final_loss", "frame_mse", "object_cm", "final_object_cm", "perception_cm"):
        assert np.isfinite(getattr(summary, name)), name
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == [f"checkpoint-000000{k}" for k in (2, 4, 6)]
    checkpoint = run / "checkpoint-0000004"
    for name in ("model/config.json", "optimizer.safetensors", "optimizer.json", "trainer_state.json",
                 "rng.safetensors"):
        assert (checkpoint / name).is_file(), name
    json.loads((run / "summary.json").read_text())
    # stopped after step 4 (its later checkpoint and final lost) and resumed: the very same weights
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoint-0000006", "final", "*.lock"))
    resumed = train_world_model(sim_episodes, config, copy, log_with="none")
    assert resumed.steps == 6 and resumed.resumed_from.endswith("checkpoint-0000004")
    straight, again = _weights(run / "final"), _weights(copy / "final")
    assert straight.keys() == again.keys()
    for key in straight:
        torch.testing.assert_close(again[key], straight[key], atol=0, rtol=0, msg=key)
    assert resumed.final_loss == pytest.approx(summary.final_loss, rel=1e-6)


def test_training_is_seeded(sim_episodes, tmp_path):
    config = _config(num_steps=2)
    a = train_world_model(sim_episodes, config, tmp_path / "a", log_with="none")
    b = train_world_model(sim_episodes, config, tmp_path / "b", log_with="none")
    assert a.final_loss == b.final_loss
    wa, wb = _weights(tmp_path / "a" / "final"), _weights(tmp_path / "b" / "final")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=0, rtol=0)
    c = train_world_model(sim_episodes, dataclasses.replace(config, seed=4), tmp_path / "c", log_with="none")
    assert c.final_loss != a.final_loss


def test_rejects_episodes_it_cannot_train_on(sim_episodes, tmp_path):
    with pytest.raises(ValueError, match="expects 64x64"):
        train_world_model(sim_episodes, _config(model=debug_config(image_size=64)), tmp_path / "x")
    no_object = [ep.replace(scene={k: v for k, v in ep.scene.items() if k != "object_kind"}) for ep in sim_episodes]
    with pytest.raises(ValueError, match="object_kind and object_size"):
        train_world_model(no_object, _config(), tmp_path / "y")
    humans = [ep.replace(embodiment="human") for ep in sim_episodes]
    with pytest.raises(ValueError, match="no robot episodes"):
        train_world_model(humans, _config(), tmp_path / "z")


def test_init_from_wan_folder(sim_episodes, tmp_path):
    from diffusers import WanTransformer3DModel

    from psi_gym.world_model.config import DEBUG_BACKBONE

    wan = WanTransformer3DModel(**DEBUG_BACKBONE.to_dict(), in_channels=48, out_channels=48)
    wan.save_pretrained(tmp_path / "wan" / "transformer")
    summary = train_world_model(sim_episodes, _config(init_from=str(tmp_path / "wan"), num_steps=1), tmp_path / "run",
                                log_with="none")
    model = WorldModel.from_pretrained(summary.final_dir)
    assert model.config.image_size == IMAGE_SIZE and model.config.perception_channels == [8, 8, 8, 8]
    assert model.transformer.blocks[0].attn1.to_q.weight.shape == wan.blocks[0].attn1.to_q.weight.shape


@pytest.mark.parametrize("damage", ["zero-byte weights", "truncated optimizer", "garbage trainer_state"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(sim_episodes, tmp_path, capsys, damage):
    config = _config(keep_checkpoints=2)
    run = tmp_path / "run"
    train_world_model(sim_episodes, config, run, log_with="none")
    newest = run / "checkpoint-0000004"
    if damage == "zero-byte weights":
        (newest / "model" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    elif damage == "truncated optimizer":
        data = (newest / "optimizer.safetensors").read_bytes()
        (newest / "optimizer.safetensors").write_bytes(data[: len(data) - 100])
    else:
        (newest / "trainer_state.json").write_text('{"step": 4, "hist')
    resumed = train_world_model(sim_episodes, dataclasses.replace(config, num_steps=6), run, log_with="none")
    assert resumed.resumed_from.endswith("checkpoint-0000002") and resumed.steps == 6
    assert "checkpoint-0000004 is broken" in capsys.readouterr().err
    assert len(list(run.glob("checkpoint-0000004.broken-*"))) == 1  # set aside, kept for a look
    assert sorted(p.name for p in run.glob("checkpoint-???????")) == ["checkpoint-0000004", "checkpoint-0000006"]
    assert np.isfinite(resumed.final_loss)


def test_resuming_a_finished_run_reports_its_loss(sim_episodes, tmp_path):
    config = _config(num_steps=3)
    first = train_world_model(sim_episodes, config, tmp_path / "run", log_with="none")
    again = train_world_model(sim_episodes, config, tmp_path / "run", log_with="none")
    assert again.resumed_from.endswith("checkpoint-0000003") and again.steps == 3
    assert again.final_loss == first.final_loss and again.frame_mse == first.frame_mse
    assert again.object_cm == first.object_cm


def test_zero_steps_and_a_busy_out_dir_are_refused(sim_episodes, tmp_path):
    from psi_gym.data.atomic import TargetLockedError, hold_lock

    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        train_world_model(sim_episodes, _config(num_steps=0), tmp_path / "run")
    with pytest.raises(ValueError, match="dynamics_batch_size must be an int >= 1"):
        train_world_model(sim_episodes, _config(dynamics_batch_size=0), tmp_path / "run")
    assert not (tmp_path / "run" / "final").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        train_world_model(sim_episodes, _config(num_steps=1), tmp_path / "file")
    import threading

    errors = []
    with hold_lock(tmp_path / "busy"):
        thread = threading.Thread(target=lambda: errors.append(_raises(
            lambda: train_world_model(sim_episodes, _config(num_steps=1), tmp_path / "busy"))))
        thread.start()
        thread.join()
    assert isinstance(errors[0], TargetLockedError)


def _raises(function):
    try:
        function()
    except Exception as error:  # noqa: BLE001 - handed back to the test
        return error
    return None


def test_loss_curves_go_through_the_trackers(sim_episodes, tmp_path):
    from psi_gym.data.metrics import read_metrics

    config = _config(num_steps=12, checkpoint_every=10, seed=2)
    run = tmp_path / "run"
    train_world_model(sim_episodes, config, run, log_with="csv")
    logs = run / "logs" / "train-w0"
    rows = read_metrics(logs / "metrics.csv")
    assert {name for _, name, _ in rows} >= {"loss", "frame_mse", "object_cm", "final_object_cm", "perception_cm",
                                             "kind_accuracy", "learning_rate"}
    assert sorted({step for step, _, _ in rows}) == [10, 12]
    assert (logs / "loss.png").stat().st_size > 1000 and json.loads((logs / "config.json").read_text())["num_steps"] == 12
    # a resumed run keeps the rows up to its checkpoint and logs the steps after it once
    train_world_model(sim_episodes, dataclasses.replace(config, num_steps=20), run, log_with="csv")
    steps = [step for step, name, _ in read_metrics(logs / "metrics.csv") if name == "loss"]
    assert steps == [10, 12, 20]

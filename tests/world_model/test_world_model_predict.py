import numpy as np
import pytest
import torch

from psi_gym.world_model.model import WorldModel, WorldModelOutput
from psi_gym.world_model.sampler import FlowMatchSampler, sampling_sigmas
from psi_gym.world_model.world_state import WorldState

from .conftest import IMAGE_SIZE, make_debug_model, random_inputs


def test_predict_shapes_numpy(debug_model):
    frames, state, action, embedding = random_inputs(debug_model, batch=3)
    out = debug_model.predict(frames, state, action, embedding, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, WorldModelOutput)
    assert out.frames.shape == (3, IMAGE_SIZE, IMAGE_SIZE, 3) and out.frames.dtype == np.uint8
    assert out.state.shape == (3, 22) and out.state.dtype == np.float32
    assert out.object_position.shape == (3, 3) and out.object_position.dtype == np.float32
    assert isinstance(out.world_state, WorldState) and len(out.world_state) == 3
    np.testing.assert_array_equal(out.state, out.world_state.joint_state.numpy())
    np.testing.assert_array_equal(out.object_position, out.world_state.object_position.numpy())


def test_predict_torch_in_torch_out(debug_model):
    frames, state, action, embedding = random_inputs(debug_model, batch=2)
    out = debug_model.predict(torch.from_numpy(frames), torch.from_numpy(state), torch.from_numpy(action), embedding)
    assert isinstance(out.frames, torch.Tensor) and out.frames.dtype == torch.uint8
    assert out.frames.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert out.state.dtype == torch.float32 and out.object_position.shape == (2, 3)
    assert debug_model.num_context_frames == 1


def test_a_fresh_model_says_nothing_moves(debug_model):
    # zero-initialised output projection and dynamics: the first frame, the joints where they were
    frames, state, action, embedding = random_inputs(debug_model, batch=2)
    out = debug_model.predict(frames, state, action, embedding, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(out.frames, frames[:, -1])
    np.testing.assert_allclose(out.state, state, atol=1e-6)
    start = debug_model.initial_state(frames[:, -1], state)
    np.testing.assert_allclose(out.object_position, start.object_position.numpy(), atol=1e-6)


def test_only_the_newest_context_frame_starts_the_state():
    model = make_debug_model(moving=True)
    frames, state, action, embedding = random_inputs(model, batch=2, context=3)
    older = frames.copy()
    older[:, :-1] = 255 - older[:, :-1]
    run = lambda f: model.predict(f, state, action, embedding, generator=torch.Generator().manual_seed(0))  # noqa: E731
    a, b = run(frames), run(older)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.object_position, b.object_position)


def test_world_state_round_trip():
    model = make_debug_model(moving=True)
    frames, state, action, embedding = random_inputs(model, batch=3)
    start = model.initial_state(frames[:, 0], state)
    assert start.scene_frame.dtype == torch.uint8 and start.object_rotation.shape == (3, 3, 3)
    np.testing.assert_array_equal(start.scene_frame.numpy(), frames[:, 0])
    np.testing.assert_array_equal(start.previous_joint_state.numpy(), state)
    # no state: one is read off the newest frame, as initial_state does
    implicit = model.predict(frames, state, action, embedding, generator=torch.Generator().manual_seed(1))
    explicit = model.predict(frames, state, action, embedding, generator=torch.Generator().manual_seed(1), world_state=start)
    np.testing.assert_array_equal(implicit.frames, explicit.frames)
    np.testing.assert_array_equal(implicit.state, explicit.state)
    # the returned state is the next one: the current becomes the previous, the scene stays
    second = model.predict(explicit.frames[:, None], explicit.state, action, embedding,
                           generator=torch.Generator().manual_seed(2), world_state=explicit.world_state)
    new = second.world_state
    torch.testing.assert_close(new.previous_joint_state, explicit.world_state.joint_state)
    torch.testing.assert_close(new.previous_object_position, explicit.world_state.object_position)
    torch.testing.assert_close(new.previous_object_rotation, explicit.world_state.object_rotation)
    torch.testing.assert_close(new.object_descriptor, start.object_descriptor)
    np.testing.assert_array_equal(new.scene_frame.numpy(), frames[:, 0])
    assert not np.allclose(second.state, explicit.state)  # the trained-looking dynamics moves the joints
    rotation = new.object_rotation
    torch.testing.assert_close(rotation @ rotation.transpose(-1, -2), torch.eye(3).expand(3, 3, 3), atol=1e-5, rtol=0)


def test_batching_changes_nothing():
    """Rows stepped together for several steps == each row stepped alone, with one generator per row."""
    model = make_debug_model(moving=True)
    frames, state, action, embedding = random_inputs(model, batch=3)
    rng = np.random.default_rng(5)
    actions = [action + rng.normal(0, 0.02, action.shape).astype(np.float32) for _ in range(3)]

    def roll(rows):
        generators = [torch.Generator().manual_seed(100 + row) for row in rows]
        world = model.initial_state(frames[rows, 0], state[rows])
        outputs = []
        for step_action in actions:
            out = model.predict(frames[rows], world.joint_state.numpy(), step_action[rows], embedding[rows],
                                generator=generators, world_state=world)
            world = out.world_state
            outputs.append(out)
        return outputs

    together = roll([0, 1, 2])
    for row in range(3):
        alone = roll([row])
        for step, (a, b) in enumerate(zip(together, alone)):
            np.testing.assert_array_equal(a.frames[row], b.frames[0], err_msg=f"row {row} step {step}")
            np.testing.assert_allclose(a.state[row], b.state[0], atol=1e-5)
            np.testing.assert_allclose(a.object_position[row], b.object_position[0], atol=1e-6)


def test_determinism_under_seeded_generator():
    model = make_debug_model(moving=True)  # the frame depends on the noise
    frames, state, action, embedding = random_inputs(model, batch=2)

    def run(seed):
        return model.predict(frames, state, action, embedding, generator=torch.Generator().manual_seed(seed))

    first, again, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first.frames, again.frames)
    np.testing.assert_array_equal(first.state, again.state)
    assert not np.array_equal(first.frames, other.frames)
    np.testing.assert_array_equal(first.state, other.state)  # the physics is deterministic: only frames are drawn


def test_no_global_rng_use():
    model = make_debug_model(moving=True)
    frames, state, action, embedding = random_inputs(model, batch=1)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    model.predict(frames, state, action, embedding, generator=torch.Generator().manual_seed(0))
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_sampler_lands_on_perfect_x0(steps):
    target = torch.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    sampler = FlowMatchSampler()
    sample, _ = sampler.sample(lambda x, sigma: (target, None), target.shape, steps,
                               torch.Generator().manual_seed(0), torch.device("cpu"), torch.float32)
    torch.testing.assert_close(sample, target, atol=1e-5, rtol=0)


def test_sampling_sigmas():
    assert sampling_sigmas(1) == [1.0]
    assert sampling_sigmas(2) == [1.0, 0.5]
    with pytest.raises(ValueError):
        sampling_sigmas(0)


def test_more_sampling_steps_run():
    model = make_debug_model(moving=True)
    frames, state, action, embedding = random_inputs(model, batch=2)
    out = model.predict(frames, state, action, embedding, generator=torch.Generator().manual_seed(0), num_inference_steps=3)
    assert out.frames.shape == (2, IMAGE_SIZE, IMAGE_SIZE, 3)


def test_instruction_strings_use_text_encoder(debug_model):
    frames, state, action, _ = random_inputs(debug_model, batch=2)
    out = debug_model.predict(frames, state, action, ["lift the apple", "lift the can"])
    assert out.frames.shape[0] == 2
    single = debug_model.predict(frames, state, action, "lift the apple")
    assert single.frames.shape[0] == 2


def test_model_config_roundtrip(debug_model):
    config = debug_model.model_config
    rebuilt = WorldModel.from_model_config(config)
    assert dict(rebuilt.config) == dict(debug_model.config)


def test_complex_rotary_processor_matches_diffusers():
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    from psi_gym.world_model.attention import RotaryComplexWanAttnProcessor

    model = make_debug_model(moving=True)
    assert isinstance(model.transformer.blocks[0].attn1.processor, RotaryComplexWanAttnProcessor)
    frames, state, _, embedding = random_inputs(model, batch=2)
    world = model.initial_state(frames[:, 0], state)
    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    sigma = torch.rand(2, generator=generator)
    scene = model.frames_to_model(world.scene_frame)
    with torch.no_grad():
        fast = model(noisy, sigma, scene, world, embedding)
        for block in model.transformer.blocks:
            block.attn1.set_processor(WanAttnProcessor())
        reference = model(noisy, sigma, scene, world, embedding)
    assert fast.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)

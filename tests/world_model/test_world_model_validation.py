import numpy as np
import pytest
import torch

from psi_gym.world_model.world_state import WorldState

from .conftest import random_inputs


@pytest.fixture
def inputs(debug_model):
    return random_inputs(debug_model, batch=2)


def test_wrong_action_dim(debug_model, inputs):
    frames, state, action, embedding = inputs
    with pytest.raises(ValueError, match=r"action must be \(2, 22\) float, got shape \(2, 21\)"):
        debug_model.predict(frames, state, action[:, :21], embedding)


def test_nan_action(debug_model, inputs):
    frames, state, action, embedding = inputs
    action = action.copy()
    action[0, 3] = np.nan
    with pytest.raises(ValueError, match="action contains NaN"):
        debug_model.predict(frames, state, action, embedding)


def test_nan_state(debug_model, inputs):
    frames, state, action, embedding = inputs
    state = state.copy()
    state[1, 0] = np.inf
    with pytest.raises(ValueError, match="context_state contains NaN or inf"):
        debug_model.predict(frames, state, action, embedding)


def test_integer_action_rejected(debug_model, inputs):
    frames, state, action, embedding = inputs
    with pytest.raises(ValueError, match="dtype int64"):
        debug_model.predict(frames, state, action.astype(np.int64), embedding)


def test_wrong_frame_dtype(debug_model, inputs):
    frames, state, action, embedding = inputs
    with pytest.raises(ValueError, match=r"context_frames must be \(B, K, 32, 32, 3\) uint8, got dtype float32"):
        debug_model.predict(frames.astype(np.float32), state, action, embedding)


@pytest.mark.parametrize("bad_shape", [(2, 1, 16, 16, 3), (2, 1, 3, 32, 32), (2, 32, 32, 3), (2, 0, 32, 32, 3)])
def test_wrong_frame_shape(debug_model, inputs, bad_shape):
    _, state, action, embedding = inputs
    frames = np.zeros(bad_shape, np.uint8)
    with pytest.raises(ValueError, match=r"context_frames must be \(B, K, 32, 32, 3\) uint8, got shape"):
        debug_model.predict(frames, state, action, embedding)


def test_initial_state_takes_one_frame_per_row(debug_model, inputs):
    frames, state, _, _ = inputs
    with pytest.raises(ValueError, match=r"frames must be \(B, 32, 32, 3\) uint8, got shape \(2, 1, 32, 32, 3\)"):
        debug_model.initial_state(frames, state)
    with pytest.raises(ValueError, match=r"joint_state must be \(2, 22\) float"):
        debug_model.initial_state(frames[:, 0], state[:, :3])


def test_batch_mismatch(debug_model, inputs):
    frames, state, action, embedding = inputs
    with pytest.raises(ValueError, match=r"context_state must be \(2, 22\)"):
        debug_model.predict(frames, state[:1], action, embedding)


def test_world_state_must_match_the_batch(debug_model, inputs):
    frames, state, action, embedding = inputs
    world = debug_model.initial_state(frames[:, 0], state)
    with pytest.raises(ValueError, match="world_state holds 1 rows, the batch has 2"):
        debug_model.predict(frames, state, action, embedding, world_state=world.select([0]))
    with pytest.raises(TypeError, match="world_state must be the WorldState"):
        debug_model.predict(frames, state, action, embedding, world_state={"joint_state": torch.zeros(2, 22)})
    assert isinstance(world, WorldState)


def test_instruction_count_mismatch(debug_model, inputs):
    frames, state, action, _ = inputs
    with pytest.raises(ValueError, match="instruction must hold 2 strings"):
        debug_model.predict(frames, state, action, ["lift the apple"])


def test_instruction_embedding_shape(debug_model, inputs):
    frames, state, action, embedding = inputs
    with pytest.raises(ValueError, match=r"instruction embedding must be \(2, 384\)"):
        debug_model.predict(frames, state, action, embedding[:, :100])


def test_frames_not_an_array(debug_model, inputs):
    _, state, action, embedding = inputs
    with pytest.raises(ValueError, match="context_frames must be a numpy array or torch tensor"):
        debug_model.predict([[0]], state, action, embedding)


def test_bad_steps_and_output_type(debug_model, inputs):
    frames, state, action, embedding = inputs
    with pytest.raises(ValueError, match="output_type"):
        debug_model.predict(frames, state, action, embedding, output_type="pil")
    with pytest.raises(ValueError, match="num_inference_steps"):
        debug_model.predict(frames, state, action, embedding, num_inference_steps=-1)


def test_torch_uint8_required(debug_model, inputs):
    frames, state, action, embedding = inputs
    with pytest.raises(ValueError, match="got dtype torch.float32"):
        debug_model.predict(torch.from_numpy(frames).float(), state, action, embedding)


def test_a_scene_without_the_object_is_refused():
    from psi_gym.world_model.world_state import object_descriptor

    with pytest.raises(ValueError, match="object_kind and object_size"):
        object_descriptor({"task": "lift_apple"})
    with pytest.raises(ValueError, match="unknown object kind 'pear'"):
        object_descriptor({"object_kind": "pear", "object_size": [0.03]})


def test_only_the_psi_gym_robot():
    from psi_gym.world_model.config import debug_config
    from psi_gym.world_model.model import WorldModel

    with pytest.raises(ValueError, match="state_dim and action_dim must be 22"):
        WorldModel.from_model_config(debug_config(state_dim=7))
    with pytest.raises(ValueError, match="patch_size"):
        WorldModel.from_model_config(debug_config(image_size=36))

import numpy as np
import pytest
import torch

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
    with pytest.raises(ValueError, match=r"context_frames must be \(B, 2, 32, 32, 3\) uint8, got dtype float32"):
        debug_model.predict(frames.astype(np.float32), state, action, embedding)


@pytest.mark.parametrize("bad_shape", [(2, 1, 32, 32, 3), (2, 2, 16, 16, 3), (2, 2, 3, 32, 32), (2, 32, 32, 3)])
def test_wrong_frame_shape(debug_model, inputs, bad_shape):
    _, state, action, embedding = inputs
    frames = np.zeros(bad_shape, np.uint8)
    with pytest.raises(ValueError, match="context_frames must be"):
        debug_model.predict(frames, state, action, embedding)


def test_batch_mismatch(debug_model, inputs):
    frames, state, action, embedding = inputs
    with pytest.raises(ValueError, match=r"context_state must be \(2, 22\)"):
        debug_model.predict(frames, state[:1], action, embedding)


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
    with pytest.raises(ValueError, match="numpy array or torch tensor"):
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

"""Fixtures for world-model tests: a debug-size model and a few synthetic episodes (CPU, fast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psi_gym.world_model.config import debug_config
from psi_gym.world_model.model import WorldModel
from psi_gym.world_model.synthetic import make_synthetic_episodes

IMAGE_SIZE = 32


def make_debug_model(seed: int = 0, **changes) -> WorldModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WorldModel.from_model_config(debug_config(image_size=IMAGE_SIZE, **changes))
    return model.eval()


def random_inputs(model: WorldModel, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    size, k = model.config.image_size, model.config.num_context_frames
    frames = rng.integers(0, 256, (batch, k, size, size, 3), dtype=np.uint8)
    state = rng.uniform(-1, 1, (batch, model.config.state_dim)).astype(np.float32)
    action = rng.uniform(-1, 1, (batch, model.config.action_dim)).astype(np.float32)
    embedding = torch.from_numpy(rng.normal(size=(batch, model.config.instruction_dim)).astype(np.float32))
    return frames, state, action, embedding


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Tiny models gain nothing from a second thread, and on a shared 2-core machine OpenMP's
    # barrier waits make every op cost a scheduler slice. Restored so other folders are unaffected.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def debug_model() -> WorldModel:
    return make_debug_model()


@pytest.fixture(scope="session")
def synthetic_episodes():
    return make_synthetic_episodes(6, seed=0, num_steps=8, image_size=IMAGE_SIZE)

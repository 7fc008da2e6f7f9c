"""Fixtures for env tests: a tiny world model and estimator on disk, one torch thread."""

from __future__ import annotations

import pytest
import torch

from .helpers import action_penalty, save_tiny_estimator, save_tiny_world_model


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    # Tiny models: threads only add synchronisation, and the CPUs are shared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def world_model_path(tmp_path_factory):
    return save_tiny_world_model(tmp_path_factory.mktemp("w0-tiny"))


@pytest.fixture(scope="session")
def estimator_path(tmp_path_factory):
    return save_tiny_estimator(tmp_path_factory.mktemp("estimator-tiny"))


@pytest.fixture
def env_kwargs(world_model_path):
    """Keyword arguments of a fast env: tiny world model, a reward function (no estimator)."""
    return {"world_model": str(world_model_path), "reward_model": action_penalty}

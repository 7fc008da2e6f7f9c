"""Fixtures for agent tests: one torch thread, tiny envs (untrained debug W0, random estimator)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_env_kwargs():
    """A fast W0 env: an untrained debug-size world model, the random estimator, short episodes."""
    return {"world_model": "random:debug", "estimator": "random"}

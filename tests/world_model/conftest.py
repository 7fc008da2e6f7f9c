"""Fixtures for world-model tests: a debug-size model and a few tiny real sim episodes (CPU, fast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psi_gym.data.episode import Episode
from psi_gym.world_model.config import debug_config
from psi_gym.world_model.model import WorldModel

IMAGE_SIZE = 32


def make_debug_model(seed: int = 0, moving: bool = False, **changes) -> WorldModel:
    """A debug-size W0. Fresh, it says "nothing moves" (the renderer's output projection and the
    dynamics' last layer start at zero); ``moving`` gives both small random weights, so that its
    frames depend on the sampling noise and its states on the action."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WorldModel.from_model_config(debug_config(image_size=IMAGE_SIZE, **changes))
        if moving:
            with torch.no_grad():
                torch.nn.init.normal_(model.transformer.proj_out.weight, std=0.05)
                torch.nn.init.normal_(model.dynamics.out.weight, std=0.05)
    return model.eval()


def random_inputs(model: WorldModel, batch: int, seed: int = 0, context: int = 1):
    """Random predict inputs: frames (B, K, H, W, 3) uint8, joints and targets inside the robot's
    joint ranges, instruction embeddings (B, 384)."""
    from psi_gym.sim.hands import hand_spec

    rng = np.random.default_rng(seed)
    size = model.image_size
    ranges = hand_spec("robot").joint_ranges().astype(np.float32)
    frames = rng.integers(0, 256, (batch, context, size, size, 3), dtype=np.uint8)
    state = rng.uniform(ranges[:, 0], ranges[:, 1], (batch, 22)).astype(np.float32)
    action = rng.uniform(ranges[:, 0], ranges[:, 1], (batch, 22)).astype(np.float32)
    embedding = torch.from_numpy(rng.normal(size=(batch, model.config.instruction_dim)).astype(np.float32))
    return frames, state, action, embedding


def make_episodes(count: int, image_size: int = IMAGE_SIZE, seed: int = 0) -> list[Episode]:
    """``count`` robot rollouts from the ground-truth simulator (tasks in turn, ~0.3 s each)."""
    from psi_gym.retarget.robot_rollouts import make_rollout

    return [make_rollout(seed, index, image_size=image_size) for index in range(count)]


def trim(episode: Episode, steps: int) -> Episode:
    """The first ``steps`` steps of ``episode``."""
    return episode.replace(frames=episode.frames[: steps + 1], state=episode.state[: steps + 1],
                           action=episode.action[:steps], object_pose=episode.object_pose[: steps + 1]).validate()


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
def sim_episodes() -> list[Episode]:
    """Six real robot rollouts at 32 px (two per task: apple, can, box), 32 steps each."""
    return make_episodes(6)


@pytest.fixture
def no_cpp_compiler(monkeypatch):
    """A machine where torch.compile finds no C++ compiler (and no GPU)."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with inductor_config.patch({"cpp.cxx": (None, "psi-gym-no-such-compiler")}):
        yield

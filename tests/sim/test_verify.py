"""`verify` is the simulator's own verdict: it agrees with the sim on the shipped demos' raw replays."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from psi_gym.sim.hands import hand_spec, residual_scale
from psi_gym.sim.scene import SceneParams
from psi_gym.sim.tasks import get_task
from psi_gym.sim.verify import Verdict, horizon_targets, replay_verdict, verify
from psi_gym.sim.world import get_world

EPISODE_SLACK = 8  # PsiW0-Retarget-v0's default: the episode lasts H = T + 8 steps


@pytest.fixture(scope="module")
def shipped_demos():
    import psi_gym
    from psi_gym.data.lerobot import EpisodeDataset

    return list(EpisodeDataset(Path(psi_gym.__file__).parent / "assets" / "demos-default"))


def _sim_success(scene: SceneParams, start: np.ndarray, targets: np.ndarray) -> bool:
    """The simulator stepped by hand, judged by the task on the final object pose."""
    world = get_world("robot", scene.object_kind)
    world.reset(scene, start)
    for target in targets:
        world.step(target)
    return get_task(scene.task).is_success(scene, world.object_pose())


def test_verify_agrees_with_the_sim_on_the_shipped_raw_replays(shipped_demos):
    assert len(shipped_demos) == 48
    recorded, horizon = [], []
    for episode in shipped_demos:
        # 1. the shipped robot episode: action = the raw retarget, success = the sim's verdict then
        verdict = verify(episode)
        assert isinstance(verdict, Verdict) and verdict.num_steps == episode.num_steps
        assert verdict.success == episode.success, episode.parent
        recorded.append(verdict.success)
        # 2. the raw retarget over the env's horizon: targets clip(ref[min(t+1, T)]) for t < H
        reference = np.asarray(episode.metadata["reference"], np.float32)
        steps = len(reference) - 1 + EPISODE_SLACK
        targets = horizon_targets(reference, num_steps=steps)
        raw = SimpleNamespace(scene=episode.scene, state=episode.state[:1], action=targets, embodiment="robot")
        verdict = verify(raw)
        assert verdict.success == _sim_success(SceneParams.from_dict(episode.scene), episode.state[0], targets)
        np.testing.assert_array_equal(verdict.object_pose, verdict.recording.object_pose[-1])
        horizon.append(verdict.success)
    # the embodiment gap: the raw retarget mostly fails, but not always
    assert 0 < sum(recorded) < 24 and 0 < sum(horizon) < 24


def test_horizon_targets_follow_the_env_rule(shipped_demos):
    spec = hand_spec("robot")
    ranges = spec.joint_ranges().astype(np.float32)
    reference = np.asarray(shipped_demos[0].metadata["reference"], np.float32)
    T = len(reference) - 1
    raw = horizon_targets(reference)
    np.testing.assert_array_equal(raw, np.clip(reference[1:], ranges[:, 0], ranges[:, 1]))
    actions = np.random.default_rng(0).uniform(-1.5, 1.5, (T + 3, spec.num_joints)).astype(np.float32)
    targets = horizon_targets(reference, actions, gain=0.5)
    assert targets.shape == (T + 3, 22) and targets.dtype == np.float32
    expected = np.clip(reference[np.minimum(np.arange(T + 3) + 1, T)] + 0.5 * residual_scale(spec) * np.clip(actions, -1, 1),
                       ranges[:, 0], ranges[:, 1])
    np.testing.assert_allclose(targets, expected, atol=1e-6)


def test_replay_verdict_checks_its_inputs(shipped_demos):
    episode = shipped_demos[0]
    with pytest.raises(ValueError, match="joint_targets"):
        replay_verdict(episode.scene, episode.state[0], np.zeros((4, 21)))
    with pytest.raises(ValueError, match="NaN"):
        replay_verdict(episode.scene, episode.state[0], np.full((4, 22), np.nan))
    with pytest.raises(ValueError, match="start_qpos"):
        replay_verdict(episode.scene, episode.state[0][:5], np.zeros((4, 22)))
    with pytest.raises(ValueError, match="missing"):
        verify(SimpleNamespace(scene=episode.scene, state=None, action=episode.action))


def test_verdict_renders_on_request(shipped_demos):
    episode = shipped_demos[1]
    verdict = replay_verdict(episode.scene, episode.state[0], episode.action[:3], render=True)
    assert verdict.recording.frames.shape == (4, 64, 64, 3)
    assert set(verdict.to_dict()) == {"success", "object_pose", "num_steps", "unstable"}

"""Behaviour cloning: samples laid out as the env shows them, the loss falls, touch is masked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psi_gym.agents.behavior_cloning import (
    BCConfig,
    BCLossWeights,
    BCSamples,
    BCSource,
    bc_loss,
    human_demo_source,
    step_samples,
    train_behavior_cloning,
)
from psi_gym.agents.policy import PsiR2Policy, debug_policy_config
from psi_gym.sim.hands import hand_spec, residual_scale


def synthetic_samples(count: int = 32, seed: int = 0, human: bool = True) -> BCSamples:
    rng = np.random.default_rng(seed)
    agent_pos = rng.uniform(-0.1, 0.1, (count, 22)).astype(np.float32)
    action = np.repeat(np.tanh(8 * agent_pos[:, None, :10]), 2, axis=1)  # a function of the observation
    return BCSamples(
        pixels=rng.integers(0, 255, (count, 64, 64, 3), dtype=np.uint8),
        agent_pos=agent_pos,
        reference=rng.uniform(-0.1, 0.1, (count, 88)).astype(np.float32),
        instruction=rng.standard_normal((count, 384)).astype(np.float32),
        progress=rng.uniform(0, 1, (count, 1)).astype(np.float32),
        action=action.astype(np.float32),
        action_mask=np.ones((count, 2), bool),
        next_frame=rng.integers(0, 255, (count, 64, 64, 3), dtype=np.uint8),
        touch=(rng.random((count, 5)) < 0.3).astype(np.float32),
        touch_mask=np.full(count, human),
        kind=np.full(count, "human_demo" if human else "robot_rollout"),
    )


@pytest.mark.parametrize("architecture", ["wan", "cnn"])
def test_bc_loss_falls_on_a_fixed_batch(architecture):
    samples = synthetic_samples()
    config = BCConfig(policy=debug_policy_config(architecture=architecture), steps=150, batch_size=32,
                      learning_rate=3e-3, progress=False)
    policy, summary = train_behavior_cloning(samples, config)
    assert summary.final_loss["action"] < 0.5 * summary.first_loss["action"]
    assert summary.final_loss["loss"] < summary.first_loss["loss"]
    assert summary.samples == 32 and summary.human_samples == 32


def test_touch_is_masked_out_for_robot_data():
    torch.manual_seed(0)
    policy = PsiR2Policy.from_policy_config(debug_policy_config())
    robot = synthetic_samples(human=False)
    index = np.arange(8)
    loss, parts = bc_loss(policy, robot.batch(index), BCLossWeights(touch=1.0))
    robot.touch[:] = 1.0 - robot.touch  # a robot sample's touch label is never read
    loss2, parts2 = bc_loss(policy, robot.batch(index), BCLossWeights(touch=1.0))
    assert parts["touch"] == parts2["touch"] == 0.0 and loss.item() == pytest.approx(loss2.item())
    human = synthetic_samples(human=True)
    assert bc_loss(policy, human.batch(index), BCLossWeights(touch=1.0))[1]["touch"] > 0


def test_step_samples_follow_the_env_layout():
    spec = hand_spec("robot")
    T, H = 6, 9
    rng = np.random.default_rng(1)
    reference = rng.uniform(-0.05, 0.05, (T + 1, 22)).astype(np.float32)
    reference[:, 2] += 0.2  # wrist height inside its range
    residual = np.zeros((H, 22), np.float32)
    residual[:, 0] = 0.5  # wrist x +1.5 cm every step
    index = np.minimum(np.arange(H) + 1, T)
    targets = reference[index] + residual * residual_scale(spec)
    frames = rng.integers(0, 255, (H + 1, 64, 64, 3), dtype=np.uint8)
    touch = np.zeros((H + 1, 5), bool)
    touch[3:, 1] = True
    source = BCSource(frames, rng.uniform(-0.1, 0.1, (H + 1, 22)).astype(np.float32), targets, reference, "lift the apple",
                      H, touch, "human_demo", True)
    config = debug_policy_config(frame_stack=2, reference_horizon=3)
    samples = step_samples(source, config, np.ones(384, np.float32))
    assert len(samples) == H and samples.pixels.shape == (H, 64, 64, 6)
    np.testing.assert_array_equal(samples.pixels[0, ..., :3], frames[0])  # the first frame fills the stack
    np.testing.assert_array_equal(samples.pixels[4, ..., :3], frames[3])
    np.testing.assert_array_equal(samples.pixels[4, ..., 3:], frames[4])
    np.testing.assert_array_equal(samples.next_frame[4], frames[5])
    np.testing.assert_allclose(samples.action[:, 0, 0], 0.5, atol=1e-4)  # wrist x synergy
    np.testing.assert_allclose(samples.action[:, 0, 1:], 0.0, atol=1e-4)
    assert samples.action_mask[-1].tolist() == [True, False]  # past the episode's end
    np.testing.assert_allclose(samples.progress[:, 0], np.arange(H) / H)
    np.testing.assert_array_equal(samples.reference[0], np.clip(reference[[1, 2, 3]], *spec.joint_ranges().T.astype(np.float32)).reshape(-1))
    assert samples.touch[2, 1] == 1.0 and samples.touch[1, 1] == 0.0 and samples.touch_mask.all()


def test_human_demo_source_is_the_raw_retarget_with_touch():
    from psi_gym.retarget.human_demos import make_demo

    demo = make_demo("lift_can", seed=3, index=0)
    source = human_demo_source(demo, episode_slack=2)
    T = demo.num_steps
    assert source.horizon == T + 2 and source.joint_targets.shape == (T + 2, 22)
    assert source.frames.shape[0] == T + 3 and source.touch.shape == (T + 3, 5)
    samples = step_samples(source, debug_policy_config(), np.zeros(384, np.float32))
    np.testing.assert_allclose(samples.action, 0.0, atol=1e-5)  # the retarget itself: residual 0
    assert samples.touch_mask.all() and samples.touch.sum() > 0

import numpy as np

from psi_gym.retarget.human_demos import make_demo
from psi_gym.sim.tasks import TASKS

FRESH_SEED = 918273  # not used while tuning the demonstrator


def test_human_demos_succeed_on_fresh_seeds():
    successes = [make_demo(task, FRESH_SEED, i).success for task in sorted(TASKS) for i in range(8)]
    assert np.mean(successes) >= 0.9, successes


def test_demo_records_every_modality():
    demo = make_demo("lift_apple", 3, 0)
    steps = demo.num_steps
    assert demo.frames.shape == (steps + 1, 64, 64, 3) and demo.frames.dtype == np.uint8
    assert demo.keypoints.shape == (steps + 1, 21, 3)
    assert demo.wrist_pose.shape == (steps + 1, 7) and demo.tactile.shape == (steps + 1, 5)
    assert demo.tactile.max() > 0.5, "fingertips never touched the apple"
    # MANO order: keypoint 0 is the wrist, which is where the wrist pose puts it.
    np.testing.assert_allclose(demo.keypoints[:, 0], demo.wrist_pose[:, :3], atol=1e-5)


def test_generalization_tier_only_changes_the_recorded_hand_pose():
    precise = make_demo("push_box", 4, 1, tier="precision")
    noisy = make_demo("push_box", 4, 1, tier="generalization")
    np.testing.assert_array_equal(precise.frames, noisy.frames)
    np.testing.assert_array_equal(precise.action, noisy.action)
    error = np.linalg.norm(noisy.keypoints - precise.keypoints, axis=-1)
    assert 0.002 < np.median(error) < 0.03

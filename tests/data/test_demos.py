import numpy as np

from psi_gym.data.demos import make_demo
from psi_gym.data.rollouts import PERTURBATIONS, make_rollout, perturb
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


def test_rollouts_fail_often_enough_and_are_labelled():
    episodes = [make_rollout(FRESH_SEED, i) for i in range(18)]
    failures = np.mean([not e.success for e in episodes])
    assert failures >= 0.3
    assert all(e.embodiment == "robot" and e.keypoints is None for e in episodes)
    np.testing.assert_array_equal(make_rollout(FRESH_SEED, 3).frames, episodes[3].frames)


def test_perturbations_change_the_plan():
    rng = np.random.default_rng(0)
    plan = np.cumsum(rng.normal(size=(32, 22)), axis=0)
    for name in PERTURBATIONS:
        assert not np.allclose(perturb(plan, name, np.random.default_rng(1), 22), plan), name

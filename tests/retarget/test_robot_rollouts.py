import numpy as np

from psi_gym.retarget.robot_rollouts import PERTURBATIONS, make_rollout, perturb

FRESH_SEED = 918273  # not used while tuning the demonstrator


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

import numpy as np
import pytest

from psi_gym.sim.residuals import NUM_PARAMETERS, random_theta, residual_actions


def test_zero_theta_replays_the_reference():
    assert np.all(residual_actions(np.zeros((3, NUM_PARAMETERS)), 40, 32) == 0)


def test_knots_interpolate_and_hold_past_the_demo():
    theta = np.zeros((3, NUM_PARAMETERS))
    theta[:, 0] = [0.0, 0.5, 1.0]  # wrist x
    theta[:, 7] = [1.0, 1.0, -1.0]  # index closure
    actions = residual_actions(theta, 40, 32)
    assert actions.shape == (40, 22)
    assert actions[0, 0] == 0 and actions[16, 0] == pytest.approx(0.5) and actions[32, 0] == pytest.approx(1.0)
    assert np.all(actions[32:, 0] == actions[32, 0])  # held past T
    index = slice(6 + 4, 6 + 8)
    assert actions[0, index].tolist() == [0.0, 1.0, 1.0, 1.0]  # swing 0, the three flexion joints close
    assert np.all(actions[:, 1:6] == 0)


def test_batched_equals_one_by_one_and_clips():
    theta = random_theta(np.random.default_rng(0), 1.5, batch=4)
    batched = residual_actions(theta, 20, 16)
    assert batched.shape == (4, 20, 22) and np.abs(batched).max() <= 1.0
    for row in range(4):
        np.testing.assert_array_equal(batched[row], residual_actions(theta[row], 20, 16))


@pytest.mark.parametrize("theta", [np.zeros((1, NUM_PARAMETERS)), np.zeros((3, 9)), np.full((3, NUM_PARAMETERS), np.nan)])
def test_bad_theta_is_refused(theta):
    with pytest.raises(ValueError, match="theta"):
        residual_actions(theta, 10, 8)

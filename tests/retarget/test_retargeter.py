import numpy as np
import pytest

from psi_gym.retarget.human_demos import make_demo
from psi_gym.retarget.pipeline import reference_from_demo, replay_reference, retarget_episode
from psi_gym.retarget.retargeter import Retargeter
from psi_gym.sim.scene import SceneParams
from psi_gym.sim.tasks import TASKS


def test_retargeting_is_deterministic():
    demo = make_demo("lift_can", 11, 0)
    first, second = reference_from_demo(demo), reference_from_demo(demo)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (demo.num_steps + 1, 22) and first.dtype == np.float32


def test_wrist_and_fingertips_follow_the_human():
    demo = make_demo("lift_apple", 12, 0)
    retargeter = Retargeter()
    reference = retargeter.retarget(demo.wrist_pose, demo.keypoints)
    # The robot's wrist yaw is the human's; its fingertips land near the human's (scale 1).
    np.testing.assert_allclose(reference[:, 3], demo.state[:, 3], atol=0.02)
    tips = retargeter.kinematics.fingertips(reference[20].astype(np.float64))
    human_tips = demo.keypoints[20][[4, 8, 12, 16]]
    assert np.median(np.linalg.norm(tips - human_tips, axis=1)) < 0.02


def test_raw_replay_shows_the_embodiment_gap():
    human, robot = [], []
    for task in sorted(TASKS):
        for i in range(10):
            demo = make_demo(task, 31337, i)
            replay = replay_reference(SceneParams.from_dict(demo.scene), reference_from_demo(demo), render=False)
            human.append(demo.success)
            robot.append(replay.success)
    assert np.mean(human) >= 0.9
    assert 0.1 <= np.mean(robot) <= 0.6, f"raw retarget success {np.mean(robot):.2f} outside the gap band"


def test_retarget_episode_is_a_robot_episode():
    episode = retarget_episode(make_demo("push_box", 5, 0))
    assert episode.embodiment == "robot" and episode.source == "retarget" and episode.tactile is None
    assert episode.frames.shape[0] == episode.num_steps + 1


def test_bad_inputs_are_refused():
    retargeter = Retargeter()
    with pytest.raises(ValueError, match="expected wrist_pose"):
        retargeter.retarget_frame(np.zeros(6), np.zeros((21, 3)))
    with pytest.raises(ValueError, match="NaN"):
        retargeter.retarget_frame(np.r_[0, 0, 0.2, 1, 0, 0, 0.0], np.full((21, 3), np.nan))

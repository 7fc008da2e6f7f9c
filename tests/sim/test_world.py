import numpy as np
import pytest

from psi_gym.sim.hands import HUMAN_HAND, ROBOT_HAND
from psi_gym.sim.tasks import TASKS, get_task
from psi_gym.sim.world import World, get_world, start_qpos


@pytest.mark.parametrize("hand", ["human", "robot"])
@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_scene_builds_and_renders(hand, task_name):
    task = get_task(task_name)
    world = get_world(hand, task.object_kind)
    scene = task.sample_scene(np.random.default_rng(0))
    world.reset(scene)
    frame = world.render()
    assert frame.dtype == np.uint8 and frame.shape == (64, 64, 3)
    assert frame.std() > 10, "frame looks blank"
    # The object's colour is visible: a saturated red/yellow/blue blob of a fair size.
    r, g, b = (frame[..., i].astype(int) for i in range(3))
    colour = {"apple": (r > 150) & (g < 80), "can": (r > 150) & (g > 120) & (b < 80), "box": (b > 150) & (r < 80)}[task.object_kind]
    assert colour.sum() > 30, f"object covers only {colour.sum()} pixels"


def test_image_size_is_configurable():
    world = World("robot", "apple", image_size=96)
    world.reset(get_task("lift_apple").sample_scene(np.random.default_rng(1)))
    assert world.render().shape == (96, 96, 3)


def test_hands_differ_in_kinematics():
    assert ROBOT_HAND.num_joints == 22 and len(ROBOT_HAND.finger_joint_names) >= 12
    assert HUMAN_HAND.num_joints == 26 and len(HUMAN_HAND.fingers) == 5
    assert ROBOT_HAND.length() > 1.15 * HUMAN_HAND.length()


def test_stepping_is_deterministic_and_checks_targets():
    task = get_task("push_box")
    scene = task.sample_scene(np.random.default_rng(2))
    world = get_world("robot", task.object_kind)
    target = start_qpos(world.spec, scene)
    target[0] += 0.05
    poses = []
    for _ in range(2):
        world.reset(scene)
        for _ in range(5):
            world.step(target)
        poses.append((world.joint_positions(), world.object_pose()))
    np.testing.assert_array_equal(poses[0][0], poses[1][0])
    np.testing.assert_array_equal(poses[0][1], poses[1][1])
    with pytest.raises(ValueError, match="shape"):
        world.step(target[:5])
    with pytest.raises(ValueError, match="NaN"):
        world.step(np.full_like(target, np.nan))


def test_unknown_task_and_hand_are_refused():
    with pytest.raises(ValueError, match="unknown task"):
        get_task("juggle")
    with pytest.raises(ValueError, match="unknown hand"):
        World("octopus", "apple")


def test_success_is_judged_on_the_final_pose_inside_the_workspace():
    from psi_gym.sim.tasks import LIFT_HEIGHT, PUSH_TOLERANCE, in_workspace

    lift = get_task("lift_apple")
    scene = lift.sample_scene(np.random.default_rng(3))
    x, y = scene.object_xy
    rest = scene.object_rest_z
    quat = [1.0, 0.0, 0.0, 0.0]
    assert not lift.is_success(scene, np.array([x, y, rest, *quat]))
    assert lift.is_success(scene, np.array([x, y, rest + LIFT_HEIGHT + 0.01, *quat]))
    assert lift.is_success(scene, np.array([x, y, rest + LIFT_HEIGHT + 0.01]))  # a position alone works too
    # flung out of the workspace: an apple at z = 4.6 m was once counted as lifted
    assert not lift.is_success(scene, np.array([x, y, 4.6, *quat]))
    assert not lift.is_success(scene, np.array([0.5, y, rest + 0.1, *quat]))
    assert not lift.is_success(scene, np.array([np.nan, y, rest + 0.1, *quat]))
    assert in_workspace([0.3, -0.3, 0.4]) and in_workspace([0.0, 0.0, -0.01]) and not in_workspace([0.0, 0.0, -0.02])

    push = get_task("push_box")
    scene = push.sample_scene(np.random.default_rng(4))
    mx, my = scene.mark_xy
    rest = scene.object_rest_z
    assert push.is_success(scene, np.array([mx + 0.5 * PUSH_TOLERANCE, my, rest, *quat]))
    assert not push.is_success(scene, np.array([mx + 1.5 * PUSH_TOLERANCE, my, rest, *quat]))  # slid past the mark
    assert not push.is_success(scene, np.array([mx, my, rest + 0.05, *quat]))  # held above it, not resting

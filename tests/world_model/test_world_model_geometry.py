"""The geometry a state-grounded W0 is built with, against MuJoCo: forward kinematics, the camera,
the object's surface; and the rotation maths and the `WorldState` container."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from psi_gym.sim.hands import hand_spec
from psi_gym.sim.kinematics import HandKinematics as SimHandKinematics
from psi_gym.world_model.dynamics import CONTACT_SHARED_FEATURES, POINT_FEATURES, StateDynamics, surface_distance
from psi_gym.world_model.hand_geometry import HAND_POINTS, Camera, HandKinematics
from psi_gym.world_model.world_state import (
    WorldState,
    matrix_to_quaternion,
    object_descriptor,
    orthonormalize,
    quaternion_to_matrix,
    rotation_exp,
)


def _random_joints(count: int, seed: int = 0) -> np.ndarray:
    ranges = hand_spec("robot").joint_ranges()
    return np.random.default_rng(seed).uniform(ranges[:, 0], ranges[:, 1], (count, len(ranges)))


def test_hand_kinematics_matches_mujoco_on_random_joints():
    sim = SimHandKinematics("robot")
    palm_geom = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_GEOM, "palm")
    q = _random_joints(16)
    points, palm = HandKinematics()(torch.tensor(q, dtype=torch.float64))
    assert points.shape == (16, len(HAND_POINTS), 3) and palm.shape == (16, 3, 3)
    for i, joints in enumerate(q):
        tips = sim.fingertips(joints)
        _, rotation = sim.palm_frame(joints)
        np.testing.assert_allclose(points[i, 4::4].numpy(), tips, atol=1e-9)  # each finger's tip
        np.testing.assert_allclose(palm[i].numpy(), rotation, atol=1e-9)
        np.testing.assert_allclose(points[i, 0].numpy(), sim.data.geom_xpos[palm_geom], atol=1e-9)  # palm centre
        for finger in sim.spec.fingers:
            for part in ("base", "mid", "dist"):
                body = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_BODY, f"{finger.name}_{part}")
                np.testing.assert_allclose(points[i, HAND_POINTS.index(f"{finger.name}_{part}")].numpy(),
                                           sim.data.xpos[body], atol=1e-9)


def test_hand_kinematics_is_differentiable():
    q = torch.tensor(_random_joints(2, seed=1), dtype=torch.float32, requires_grad=True)
    points, _ = HandKinematics()(q)
    points[:, 4].sum().backward()  # the thumb's tip moves with the wrist and the thumb's joints only
    assert q.grad[:, :10].abs().sum() > 0 and (q.grad[:, 10:] == 0).all()


@pytest.mark.parametrize("task", ["lift_apple", "lift_can", "push_box"])
def test_camera_projects_the_object_centre_onto_its_rendered_pixels(task):
    from psi_gym.sim.tasks import get_task
    from psi_gym.sim.world import World

    size = 64
    definition = get_task(task)
    for seed in range(3):
        scene = definition.sample_scene(np.random.default_rng(seed))
        world = World("robot", definition.object_kind, size)
        world.reset(scene)
        renderer = mujoco.Renderer(world.model, size, size)
        renderer.enable_segmentation_rendering()
        renderer.update_scene(world.data, camera=world.camera)
        ys, xs = np.nonzero(renderer.render()[..., 0] == world._object_geom)
        renderer.close()
        assert len(xs) > 50  # the object is in view
        centroid = np.array([xs.mean() + 0.5, ys.mean() + 0.5])  # pixel centres at +0.5, as Camera's
        pixel, depth = Camera(size)(torch.tensor(world.object_pose()[:3]))
        assert np.linalg.norm(pixel.numpy() - centroid) < 1.5, (task, seed, pixel, centroid)
        assert 0.2 < float(depth) < 2.0


def _descriptor(kind: str, size: list[float]) -> torch.Tensor:
    return torch.from_numpy(object_descriptor({"object_kind": kind, "object_size": size}))[None]


def test_surface_distance_of_each_object_kind():
    position = torch.tensor([[0.1, -0.05, 0.04]])
    eye = torch.eye(3)[None]

    def distance(kind, size, offsets, rotation=eye):
        points = position[:, None] + torch.tensor(offsets, dtype=torch.float32)[None]
        return surface_distance(points, position, rotation, _descriptor(kind, size))[0].numpy()

    # apple: a sphere of radius 3 cm
    np.testing.assert_allclose(distance("apple", [0.03], [[0, 0, 0], [0, 0, 0.05], [0.03, 0.04, 0]]),
                               [-0.03, 0.02, 0.02], atol=1e-6)
    # can of radius 2 cm, half length 5 cm, lying along x (its local z is the world's x)
    along_x = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])[None]  # columns: its axes
    np.testing.assert_allclose(distance("can", [0.02, 0.05], [[0, 0.05, 0], [0.04, 0, 0.03], [0, 0, 0],
                                                                [0.07, 0, 0]], along_x),
                               [0.03, 0.01, -0.02, 0.0], atol=1e-6)
    # box of half sides 4 x 2 x 1.5 cm, turned 90 degrees about z: its long side along the world's y
    turned = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])[None]
    np.testing.assert_allclose(distance("box", [0.04, 0.02, 0.015], [[0, 0.05, 0], [0.03, 0, 0], [0, 0, 0],
                                                                      [0.05, 0.08, 0], [0, 0, 0.025]], turned),
                               [0.01, 0.01, -0.015, 0.05, 0.01], atol=1e-6)


def test_quaternion_matrix_round_trip():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(256, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1  # w >= 0: the form matrix_to_quaternion returns
    q = np.concatenate([q, [[1, 0, 0, 0], [0.5 ** 0.5, 0.5 ** 0.5, 0, 0], [0.5 ** 0.5, 0, 0, -(0.5 ** 0.5)],
                            [0.01, 0.99995, 0, 0]]])
    matrix = quaternion_to_matrix(q)
    torch.testing.assert_close(matrix @ matrix.transpose(-1, -2), torch.eye(3).expand(len(q), 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(matrix_to_quaternion(matrix), torch.tensor(q, dtype=torch.float32), atol=1e-5, rtol=0)
    # MuJoCo's convention (w, x, y, z), not another one
    expected = np.zeros(9)
    mujoco.mju_quat2Mat(expected, q[0])
    np.testing.assert_allclose(matrix[0].numpy(), expected.reshape(3, 3), atol=1e-6)


def test_rotation_exp_and_orthonormalize():
    omega = torch.tensor([[0.0, 0.0, np.pi / 2], [1e-9, 0.0, 0.0]])
    rotation = rotation_exp(omega)
    torch.testing.assert_close(rotation[0], torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(rotation[1], torch.eye(3), atol=1e-6, rtol=0)
    six = torch.tensor([[2.0, 0.0, 0.0, 1.0, 3.0, 0.0]])
    torch.testing.assert_close(orthonormalize(six)[0], torch.eye(3), atol=1e-6, rtol=0)


def test_world_state_select_and_assign():
    state = WorldState.empty(4, 8)
    assert len(state) == 4 and state.scene_frame.shape == (4, 8, 8, 3)
    torch.testing.assert_close(state.object_rotation, torch.eye(3).expand(4, 3, 3))
    state.joint_state[:] = torch.arange(4.0)[:, None]
    state.scene_frame[:] = torch.arange(4, dtype=torch.uint8)[:, None, None, None]
    picked = state.select([2, 0])
    assert picked.joint_state[:, 0].tolist() == [2.0, 0.0] and picked.scene_frame[:, 0, 0, 0].tolist() == [2, 0]
    picked.joint_state += 10  # a copy: the state is untouched
    assert state.joint_state[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert state.select(slice(1, 3)).joint_state[:, 0].tolist() == [1.0, 2.0]
    other = WorldState.empty(2, 8)
    other.object_position[:] = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    other.object_descriptor[:, 0] = 1.0
    state.assign(np.array([3, 1]), other)
    assert state.object_position.tolist() == [[0, 0, 0], [4, 5, 6], [0, 0, 0], [1, 2, 3]]
    assert state.object_descriptor[:, 0].tolist() == [0, 1, 0, 1]
    assert state.joint_state[:, 0].tolist() == [0.0, 0.0, 2.0, 0.0]  # every field of the assigned rows
    clone = state.clone()
    clone.object_position += 1
    assert state.object_position[0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("contact_width", [0, 8])
def test_dynamics_features_are_finite_and_sized(contact_width):
    dynamics = StateDynamics(hidden_dim=16, num_layers=1, contact_width=contact_width)
    state = WorldState.empty(3, 8)
    state.joint_state[:] = torch.tensor(_random_joints(3), dtype=torch.float32)
    state.previous_joint_state[:] = state.joint_state
    state.object_position[:] = torch.tensor([0.0, 0.0, 0.03])
    state.object_descriptor[:] = _descriptor("box", [0.04, 0.02, 0.015])
    targets = torch.tensor(_random_joints(3, seed=2), dtype=torch.float32)
    features = dynamics.features(state, targets)
    per_point = CONTACT_SHARED_FEATURES + dynamics.num_points * POINT_FEATURES if contact_width else 0  # the encoder's input
    assert features.shape == (3, dynamics.flat_dim + per_point) and torch.isfinite(features).all()
    assert dynamics.trunk[0].in_features == dynamics.flat_dim + 2 * contact_width
    after = dynamics.step(state, targets)  # a fresh dynamics: nothing moves
    torch.testing.assert_close(after.joint_state, state.joint_state)
    torch.testing.assert_close(after.previous_joint_state, state.joint_state)


def test_the_contact_encoder_sees_the_hand_in_the_objects_frame():
    """The per-point block: each hand point relative to the object in the object's own axes (so a turned
    box gives the same numbers as a straight one with the hand turned with it), and its surface distance."""
    dynamics = StateDynamics(hidden_dim=16, num_layers=1, contact_width=8)
    state = WorldState.empty(2, 8)
    state.joint_state[:] = torch.tensor(_random_joints(2), dtype=torch.float32)
    state.previous_joint_state[:] = state.joint_state
    state.object_position[:] = torch.tensor([0.01, -0.02, 0.03])
    state.object_descriptor[:] = _descriptor("box", [0.04, 0.02, 0.015])
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about z
    state.object_rotation[1] = quarter
    state.previous_object_rotation[1] = quarter
    targets = torch.tensor(_random_joints(2, seed=2), dtype=torch.float32)
    per_point = dynamics.features(state, targets)[:, dynamics.flat_dim + CONTACT_SHARED_FEATURES:]
    per_point = per_point.unflatten(1, (dynamics.num_points, -1))
    assert per_point.shape[-1] == POINT_FEATURES
    points = dynamics.target_geometry(state.joint_state)[0]  # the hand's 29 points at the current joints
    relative = (points - state.object_position[:, None]) * 20.0  # units of 5 cm
    torch.testing.assert_close(per_point[0, :, :3], relative[0])  # an unturned box: world axes
    # turned 90 degrees about z: the box's x axis is the world's y, its y axis the world's -x
    torch.testing.assert_close(per_point[1, :, 0], relative[1, :, 1])
    torch.testing.assert_close(per_point[1, :, 1], -relative[1, :, 0])
    torch.testing.assert_close(per_point[1, :, 2], relative[1, :, 2])
    distance = surface_distance(points, state.object_position, state.object_rotation, state.object_descriptor) * 20.0
    torch.testing.assert_close(per_point[..., 9], distance)


def test_segment_field_is_the_soft_union_of_capsules():
    from psi_gym.world_model.sketch import segment_field

    generator = torch.Generator().manual_seed(0)
    start, end = torch.rand(3, 5, 2, generator=generator) * 16, torch.rand(3, 5, 2, generator=generator) * 16
    end[0, 0] = start[0, 0]  # a point
    radius = torch.rand(3, 5, generator=generator) * 3 + 0.5
    centres = torch.arange(16.0) + 0.5
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([xs, ys], -1).reshape(-1, 2)
    expected = torch.zeros(3, grid.shape[0])
    for b in range(3):
        for s in range(5):
            a, d = start[b, s].double(), (end[b, s] - start[b, s]).double()
            t = (((grid.double() - a) @ d) / (d @ d).clamp_min(1e-6)).clamp(0, 1)
            distance = (grid.double() - (a + t[:, None] * d)).norm(dim=-1)
            expected[b] = torch.maximum(expected[b], torch.sigmoid((radius[b, s] - distance) * 2.0).float())
    torch.testing.assert_close(segment_field(start, end, radius, grid), expected, atol=1e-5, rtol=0)

"""A scripted demonstrator: plans joint targets for a task from the scene, for either hand.

With the human hand it is the "human" of the demonstrations; with the robot hand it stands in
for teleoperated robot data (the successes W0 is trained on besides the failures).

The plan is open loop from the scene's initial state (a person looks once, then moves), built
from a few key poses: wrist pose (x, y, z, yaw) and a finger posture found by fingertip IK
around the object, joined by minimum-jerk interpolation. Small random variations of timing,
offsets and grip make each demonstration different, as a person's would be.

Hand-frame notation: u = (cos psi, sin psi, 0) the finger direction after the wrist yaw psi,
v = (-sin psi, cos psi, 0) the thumb side, z up. c is the object's centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psi_gym.sim.hands import HandSpec
from psi_gym.sim.kinematics import HandKinematics, get_kinematics
from psi_gym.sim.scene import SceneParams
from psi_gym.sim.tasks import get_task
from psi_gym.sim.world import start_qpos


@dataclass
class KeyPose:
    step: int  # the control step at which this pose is reached
    wrist: np.ndarray  # x, y, z, yaw
    fingers: np.ndarray  # finger joints (4 per finger)


def plan_task(scene: SceneParams, hand: str, rng: np.random.Generator) -> np.ndarray:
    """Joint targets (T, J) that perform `scene.task` with `hand`."""
    task = get_task(scene.task)
    kinematics = get_kinematics(hand)
    if task.name.startswith("lift"):
        keys = _lift_keyposes(scene, kinematics, rng)
    elif task.name.startswith("push"):
        keys = _push_keyposes(scene, kinematics, rng)
    else:
        raise ValueError(f"no scripted plan for task {task.name!r}")
    return _interpolate(keys, task.num_steps, kinematics.spec)


def _start_pose(scene: SceneParams, spec: HandSpec) -> KeyPose:
    qpos = start_qpos(spec, scene)
    return KeyPose(0, qpos[:4], qpos[6:])


def _axes(psi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = np.array([np.cos(psi), np.sin(psi), 0.0])
    v = np.array([-np.sin(psi), np.cos(psi), 0.0])
    return u, v, np.array([0.0, 0.0, 1.0])


def _finger_posture(kinematics: HandKinematics, wrist: np.ndarray, goals: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
    """Finger joints putting the fingertips at `goals` with the wrist at `wrist` (x, y, z, yaw)."""
    q = np.zeros(kinematics.spec.num_joints)
    q[:4] = wrist
    if init is not None:
        q[6:] = init
    else:
        # Start half-flexed so the IK bends fingers the natural way (towards the palm).
        q[6:] = np.tile([0.0, 0.5, 0.5, 0.3], len(kinematics.spec.fingers))
    return kinematics.solve_fingertips(q, goals, iterations=60)[6:]


def _lift_keyposes(scene: SceneParams, kinematics: HandKinematics, rng: np.random.Generator) -> list[KeyPose]:
    spec = kinematics.spec
    # The can lies on its side: fingers and thumb wrap across its axis, so the wrist yaw
    # follows the can's (the can's axis is along y at yaw 0).
    psi = float(rng.uniform(-0.3, 0.3)) if scene.object_kind == "apple" else scene.object_yaw + float(rng.normal(0.0, 0.05))
    u, v, z = _axes(psi)
    c = np.array([*scene.object_xy, scene.object_rest_z])
    radius = scene.object_size[0]
    top = c[2] + radius
    grip_z = c[2] - 0.25 * radius  # just under the equator
    palm_half_thickness = spec.palm_half_size[2]
    jitter = rng.normal(0.0, 0.003, size=3)
    # Wrist so that the object's centre sits under the palm, just behind the knuckles (the
    # fingers' bases), whatever the hand's size.
    knuckles = min(f.base[0] for f in spec.fingers if not f.is_thumb)
    grasp_x = knuckles - radius - 0.005
    wrist_xy = c[:2] - grasp_x * u[:2] + jitter[:2]
    wrist_grasp_z = top + palm_half_thickness + 0.006 + abs(jitter[2])

    def goals(extra: float, height: float) -> np.ndarray:
        depth = radius + extra  # >0 outside the surface, <0 pressed in
        out = []
        fingers = [f for f in spec.fingers if not f.is_thumb]
        # Fingers stay near their own knuckles' lateral offsets, within the object's width.
        half_width = 0.45 * radius if scene.object_kind == "apple" else scene.object_size[1] - 0.012
        spread = np.clip([f.base[1] for f in fingers], -half_width, half_width)
        for finger in spec.fingers:
            if finger.is_thumb:
                thumb_y = 0.0 if scene.object_kind == "apple" else 0.5 * np.clip(finger.base[1], -half_width, half_width)
                out.append(c + (-depth) * u + thumb_y * v + height * z + (grip_z - c[2]) * z)
            else:
                s = spread[fingers.index(finger)]
                # A sphere's section narrows off-centre; a lying can's does not.
                along = np.sqrt(max(depth * depth - s * s, 1e-6)) if scene.object_kind == "apple" else depth
                out.append(c + along * u + s * v + height * z + (grip_z - c[2]) * z)
        out = np.asarray(out)
        return out

    wrist_grasp = np.array([*wrist_xy, wrist_grasp_z, psi])
    squeeze = rng.uniform(0.018, 0.024)
    pre = _finger_posture(kinematics, wrist_grasp, goals(0.030, 0.010))
    grasp = _finger_posture(kinematics, wrist_grasp, goals(-squeeze, 0.0), init=pre)
    lift = rng.uniform(0.11, 0.13)
    t_approach = 8 + int(rng.integers(-1, 2))
    t_descend = t_approach + 5
    t_close = t_descend + 5
    t_lift = t_close + 9
    above = wrist_grasp + np.array([0.0, 0.0, 0.11, 0.0])
    start = _start_pose(scene, spec)
    # Rise first, then travel over the object: the hanging thumb must clear it.
    rise = KeyPose(3, np.array([*start.wrist[:2], max(start.wrist[2], above[2]), start.wrist[3]]), start.fingers)
    return [
        start,
        rise,
        KeyPose(t_approach, above, pre),
        KeyPose(t_descend, wrist_grasp, pre),
        KeyPose(t_close, wrist_grasp, grasp),
        KeyPose(t_lift, wrist_grasp + np.array([0.0, 0.0, lift, 0.0]), grasp),
    ]


def _push_keyposes(scene: SceneParams, kinematics: HandKinematics, rng: np.random.Generator) -> list[KeyPose]:
    spec = kinematics.spec
    box = np.array([*scene.object_xy, scene.object_rest_z])
    mark = np.array([*scene.mark_xy, 0.0])
    direction = mark[:2] - box[:2]
    psi = float(np.arctan2(direction[1], direction[0]))
    distance = float(np.linalg.norm(direction))
    u, v, z = _axes(psi)
    # Paddle posture: fingers bent down at the knuckle into a wall, thumb tucked under the palm.
    paddle = []
    for finger in spec.fingers:
        paddle.append([0.0, 1.0, 0.6, 0.6] if finger.is_thumb else [0.0, 1.45, 0.12, 0.05])
    paddle = np.asarray(paddle, dtype=np.float64).ravel()
    # Geometry of the paddle in the hand frame (wrist at the origin, yaw 0).
    q = np.zeros(spec.num_joints)
    q[6:] = paddle
    tips = kinematics.fingertips(q)
    fingers = [i for i, f in enumerate(spec.fingers) if not f.is_thumb]
    radius = max(f.radius for f in spec.fingers)
    wall_x = float(tips[fingers, 0].max()) + radius  # front face of the bent fingers
    wall_y = float(tips[fingers, 1].mean())
    lowest = float(min(tips[:, 2].min(), -spec.palm_half_size[2])) - radius
    wrist_z = -lowest + 0.008 + rng.uniform(0.0, 0.004)
    # Half extent of the (yawed) box along the push direction.
    hx, hy = scene.object_size[0], scene.object_size[1]
    delta = scene.object_yaw - psi
    half = abs(hx * np.cos(delta)) + abs(hy * np.sin(delta))
    lateral = rng.normal(0.0, 0.003)

    def wrist_for_wall(along: float) -> np.ndarray:
        """Wrist pose whose finger wall touches position `along` on the line box -> mark."""
        point = box[:2] + along * u[:2] + lateral * v[:2]
        xy = point - wall_x * u[:2] - wall_y * v[:2]
        return np.array([*xy, wrist_z, psi])

    start_wall = wrist_for_wall(-half - 0.03)
    end_wall = wrist_for_wall(distance - half + rng.uniform(0.002, 0.008))
    t_approach = 8 + int(rng.integers(-1, 2))
    t_descend = t_approach + 4
    t_push = t_descend + 14
    return [
        _start_pose(scene, spec),
        KeyPose(t_approach, start_wall + np.array([0.0, 0.0, 0.07, 0.0]), paddle),
        KeyPose(t_descend, start_wall, paddle),
        KeyPose(t_push, end_wall, paddle),
        KeyPose(min(t_push + 4, get_task(scene.task).num_steps), end_wall + np.array([-0.03 * u[0], -0.03 * u[1], 0.08, 0.0]), paddle),
    ]


def _interpolate(keys: list[KeyPose], num_steps: int, spec: HandSpec) -> np.ndarray:
    """Joint targets for steps 1..num_steps (the target applied at step t is the pose reached at
    t + 1), minimum-jerk between key poses, holding the last one."""
    targets = np.zeros((num_steps, spec.num_joints))
    for t in range(num_steps):
        time = t + 1
        for a, b in zip(keys[:-1], keys[1:]):
            if a.step <= time <= b.step:
                s = (time - a.step) / max(1, b.step - a.step)
                break
        else:
            a = b = keys[-1]
            s = 1.0
        s = s * s * s * (10 - 15 * s + 6 * s * s)  # minimum jerk
        wrist = a.wrist + s * (b.wrist - a.wrist)
        fingers = a.fingers + s * (b.fingers - a.fingers)
        targets[t, :4] = wrist
        targets[t, 4:6] = 0.0  # pitch and roll stay level
        targets[t, 6:] = fingers
    return targets

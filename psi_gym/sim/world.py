"""`World`: one compiled ground-truth scene (a hand and an object kind), stepped and rendered.

The world is the oracle of the project: demos are made in it, robot rollouts for world-model
training are collected in it, and trajectories refined inside the world model are replayed in
it to count real successes.
"""

from __future__ import annotations

import mujoco
import numpy as np

from psi_gym.sim.hands import MANO_KEYPOINTS, WRIST_JOINTS, HandSpec, hand_spec
from psi_gym.sim.scene import SceneParams, scene_xml
from psi_gym.sim.tasks import get_task

CONTROL_DT = 0.1  # s per control step (10 Hz)
SETTLE_STEPS = 25  # physics steps after reset so that the object rests on the table


class SimulationUnstable(RuntimeError):
    """MuJoCo hit NaN/inf or huge accelerations and reset itself: the run is not usable."""


_INSTABILITY_WARNINGS = [int(w) for w in (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQACC)]


class World:
    """A MuJoCo scene with one hand (`"robot"` or `"human"`) and one object kind.

    Joint targets (actions) and joint positions (state) follow `HandSpec.joint_names`: the six
    wrist joints (x, y, z in m; yaw, pitch, roll in rad) then four joints per finger.
    """

    def __init__(self, hand: str = "robot", object_kind: str = "apple", image_size: int = 64, camera: str = "front"):
        self.spec = hand_spec(hand)
        self.hand = hand
        self.object_kind = object_kind
        self.image_size = int(image_size)
        self.camera = camera
        self.model = mujoco.MjModel.from_xml_string(scene_xml(self.spec, object_kind, self.image_size))
        self.data = mujoco.MjData(self.model)
        self.substeps = int(round(CONTROL_DT / self.model.opt.timestep))
        self._renderer: mujoco.Renderer | None = None
        self.scene: SceneParams | None = None

        model = self.model
        joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in self.spec.joint_names]
        self._hand_qpos = np.array([model.jnt_qposadr[j] for j in joint_ids])
        self._hand_qvel = np.array([model.jnt_dofadr[j] for j in joint_ids])
        self.joint_ranges = model.jnt_range[joint_ids].copy()
        object_joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "object")
        self._object_qpos = int(model.jnt_qposadr[object_joint])
        self._object_qvel = int(model.jnt_dofadr[object_joint])
        self._object_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "object")
        self._object_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "object")
        self._mark_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "mark")
        self._palm_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "palm")
        self._tip_sites = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, n) for n in self.spec.fingertip_sites]
        self._keypoint_sites = (
            [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, n) for n in MANO_KEYPOINTS] if self.spec.keypoint_sites else []
        )
        self._touch_adr = [int(model.sensor_adr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, f"touch_{f.name}")]) for f in self.spec.fingers]
        self._hand_geoms = {
            g for g in range(model.ngeom) if model.geom_bodyid[g] not in (0, self._object_body, self._mark_body)
        }

    # ------------------------------------------------------------------ reset and step
    def reset(self, scene: SceneParams, hand_qpos: np.ndarray | None = None) -> None:
        """Put the world at the start of `scene`; the hand at `hand_qpos` (default: the scene's
        start pose with open fingers)."""
        if scene.object_kind != self.object_kind:
            raise ValueError(f"this world holds a {self.object_kind!r}, the scene asks for {scene.object_kind!r}")
        self.scene = scene
        model, data = self.model, self.data
        mujoco.mj_resetData(model, data)
        self._set_object_properties(scene)
        # The mark is only on the table for tasks that have one; elsewhere it hides below it.
        has_mark = get_task(scene.task).has_mark
        model.body_pos[self._mark_body] = [*scene.mark_xy, 0.0] if has_mark else [0.0, 0.0, -1.0]
        if hand_qpos is None:
            hand_qpos = self.start_qpos(scene)
        hand_qpos = self._clip(np.asarray(hand_qpos, dtype=np.float64))
        data.qpos[self._hand_qpos] = hand_qpos
        data.ctrl[:] = hand_qpos
        data.qpos[self._object_qpos : self._object_qpos + 7] = [*scene.object_xy, scene.object_rest_z + 0.0005, *scene.object_quat()]
        mujoco.mj_forward(model, data)
        mujoco.mj_step(model, data, SETTLE_STEPS)

    def start_qpos(self, scene: SceneParams) -> np.ndarray:
        """Wrist at the scene's start pose, the hand relaxed and open."""
        return start_qpos(self.spec, scene)

    def step(self, target: np.ndarray) -> None:
        """Advance one control step towards absolute joint targets `target` (num_joints,).

        The position targets are ramped linearly over the step, as a real low-level
        controller interpolates between policy commands."""
        target = np.asarray(target, dtype=np.float64)
        if target.shape != (self.spec.num_joints,):
            raise ValueError(f"joint targets must have shape ({self.spec.num_joints},), got {target.shape}")
        if not np.isfinite(target).all():
            raise ValueError("joint targets contain NaN or inf")
        target = self._clip(target)
        start = self.data.ctrl.copy()
        model, data = self.model, self.data
        ramp = max(1, self.substeps // 2)
        for i in range(self.substeps):
            alpha = min(1.0, (i + 1) / ramp)
            data.ctrl[:] = start + alpha * (target - start)
            mujoco.mj_step(model, data)
        # MuJoCo flags NaN/huge values itself; an object flung off at tens of m/s (possible
        # before that flag trips) is just as unphysical.
        flung = np.abs(data.qvel[self._object_qvel : self._object_qvel + 3]).max() > 20.0
        if flung or any(data.warning[w].number for w in _INSTABILITY_WARNINGS):
            raise SimulationUnstable(f"the simulation of {self.hand}/{self.object_kind} became unstable at t={data.time:.3f}s")

    def _clip(self, qpos: np.ndarray) -> np.ndarray:
        return np.clip(qpos, self.joint_ranges[:, 0], self.joint_ranges[:, 1])

    def _set_object_properties(self, scene: SceneParams) -> None:
        model = self.model
        g, b = self._object_geom, self._object_body
        size = np.asarray(scene.object_size, dtype=np.float64)
        m = float(scene.object_mass)
        if self.object_kind == "apple":
            r = size[0]
            model.geom_size[g] = [r, 0, 0]
            model.geom_rbound[g] = r
            inertia = np.full(3, 0.4 * m * r * r)
        elif self.object_kind == "can":
            r, h = size
            model.geom_size[g] = [r, h, 0]
            model.geom_rbound[g] = np.hypot(r, h)
            side = m * (3 * r * r + 4 * h * h) / 12.0
            inertia = np.array([side, side, 0.5 * m * r * r])
        else:
            model.geom_size[g] = size
            model.geom_rbound[g] = np.linalg.norm(size)
            hx, hy, hz = size
            inertia = m / 3.0 * np.array([hy * hy + hz * hz, hx * hx + hz * hz, hx * hx + hy * hy])
        model.geom_aabb[g] = np.concatenate([np.zeros(3), model.geom_size[g] if self.object_kind == "box" else np.full(3, model.geom_rbound[g])])
        model.body_mass[b] = m
        model.body_inertia[b] = inertia
        model.geom_friction[g, 0] = scene.object_friction

    # ------------------------------------------------------------------ readouts
    def render(self) -> np.ndarray:
        """The camera frame, uint8 (H, W, 3)."""
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)
        self._renderer.update_scene(self.data, camera=self.camera)
        return self._renderer.render().copy()

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._hand_qpos].astype(np.float32)

    def object_pose(self) -> np.ndarray:
        """Object position (3) and orientation quaternion (w, x, y, z)."""
        return self.data.qpos[self._object_qpos : self._object_qpos + 7].astype(np.float32)

    def fingertip_positions(self) -> np.ndarray:
        return self.data.site_xpos[self._tip_sites].astype(np.float32)

    def keypoints(self) -> np.ndarray:
        """The 21 MANO keypoints in world coordinates (human hand only)."""
        if not self._keypoint_sites:
            raise ValueError("only the human hand has MANO keypoints")
        return self.data.site_xpos[self._keypoint_sites].astype(np.float32)

    def wrist_pose(self) -> np.ndarray:
        """Palm frame position (3) and quaternion (w, x, y, z) in world coordinates."""
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, self.data.xmat[self._palm_body])
        return np.concatenate([self.data.xpos[self._palm_body], quat]).astype(np.float32)

    def tactile(self) -> np.ndarray:
        """Fingertip touch forces (N), one per finger."""
        return self.data.sensordata[self._touch_adr].astype(np.float32)

    def object_contacts(self) -> int:
        """Number of hand geoms touching the object."""
        touching = set()
        for contact in self.data.contact[: self.data.ncon]:
            pair = {int(contact.geom1), int(contact.geom2)}
            if self._object_geom in pair:
                other = (pair - {self._object_geom}) or {self._object_geom}
                touching |= other & self._hand_geoms
        return len(touching)

    def is_success(self) -> bool:
        if self.scene is None:
            raise RuntimeError("reset the world before asking for success")
        return get_task(self.scene.task).is_success(self.scene, self.object_pose())

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def start_qpos(spec: HandSpec, scene: SceneParams) -> np.ndarray:
    """Joint positions at the start of an episode: wrist at the scene's start pose (level), the
    fingers straight and the thumb raised towards the palm plane, clear of the object."""
    qpos = np.zeros(spec.num_joints)
    qpos[:4] = scene.hand_start
    qpos[6:] = np.concatenate([[0.0, f.ranges[1][0], 0.0, 0.0] if f.is_thumb else [0.0] * 4 for f in spec.fingers])
    return qpos


_WORLDS: dict[tuple[str, str, int], World] = {}


def get_world(hand: str, object_kind: str, image_size: int = 64) -> World:
    """A cached world per (hand, object kind, image size): compiling and opening a GL context
    once per process keeps demo making and replay fast."""
    key = (hand, object_kind, int(image_size))
    if key not in _WORLDS:
        _WORLDS[key] = World(hand, object_kind, image_size)
    return _WORLDS[key]


__all__ = ["World", "SimulationUnstable", "get_world", "start_qpos", "CONTROL_DT", "WRIST_JOINTS"]

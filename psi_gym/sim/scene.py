"""The scene of the ground-truth world: table, one object, an optional target mark, a hand.

A scene is described by `SceneParams` (JSON-serialisable, stored with every episode so the
same start can be rebuilt for another embodiment), sampled per task by `sample_scene`.
The MJCF is compiled once per (hand, object kind); sizes, masses, frictions and poses are set
on the compiled model at reset, so building a scene is cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from psi_gym.sim.rotations import axis_angle_quat, quat_mul
from psi_gym.sim.hands import HandSpec, hand_actuators_xml, hand_body_xml, hand_sensors_xml

OBJECT_KINDS = ("apple", "can", "box")
# Distinct, saturated colours: the world model must see the object against table and hand.
OBJECT_RGBA = {"apple": "0.85 0.08 0.08 1", "can": "0.95 0.78 0.05 1", "box": "0.10 0.35 0.95 1"}
TABLE_RGBA = "0.62 0.60 0.55 1"
MARK_RGBA = "0.10 0.75 0.25 1"
# The fixed "front" camera every frame is rendered with (world coordinates, MuJoCo's xyaxes
# convention: the camera's x and y axes; it looks along -(x cross y)). The world model projects
# the hand and object with the same numbers (`psi_gym.world_model.hand_geometry.Camera`).
CAMERA_POS = (0.0, -0.40, 0.22)
CAMERA_XYAXES = ((1.0, 0.0, 0.0), (0.0, 0.287, 0.958))
CAMERA_FOVY = 45.0  # degrees


@dataclass
class SceneParams:
    """Everything random about one episode's start. Lengths in m, masses in kg, angles in rad."""

    task: str
    object_kind: str
    object_size: list[float]  # apple: [r]; can (lying on its side): [r, half length]; box: [hx, hy, hz]
    object_mass: float
    object_friction: float
    object_xy: list[float]
    object_yaw: float
    mark_xy: list[float] = field(default_factory=lambda: [0.0, 0.0])
    hand_start: list[float] = field(default_factory=lambda: [-0.12, 0.0, 0.22, 0.0])  # wrist x, y, z, yaw

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneParams:
        missing = {"task", "object_kind", "object_size", "object_mass", "object_friction", "object_xy", "object_yaw"} - set(data)
        if missing:
            raise ValueError(f"scene parameters are missing {sorted(missing)}; got keys {sorted(data)}")
        return cls(**data)

    @property
    def object_rest_z(self) -> float:
        """Height of the object's centre when it rests on the table (table top at z = 0)."""
        if self.object_kind in ("apple", "can"):
            return self.object_size[0]
        return self.object_size[2]

    def object_quat(self) -> list[float]:
        """Initial orientation (w, x, y, z): a yaw about z; the can also lies on its side
        (its axis, the cylinder's local z, turned horizontal by a quarter turn about x)."""
        quat = axis_angle_quat((0, 0, 1), self.object_yaw)
        if self.object_kind == "can":
            quat = quat_mul(quat, axis_angle_quat((1, 0, 0), np.pi / 2))
        return [float(v) for v in quat]


def _numbers(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:g}" for v in values)


def object_geom_xml(kind: str) -> str:
    # Nominal sizes: the actual ones are written into the compiled model at reset.
    if kind == "apple":
        shape = 'type="sphere" size="0.04"'
    elif kind == "can":
        shape = 'type="cylinder" size="0.03 0.05"'
    elif kind == "box":
        shape = 'type="box" size="0.035 0.035 0.03"'
    else:
        raise ValueError(f"unknown object kind {kind!r}: expected one of {OBJECT_KINDS}")
    return f'<geom name="object" {shape} rgba="{OBJECT_RGBA[kind]}" class="object"/>'


def scene_xml(hand: HandSpec, object_kind: str, image_size: int = 64) -> str:
    """The MJCF of the whole scene with `hand` and one object of `object_kind`."""
    offscreen = max(64, int(image_size))
    return f"""
<mujoco model="psi_gym_{hand.name}_{object_kind}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="{offscreen}" offheight="{offscreen}" fovy="40"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.55 0.55 0.55" specular="0 0 0"/>
    <rgba haze="0.2 0.22 0.28 1"/>
  </visual>
  <default>
    <geom solref="0.004 1" solimp="0.95 0.99 0.001"/>
    <default class="wrist_slide"><joint type="slide" armature="0.05" damping="5"/></default>
    <default class="wrist_hinge"><joint armature="0.005" damping="0.5"/></default>
    <default class="wrist_slide_act"><position kp="1500" kv="120"/></default>
    <default class="wrist_hinge_act"><position kp="60" kv="4"/></default>
    <default class="finger_act"><position/></default>
    <joint armature="0.002" damping="0.02"/>
    <default class="palm"><geom contype="2" conaffinity="1" condim="4" friction="1.0 0.02 0.001" density="400"/></default>
    <default class="finger"><geom contype="2" conaffinity="1" condim="4" friction="1.2 0.02 0.001" density="400"/></default>
    <default class="fingertip"><geom contype="2" conaffinity="1" condim="4" friction="1.5 0.02 0.001" density="400"/></default>
    <default class="object"><geom contype="1" conaffinity="3" condim="4" friction="1.0 0.02 0.001"/></default>
  </default>
  <worldbody>
    <light name="key" pos="0.1 -0.3 0.8" dir="-0.1 0.3 -0.8" directional="true" castshadow="false" diffuse="0.5 0.5 0.5"/>
    <geom name="floor" type="plane" pos="0 0 -0.30" size="2 2 0.1" rgba="0.22 0.24 0.30 1" contype="1" conaffinity="3"/>
    <geom name="wall" type="plane" pos="0 0.45 0" zaxis="0 -1 0" size="2 2 0.1" rgba="0.50 0.62 0.78 1" contype="0" conaffinity="0"/>
    <geom name="table" type="box" pos="0 0 -0.02" size="0.60 0.45 0.02" rgba="{TABLE_RGBA}" contype="1" conaffinity="3" condim="3" friction="0.8 0.01 0.001"/>
    <body name="mark" pos="0 0 -1">
      <geom name="mark" type="cylinder" size="0.05 0.0008" pos="0 0 0.0008" rgba="{MARK_RGBA}" contype="0" conaffinity="0"/>
    </body>
    <camera name="front" pos="{_numbers(CAMERA_POS)}" xyaxes="{_numbers(CAMERA_XYAXES[0] + CAMERA_XYAXES[1])}" fovy="{CAMERA_FOVY:g}"/>
    <body name="object" pos="0 0 0.05">
      <freejoint name="object"/>
      {object_geom_xml(object_kind)}
    </body>
    {hand_body_xml(hand)}
  </worldbody>
  <actuator>
      {hand_actuators_xml(hand)}
  </actuator>
  <sensor>
      {hand_sensors_xml(hand)}
  </sensor>
</mujoco>
"""

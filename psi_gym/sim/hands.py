"""Kinematic descriptions of the two hands of the ground-truth world, and their MJCF.

Both hands hang from the world on a 6-DoF wrist made of joints (slide x, y, z, then hinges
about z, y, x: yaw, pitch, roll) so that every degree of freedom is a position-controlled
actuator and the wrist pose is part of the joint state. Hand bodies are gravity-compensated.

Hand frame (wrist at the origin, before yaw/pitch/roll):
  +x  along the fingers (forward), +y  towards the thumb side, +z  out of the back of the hand
  (the palm faces -z, i.e. down, at zero wrist rotation).

- The **human hand** is MANO-like: 5 fingers, 20 joints (4 per finger: abduction, MCP, PIP,
  DIP; thumb: CMC swing, CMC flex, MCP, IP), human proportions, skin coloured. It only makes
  demonstrations. It exposes the 21 MANO keypoints as sites.
- The **robot hand** is LEAP/Allegro-like: 4 fingers (thumb, index, middle, ring), 16 joints,
  a wider palm, longer and thicker dark links and different joint limits. Its kinematics are
  unlike the human's on purpose: that difference is the embodiment gap retargeting must bridge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from psi_gym.sim.rotations import axis_angle_quat, quat_mul

WRIST_JOINTS = ("wrist_x", "wrist_y", "wrist_z", "wrist_yaw", "wrist_pitch", "wrist_roll")
# Workspace of the wrist joints (m, rad); the same for both hands so that wrist poses transfer.
WRIST_RANGE = np.array(
    [[-0.25, 0.25], [-0.25, 0.25], [0.02, 0.40], [-1.6, 1.6], [-1.0, 1.0], [-1.0, 1.0]],
    dtype=np.float64,
)


@dataclass(frozen=True)
class FingerSpec:
    """One finger: base position/orientation on the palm, link lengths, joint ranges."""

    name: str
    base: tuple[float, float, float]  # MCP (or thumb CMC) position in the hand frame
    direction_deg: float  # in-palm-plane angle of the straight finger from +x (towards +y)
    droop_deg: float  # initial downward tilt of the finger below the palm plane
    lengths: tuple[float, float, float]  # proximal, middle, distal link lengths (m)
    radius: float  # capsule radius of the links (m)
    ranges: tuple[tuple[float, float], ...]  # 4 joint ranges (rad): swing, flex1, flex2, flex3
    is_thumb: bool = False


@dataclass(frozen=True)
class HandSpec:
    """A whole hand: palm box, fingers, colours, actuator gains."""

    name: str
    palm_half_size: tuple[float, float, float]
    palm_center: tuple[float, float, float]
    fingers: tuple[FingerSpec, ...]
    palm_rgba: str
    finger_rgba: str
    finger_kp: float
    keypoint_sites: bool = False  # human hand: expose the 21 MANO keypoints
    extra: dict = field(default_factory=dict)

    @property
    def finger_joint_names(self) -> list[str]:
        return [f"{f.name}_j{i}" for f in self.fingers for i in range(4)]

    @property
    def joint_names(self) -> list[str]:
        return list(WRIST_JOINTS) + self.finger_joint_names

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def fingertip_sites(self) -> list[str]:
        return [f"{f.name}_tip" for f in self.fingers]

    def joint_ranges(self) -> np.ndarray:
        finger = [r for f in self.fingers for r in f.ranges]
        return np.concatenate([WRIST_RANGE, np.asarray(finger, dtype=np.float64)])

    def length(self) -> float:
        """Wrist to middle fingertip with the hand flat: the hand's characteristic size."""
        middle = next(f for f in self.fingers if f.name == "middle")
        return float(np.hypot(middle.base[0] + sum(middle.lengths), middle.base[2]))


# Joint order inside a finger: j0 swing (about the local z), j1..j3 flexion (about local y).
_HUMAN_FINGER_RANGES = ((-0.35, 0.35), (-0.2, 1.6), (0.0, 1.8), (0.0, 1.4))
_HUMAN_THUMB_RANGES = ((-0.8, 0.6), (-0.5, 1.5), (-0.2, 1.2), (-0.2, 1.3))

HUMAN_HAND = HandSpec(
    name="human",
    palm_half_size=(0.043, 0.040, 0.012),
    palm_center=(0.045, 0.0, 0.0),
    fingers=(
        FingerSpec("thumb", (0.018, 0.025, -0.012), 30.0, 40.0, (0.040, 0.032, 0.028), 0.0095, _HUMAN_THUMB_RANGES, True),
        FingerSpec("index", (0.088, 0.026, 0.0), 4.0, 0.0, (0.043, 0.025, 0.021), 0.0085, _HUMAN_FINGER_RANGES),
        FingerSpec("middle", (0.090, 0.008, 0.0), 0.0, 0.0, (0.047, 0.028, 0.022), 0.0085, _HUMAN_FINGER_RANGES),
        FingerSpec("ring", (0.087, -0.010, 0.0), -4.0, 0.0, (0.044, 0.026, 0.021), 0.0080, _HUMAN_FINGER_RANGES),
        FingerSpec("pinky", (0.080, -0.027, 0.0), -9.0, 0.0, (0.034, 0.020, 0.019), 0.0075, _HUMAN_FINGER_RANGES),
    ),
    palm_rgba="0.93 0.72 0.58 1",
    finger_rgba="0.88 0.66 0.52 1",
    finger_kp=1.5,
    keypoint_sites=True,
)

# LEAP-hand-like: longer, thicker links, wide finger spacing, no pinky, and joint limits that
# allow hyper-flexion at the MCP but little abduction.
_ROBOT_FINGER_RANGES = ((-0.25, 0.25), (-0.3, 2.0), (-0.2, 1.9), (-0.2, 1.7))
_ROBOT_THUMB_RANGES = ((-1.0, 0.5), (-0.3, 1.9), (-0.3, 1.5), (-0.3, 1.5))

ROBOT_HAND = HandSpec(
    name="robot",
    palm_half_size=(0.052, 0.058, 0.017),
    palm_center=(0.050, 0.0, 0.0),
    fingers=(
        FingerSpec("thumb", (0.025, 0.045, -0.018), 45.0, 60.0, (0.045, 0.042, 0.040), 0.0125, _ROBOT_THUMB_RANGES, True),
        FingerSpec("index", (0.102, 0.038, 0.0), 0.0, 0.0, (0.052, 0.040, 0.036), 0.0120, _ROBOT_FINGER_RANGES),
        FingerSpec("middle", (0.102, 0.000, 0.0), 0.0, 0.0, (0.052, 0.040, 0.036), 0.0120, _ROBOT_FINGER_RANGES),
        FingerSpec("ring", (0.102, -0.038, 0.0), 0.0, 0.0, (0.052, 0.040, 0.036), 0.0120, _ROBOT_FINGER_RANGES),
    ),
    palm_rgba="0.16 0.16 0.18 1",
    finger_rgba="0.28 0.29 0.33 1",
    finger_kp=6.0,
)

HANDS = {"human": HUMAN_HAND, "robot": ROBOT_HAND}

# MANO keypoint order (21): wrist, then per finger base -> tip for thumb, index, middle, ring,
# pinky. Site names of the human hand in that order.
MANO_KEYPOINTS = ["wrist"] + [
    f"{finger}_{part}" for finger in ("thumb", "index", "middle", "ring", "pinky") for part in ("k0", "k1", "k2", "tip")
]


def hand_spec(name: str) -> HandSpec:
    if name not in HANDS:
        raise ValueError(f"unknown hand {name!r}: expected one of {sorted(HANDS)}")
    return HANDS[name]


def _finger_xml(finger: FingerSpec, rgba: str, with_keypoints: bool) -> str:
    """Nested bodies of one finger. Links lie along the local +x; flexion is about local +y
    (positive flex curls the finger towards -z, the palm side); the swing j0 is about local +z."""
    x, y, z = finger.base
    yaw = np.deg2rad(finger.direction_deg)
    droop = np.deg2rad(finger.droop_deg)
    # Orientation of the finger base: R = Rz(yaw) Ry(droop): yaw in the palm plane, then droop
    # below it (a positive rotation about +y takes +x towards -z).
    quat = quat_mul(axis_angle_quat((0, 0, 1), yaw), axis_angle_quat((0, 1, 0), droop))
    quat_text = " ".join(f"{v:.6f}" for v in quat)
    l1, l2, l3 = finger.lengths
    r = finger.radius
    names = [f"{finger.name}_j{i}" for i in range(4)]
    flex = "0 1 0"  # flexion curls the finger towards its palm side (local -z)
    ranges = [f"{lo:.4f} {hi:.4f}" for lo, hi in finger.ranges]

    def site(name: str, pos: str) -> str:
        if not with_keypoints:
            return ""
        return f'<site name="{finger.name}_{name}" pos="{pos}" size="0.004" rgba="0 0 0 0" group="4"/>'

    return f"""
      <body name="{finger.name}_base" pos="{x} {y} {z}" quat="{quat_text}" gravcomp="1">
        {site("k0", "0 0 0")}
        <joint name="{names[0]}" axis="0 0 1" range="{ranges[0]}"/>
        <joint name="{names[1]}" axis="{flex}" range="{ranges[1]}"/>
        <geom name="{finger.name}_link1" type="capsule" fromto="0 0 0 {l1} 0 0" size="{r}" rgba="{rgba}" class="finger"/>
        <body name="{finger.name}_mid" pos="{l1} 0 0" gravcomp="1">
          {site("k1", "0 0 0")}
          <joint name="{names[2]}" axis="{flex}" range="{ranges[2]}"/>
          <geom name="{finger.name}_link2" type="capsule" fromto="0 0 0 {l2} 0 0" size="{r * 0.95:.5f}" rgba="{rgba}" class="finger"/>
          <body name="{finger.name}_dist" pos="{l2} 0 0" gravcomp="1">
            {site("k2", "0 0 0")}
            <joint name="{names[3]}" axis="{flex}" range="{ranges[3]}"/>
            <geom name="{finger.name}_link3" type="capsule" fromto="0 0 0 {l3} 0 0" size="{r * 0.9:.5f}" rgba="{rgba}" class="fingertip"/>
            <site name="{finger.name}_tip" pos="{l3 + r * 0.5:.5f} 0 {-r * 0.3:.5f}" size="{r * 1.05:.5f}" rgba="0 0 0 0" group="4"/>
          </body>
        </body>
      </body>"""


def hand_body_xml(spec: HandSpec) -> str:
    """The wrist joint chain and the hand, to be placed in the worldbody."""
    hx, hy, hz = spec.palm_half_size
    cx, cy, cz = spec.palm_center
    wrist_site = '<site name="wrist" pos="0 0 0" size="0.004" rgba="0 0 0 0" group="4"/>' if spec.keypoint_sites else ""
    fingers = "".join(_finger_xml(f, spec.finger_rgba, spec.keypoint_sites) for f in spec.fingers)
    # Tiny inertias on the wrist chain bodies; the palm carries the hand's mass.
    return f"""
    <body name="wrist_x_body" gravcomp="1">
      <inertial pos="0 0 0" mass="0.05" diaginertia="1e-5 1e-5 1e-5"/>
      <joint name="wrist_x" type="slide" axis="1 0 0" class="wrist_slide" range="{WRIST_RANGE[0, 0]} {WRIST_RANGE[0, 1]}"/>
      <body name="wrist_y_body" gravcomp="1">
        <inertial pos="0 0 0" mass="0.05" diaginertia="1e-5 1e-5 1e-5"/>
        <joint name="wrist_y" type="slide" axis="0 1 0" class="wrist_slide" range="{WRIST_RANGE[1, 0]} {WRIST_RANGE[1, 1]}"/>
        <body name="wrist_z_body" gravcomp="1">
          <inertial pos="0 0 0" mass="0.05" diaginertia="1e-5 1e-5 1e-5"/>
          <joint name="wrist_z" type="slide" axis="0 0 1" class="wrist_slide" range="{WRIST_RANGE[2, 0]} {WRIST_RANGE[2, 1]}"/>
          <body name="wrist_yaw_body" gravcomp="1">
            <inertial pos="0 0 0" mass="0.02" diaginertia="1e-5 1e-5 1e-5"/>
            <joint name="wrist_yaw" axis="0 0 1" class="wrist_hinge" range="{WRIST_RANGE[3, 0]} {WRIST_RANGE[3, 1]}"/>
            <body name="wrist_pitch_body" gravcomp="1">
              <inertial pos="0 0 0" mass="0.02" diaginertia="1e-5 1e-5 1e-5"/>
              <joint name="wrist_pitch" axis="0 1 0" class="wrist_hinge" range="{WRIST_RANGE[4, 0]} {WRIST_RANGE[4, 1]}"/>
              <body name="palm" gravcomp="1">
                <joint name="wrist_roll" axis="1 0 0" class="wrist_hinge" range="{WRIST_RANGE[5, 0]} {WRIST_RANGE[5, 1]}"/>
                {wrist_site}
                <geom name="palm" type="box" pos="{cx} {cy} {cz}" size="{hx} {hy} {hz}" rgba="{spec.palm_rgba}" class="palm"/>
                {fingers}
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def hand_actuators_xml(spec: HandSpec) -> str:
    """Position actuators, one per joint, in `spec.joint_names` order."""
    lines = []
    for name in WRIST_JOINTS:
        cls = "wrist_slide_act" if name in ("wrist_x", "wrist_y", "wrist_z") else "wrist_hinge_act"
        lines.append(f'<position name="act_{name}" joint="{name}" class="{cls}"/>')
    for name in spec.finger_joint_names:
        lines.append(f'<position name="act_{name}" joint="{name}" kp="{spec.finger_kp}" kv="{spec.finger_kp * 0.05:.4f}" class="finger_act"/>')
    return "\n      ".join(lines)


def hand_sensors_xml(spec: HandSpec) -> str:
    """Fingertip touch sensors (normal force summed over contacts in the tip site's volume)."""
    return "\n      ".join(f'<touch name="touch_{f.name}" site="{f.name}_tip"/>' for f in spec.fingers)


def residual_scale(spec: HandSpec) -> np.ndarray:
    """Joint-target change of a unit residual action, per joint: 3 cm for the wrist position,
    0.15 rad for its rotation, 0.4 rad for finger joints. The env's residual action space and
    the exploration noise of robot rollouts share it."""
    return np.concatenate([[0.03, 0.03, 0.03, 0.15, 0.15, 0.15], np.full(4 * len(spec.fingers), 0.4)])


def residual_joint_targets(reference_next: np.ndarray, residual: np.ndarray, scale: np.ndarray,
                           ranges: np.ndarray | None = None) -> np.ndarray:
    """Absolute joint targets of a residual on a reference: ``clip(ref + s * a)``.

    Notation: ``ref`` = ``reference_next`` (..., J), the reference's next joint targets; ``a`` =
    ``residual`` (..., J), in units of ``s`` = ``scale`` (J,) (`residual_scale`, times a gain);
    ``clip`` to ``ranges`` (J, 2) low/high, or none when ``ranges`` is None (the world clips what
    it executes). The env's residual actions and the exploring robot rollouts both map through it.
    """
    targets = reference_next + scale * residual
    if ranges is None:
        return targets
    return np.clip(targets, ranges[..., 0], ranges[..., 1])

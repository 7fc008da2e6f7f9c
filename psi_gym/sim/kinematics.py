"""Forward and inverse kinematics of a hand alone (no object, no table), with MuJoCo.

Used by the scripted demonstrator (fingertip goals around an object -> finger joints) and by
the retargeter (human fingertip goals -> robot finger joints).

Notation:
  q        joint positions of the hand (wrist 6 first, then 4 per finger), `HandSpec` order
  p_i(q)   world position of fingertip i (site ``<finger>_tip``)
  J_i(q)   d p_i / d q_f, the 3x4 positional Jacobian of tip i w.r.t. its own finger joints q_f
  p*_i     goal position of tip i
Each finger is its own chain, so the inverse problem splits into one 3x4 problem per finger,
solved by damped least squares (Levenberg-Marquardt):
  dq_f = J^T (J J^T + lambda I)^-1 (p*_i - p_i) + (I - J^+ J) mu (q_rest - q_f)
and clipped to the joint limits after each iteration.
"""

from __future__ import annotations

import mujoco
import numpy as np

from psi_gym.sim.hands import MANO_KEYPOINTS, HandSpec, hand_body_xml, hand_spec


class HandKinematics:
    """Kinematics of one hand type; wrist joints are inputs, finger joints are solved."""

    def __init__(self, hand: str | HandSpec):
        self.spec = hand_spec(hand) if isinstance(hand, str) else hand
        # The same hand MJCF as the scene's, with its default classes but no collisions.
        classes = "".join(f'<default class="{c}"><geom/></default>' for c in ("palm", "finger", "fingertip"))
        xml = f"""<mujoco><compiler angle="radian" autolimits="true"/>
          <default><geom contype="0" conaffinity="0"/>
            <default class="wrist_slide"><joint type="slide"/></default><default class="wrist_hinge"><joint/></default>
            {classes}</default>
          <worldbody>{hand_body_xml(self.spec)}</worldbody>
        </mujoco>"""
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        model = self.model
        joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in self.spec.joint_names]
        self._qpos_adr = np.array([model.jnt_qposadr[j] for j in joint_ids])
        self._dof_adr = np.array([model.jnt_dofadr[j] for j in joint_ids])
        self.ranges = model.jnt_range[joint_ids].copy()
        self.tip_sites = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, n) for n in self.spec.fingertip_sites]
        self.keypoint_sites = (
            [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, n) for n in MANO_KEYPOINTS] if self.spec.keypoint_sites else []
        )
        self.palm_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "palm")
        self.num_fingers = len(self.spec.fingers)
        self._jacp = np.zeros((3, model.nv))

    def finger_slice(self, finger: int) -> slice:
        """Indices of finger `finger`'s four joints in q."""
        return slice(6 + 4 * finger, 10 + 4 * finger)

    def forward(self, qpos: np.ndarray) -> None:
        self.data.qpos[self._qpos_adr] = qpos
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def fingertips(self, qpos: np.ndarray) -> np.ndarray:
        self.forward(qpos)
        return self.data.site_xpos[self.tip_sites].copy()

    def keypoints(self, qpos: np.ndarray) -> np.ndarray:
        self.forward(qpos)
        return self.data.site_xpos[self.keypoint_sites].copy()

    def palm_frame(self, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Wrist position (3) and rotation matrix (3x3, columns = hand x, y, z axes)."""
        self.forward(qpos)
        return self.data.xpos[self.palm_body].copy(), self.data.xmat[self.palm_body].reshape(3, 3).copy()

    def solve_fingertips(
        self,
        qpos: np.ndarray,
        goals: np.ndarray,
        weights: np.ndarray | None = None,
        iterations: int = 40,
        damping: float = 1e-4,
        rest_pull: float = 0.02,
        rest: np.ndarray | None = None,
    ) -> np.ndarray:
        """Finger joints that bring each fingertip to `goals` (F, 3) in world coordinates.

        `qpos` holds the (fixed) wrist joints and the initial finger joints (warm start), so the
        result is a deterministic function of its inputs. Fingers with weight 0 are left alone.
        """
        q = np.array(qpos, dtype=np.float64)
        goals = np.asarray(goals, dtype=np.float64)
        weights = np.ones(self.num_fingers) if weights is None else np.asarray(weights, dtype=np.float64)
        rest = np.zeros_like(q) if rest is None else rest
        lo, hi = self.ranges[:, 0], self.ranges[:, 1]
        for _ in range(iterations):
            self.forward(q)
            for f, site in enumerate(self.tip_sites):
                if weights[f] <= 0:
                    continue
                cols = self.finger_slice(f)
                error = goals[f] - self.data.site_xpos[site]
                mujoco.mj_jacSite(self.model, self.data, self._jacp, None, site)
                jac = self._jacp[:, self._dof_adr[cols]]
                jjt = jac @ jac.T + damping * np.eye(3)
                step = jac.T @ np.linalg.solve(jjt, error)
                # Null-space pull toward the rest posture keeps the redundant DoF tidy.
                null = np.eye(4) - jac.T @ np.linalg.solve(jjt, jac)
                step += null @ (rest_pull * (rest[cols] - q[cols]))
                q[cols] = np.clip(q[cols] + step, lo[cols], hi[cols])
        return q


_KINEMATICS: dict[str, HandKinematics] = {}


def get_kinematics(hand: str) -> HandKinematics:
    if hand not in _KINEMATICS:
        _KINEMATICS[hand] = HandKinematics(hand)
    return _KINEMATICS[hand]

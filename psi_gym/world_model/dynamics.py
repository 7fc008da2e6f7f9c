"""The physics half of Psi-W0: one control step of the hand and the object, in a tracked state.

Notation, per row (``q`` joint positions, ``u`` the commanded joint targets, ``p`` the object's
centre, ``R`` its orientation; subscripts are time steps):

* features: ``q_t`` and ``u_t`` normalised to [-1, 1] by the joint ranges; ``q_t - q_{t-1}`` and
  ``u_t - q_t`` in units of the residual scale (3 cm, 0.15 rad, 0.4 rad); the hand's points
  (`psi_gym.world_model.hand_geometry.HAND_POINTS` and the middles of the finger links) at ``q_t``
  and at ``u_t``: relative to ``p_t``, their distance to the object's surface (`surface_distance`:
  where contact is) and their heights; the palm's axes; ``p_t``, its height above its resting
  height, ``p_t - p_{t-1}``, ``R_t`` and ``R_t R_{t-1}^T`` (zeroed for the apple, a sphere); the
  object descriptor;
* an MLP maps them to ``(dq, dp, omega)``: ``q_{t+1} = q_t + s * dq``, ``p_{t+1} = p_t + 1 cm * dp``,
  ``R_{t+1} = exp([omega]_x) R_t``.

With ``joint_prior`` (`JointResponse`), ``dq`` is the hand's linear servo response plus the MLP's
output: ``q_{t+1} - q_t = a (u_t - q_t) + b (q_t - q_{t-1}) + c (u_t - u_{t-1}) + s * dq_MLP``, per
joint, with ``(a, b, c)`` fitted by least squares on the training data; the features then also hold
``u_t - u_{t-1}``. The MLP is left with what a servo alone does not do: contact, limits.

With ``contact_width`` > 0 (`ContactEncoder`), each hand point also goes through one small MLP
shared by all points, in the object's own frame (where it is on the object's surface, where it is
commanded to go, how far it moves), and the points' outputs are pooled (mean and max) into the
features: contact is local, and the same push does the same thing whichever finger makes it.

Trained on whole-episode unrolls of its own predictions (see `psi_gym.world_model.training`), so
what it learns is the long-horizon outcome of an action sequence, not only the next step.
"""

from __future__ import annotations

import torch
from torch import nn

from psi_gym.sim.hands import hand_spec, residual_scale

from .hand_geometry import NUM_HAND_POINTS, HandKinematics
from .world_state import DESCRIPTOR_DIM, WorldState, rotation_exp

HAND_FEATURE_SCALE = 20.0  # m -> units of 5 cm
TABLE_HEIGHT_OFFSET = 0.05  # m: heights are fed as (z - 5 cm) / 5 cm
IDENTITY_COLUMNS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def resting_height(descriptor: torch.Tensor) -> torch.Tensor:
    """(B,) height (m) of the object's centre when it rests on the table, from its descriptor."""
    kind, size = descriptor[:, :3], descriptor[:, 3:] / 100.0
    return kind[:, 0] * size[:, 0] + kind[:, 1] * size[:, 0] + kind[:, 2] * size[:, 2]


def surface_distance(points: torch.Tensor, position: torch.Tensor, rotation: torch.Tensor,
                     descriptor: torch.Tensor) -> torch.Tensor:
    """Signed distance (m) of ``points`` (B, P, 3) to the object's surface (negative inside).

    Apple: a sphere of radius r; can: a capsule of radius r around its axis (the cylinder's local
    z, half length h: a close stand-in near its side); box: the exact box distance in its frame."""
    kind, size = descriptor[:, :3], descriptor[:, 3:] / 100.0
    local = (points - position[:, None]) @ rotation  # (B, P, 3) in the object's frame
    radius = size[:, 0:1]
    sphere = local.norm(dim=-1) - radius
    along = local[..., 2].clamp(-size[:, 1:2], size[:, 1:2])
    axis_point = torch.zeros_like(local)
    axis_point[..., 2] = along
    capsule = (local - axis_point).norm(dim=-1) - radius
    excess = local.abs() - size[:, None, :]
    box = excess.clamp_min(0).norm(dim=-1) + excess.amax(dim=-1).clamp_max(0)
    return kind[:, 0:1] * sphere + kind[:, 1:2] * capsule + kind[:, 2:3] * box


def _link_middles(points: torch.Tensor) -> torch.Tensor:
    """(B, 17, 3) hand points -> (B, 29, 3) with the middle of each finger link appended."""
    fingers = points[:, 1:].unflatten(1, (-1, 4))  # (B, 4 fingers, base/mid/dist/tip, 3)
    middles = 0.5 * (fingers[:, :, :-1] + fingers[:, :, 1:])
    return torch.cat([points, middles.flatten(1, 2)], dim=1)


def _columns(rotation: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) -> (B, 6) its first two columns."""
    return rotation[..., :2].transpose(-1, -2).flatten(1)


POINT_FEATURES = 3 + 3 + 3 + 2 + 1  # per point: local at q, local at u, move in the object's frame, contacts, height
CONTACT_SHARED_FEATURES = 3 + DESCRIPTOR_DIM  # per row, seen by every point: the object's velocity and descriptor


class ContactEncoder(nn.Module):
    """Per hand point, one MLP shared by all points (a learned embedding says which point it is),
    pooled over the points: ``(B, P, POINT_FEATURES)`` and ``(B, S)`` shared features -> ``(B, 2 width)``.
    The first layer is split into its per-point, per-point-identity and per-row parts, so that only
    the per-point part is computed P times."""

    def __init__(self, width: int, num_points: int, shared_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(num_points, width) * 0.1)  # = a one-hot of the point through a layer
        self.point_in = nn.Linear(POINT_FEATURES, width)
        self.shared_in = nn.Linear(shared_dim, width, bias=False)
        self.hidden = nn.Linear(width, width)

    def forward(self, points: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        h = nn.functional.silu(self.point_in(points) + self.embedding + self.shared_in(shared)[:, None])
        h = nn.functional.silu(self.hidden(h))
        return torch.cat([h.mean(1), h.amax(1)], dim=-1)


class JointResponse(nn.Module):
    """The hand's servo response, per joint: ``q_{t+1} - q_t = a (u_t - q_t) + b (q_t - q_{t-1}) + c (u_t - u_{t-1})``.

    A position servo on a damped joint, sampled once per control step, is a linear system of second
    order; seen through its positions alone it is exactly this form, with gain 1 at rest (the hand
    settles on its target), so it holds at any scale of units. What it misses is contact, joint
    limits and force saturation: the dynamics' MLP adds those. ``coefficients`` (J, 3) = ``(a, b, c)``
    start at ``(1, 0, 0)`` (the hand reaches each target in one step) and `fit` sets them from data;
    they are saved with the model and not trained by gradient."""

    def __init__(self, num_joints: int) -> None:
        super().__init__()
        self.register_buffer("coefficients", torch.tensor([[1.0, 0.0, 0.0]]).repeat(num_joints, 1))

    def forward(self, command: torch.Tensor, velocity: torch.Tensor, target_step: torch.Tensor) -> torch.Tensor:
        """``q_{t+1} - q_t`` from ``u_t - q_t``, ``q_t - q_{t-1}`` and ``u_t - u_{t-1}`` (each (B, J), same units)."""
        a, b, c = self.coefficients.unbind(-1)
        return a * command + b * velocity + c * target_step

    @torch.no_grad()
    def fit(self, joint_next: torch.Tensor, joint: torch.Tensor, joint_previous: torch.Tensor, target: torch.Tensor,
            target_previous: torch.Tensor) -> torch.Tensor:
        """Least squares per joint over transitions (each (N, J)); sets and returns ``coefficients``.

        Raises:
            ValueError: fewer than 3 transitions, or shapes that differ."""
        shapes = {tuple(x.shape) for x in (joint_next, joint, joint_previous, target, target_previous)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[1] != self.coefficients.shape[0]:
            raise ValueError(f"fit needs five (N, {self.coefficients.shape[0]}) tensors, got shapes {sorted(shapes)}")
        if joint.shape[0] < 3:
            raise ValueError(f"fit needs at least 3 transitions, got {joint.shape[0]}")
        x = torch.stack([target - joint, joint - joint_previous, target - target_previous], -1).double()  # (N, J, 3)
        y = (joint_next - joint).double()
        gram = torch.einsum("njk,njl->jkl", x, x) + 1e-12 * torch.eye(3, dtype=torch.float64)
        moment = torch.einsum("njk,nj->jk", x, y)
        self.coefficients.copy_(torch.linalg.solve(gram, moment).to(self.coefficients.dtype))
        return self.coefficients


class StateDynamics(nn.Module):
    """``step(state, joint_targets) -> next state`` (see the module doc)."""

    def __init__(self, hidden_dim: int = 512, num_layers: int = 3, contact_width: int = 0,
                 joint_prior: bool = False) -> None:
        super().__init__()
        spec = hand_spec("robot")
        ranges = torch.tensor(spec.joint_ranges(), dtype=torch.float32)
        self.num_joints = spec.num_joints
        self.kinematics = HandKinematics()
        self.register_buffer("joint_low", ranges[:, 0].clone(), persistent=False)
        self.register_buffer("joint_high", ranges[:, 1].clone(), persistent=False)
        self.register_buffer("joint_step", torch.tensor(residual_scale(spec), dtype=torch.float32), persistent=False)
        self.register_buffer("identity_columns", torch.tensor(IDENTITY_COLUMNS), persistent=False)
        joints, points = self.num_joints, NUM_HAND_POINTS + 12  # the joints' points and the links' middles
        in_dim = 4 * joints + 2 * 4 * points + points + 2 * 6 + 3 + 1 + 3 + 6 + 6 + DESCRIPTOR_DIM
        self.joint_response = JointResponse(joints) if joint_prior else None
        if self.joint_response is not None:
            in_dim += joints  # u_t - u_{t-1}
        self.flat_dim, self.num_points = in_dim, points
        self.contact = ContactEncoder(contact_width, points, CONTACT_SHARED_FEATURES) if contact_width > 0 else None
        if self.contact is not None:
            in_dim += 2 * contact_width
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.LayerNorm(hidden_dim), nn.SiLU()]
            width = hidden_dim
        self.trunk = nn.Sequential(*layers)
        self.out = nn.Linear(hidden_dim, joints + 3 + 3)
        nn.init.zeros_(self.out.weight)  # start from "nothing moves"
        nn.init.zeros_(self.out.bias)

    def normalize_joints(self, q: torch.Tensor) -> torch.Tensor:
        return (q - self.joint_low) / (self.joint_high - self.joint_low) * 2.0 - 1.0

    @torch.no_grad()
    def target_geometry(self, joint_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The commanded hand's points (..., 29, 3) and palm rotation (..., 3, 3) for joint targets
        (..., 22): data, not predictions, so a whole unroll's are computed in one batch."""
        shape = joint_targets.shape[:-1]
        points, palm = self.kinematics(joint_targets.reshape(-1, self.num_joints))
        return _link_middles(points).unflatten(0, shape), palm.unflatten(0, shape)

    def features(self, state: WorldState, joint_targets: torch.Tensor,
                 target_geometry: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        q, u, p = state.joint_state, joint_targets, state.object_position
        points, palm = self.kinematics(q)
        points = _link_middles(points)
        target_points, target_palm = target_geometry if target_geometry is not None else self.target_geometry(u)
        descriptor, rotation_now = state.object_descriptor, state.object_rotation
        contact = surface_distance(points, p, rotation_now, descriptor) * HAND_FEATURE_SCALE
        target_contact = surface_distance(target_points, p, rotation_now, descriptor) * HAND_FEATURE_SCALE
        sphere = descriptor[:, :1]  # the apple's orientation means nothing
        rotation = _columns(state.object_rotation)
        turn = _columns(state.object_rotation @ state.previous_object_rotation.transpose(-1, -2)) - self.identity_columns
        flat = [
            self.normalize_joints(q), (q - state.previous_joint_state) / self.joint_step,
            self.normalize_joints(u), (u - q) / self.joint_step,
            ((points - p[:, None]) * HAND_FEATURE_SCALE).flatten(1),
            ((target_points - p[:, None]) * HAND_FEATURE_SCALE).flatten(1),
            contact, target_contact,
            (points[..., 2] - TABLE_HEIGHT_OFFSET) * HAND_FEATURE_SCALE,
            _columns(palm), _columns(target_palm),
            (p - p.new_tensor([0.0, 0.0, TABLE_HEIGHT_OFFSET])) * HAND_FEATURE_SCALE,
            ((p[:, 2] - resting_height(descriptor)) * HAND_FEATURE_SCALE)[:, None],
            (p - state.previous_object_position) * 100.0,
            rotation * (1 - sphere), turn * (1 - sphere),
            state.object_descriptor,
        ]
        if self.joint_response is not None:
            flat.append((u - state.previous_joint_target) / self.joint_step)
        if self.contact is not None:  # per point, in the object's frame (``x R`` = ``R^T x`` per row)
            local = (points - p[:, None]) @ rotation_now * HAND_FEATURE_SCALE
            target_local = (target_points - p[:, None]) @ rotation_now * HAND_FEATURE_SCALE
            move = (target_points - points) @ rotation_now * 100.0  # cm
            per_point = torch.cat([local, target_local, move, contact[..., None], target_contact[..., None],
                                   (points[..., 2:] - TABLE_HEIGHT_OFFSET) * HAND_FEATURE_SCALE], dim=-1)
            flat += [(p - state.previous_object_position) * 100.0, state.object_descriptor, per_point.flatten(1)]
        return torch.cat(flat, dim=-1)

    def delta(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 22 + 3 + 3) ``(dq, dp, omega)`` from `features` (``dq`` with the servo response, if any)."""
        inputs = features
        if self.contact is not None:
            flat, shared, per_point = features.split([self.flat_dim, CONTACT_SHARED_FEATURES,
                                                      self.num_points * POINT_FEATURES], dim=-1)
            inputs = torch.cat([flat, self.contact(per_point.unflatten(1, (self.num_points, -1)), shared)], dim=-1)
        out = self.out(self.trunk(inputs))
        if self.joint_response is None:
            return out
        joints = self.num_joints  # the features' joint blocks, in units of joint_step (see `features`)
        servo = self.joint_response(command=features[:, 3 * joints: 4 * joints], velocity=features[:, joints: 2 * joints],
                                    target_step=features[:, self.flat_dim - joints: self.flat_dim])
        return torch.cat([out[:, :joints] + servo, out[:, joints:]], dim=-1)

    def step(self, state: WorldState, joint_targets: torch.Tensor,
             target_geometry: tuple[torch.Tensor, torch.Tensor] | None = None) -> WorldState:
        """The state after one control step with absolute ``joint_targets`` (B, 22)
        (``target_geometry``: their `target_geometry`, if already computed)."""
        return self.advance(state, self.delta(self.features(state, joint_targets, target_geometry)), joint_targets)

    def advance(self, state: WorldState, delta: torch.Tensor, joint_targets: torch.Tensor) -> WorldState:
        """``state`` moved by ``delta`` = ``(dq, dp, omega)`` (see the module doc) under ``joint_targets``."""
        joints = self.num_joints
        joint_state = state.joint_state + delta[:, :joints] * self.joint_step
        return WorldState(
            joint_state=joint_state,
            previous_joint_state=state.joint_state,
            previous_joint_target=joint_targets,
            object_position=state.object_position + delta[:, joints: joints + 3] * 0.01,
            previous_object_position=state.object_position,
            object_rotation=rotation_exp(delta[:, joints + 3: joints + 6]) @ state.object_rotation,
            previous_object_rotation=state.object_rotation,
            object_descriptor=state.object_descriptor,
            scene_frame=state.scene_frame,
            hand_joint_state=joint_state,  # the drawn hand: these joints (a W0 with a hand servo replaces it)
            previous_hand_joint_state=state.hand_joint_state,
        )


class DynamicsEnsemble(nn.Module):
    """``K`` `StateDynamics` members that step together: every step each member predicts
    ``(dq, dp, omega)`` from the same features (computed once: they hold no weights) and the state
    moves by their mean. Members trained apart make errors that partly cancel in the mean (as in
    PETS/MBPO ensembles); measured on W0's ranking test in the README. Training
    (`psi_gym.world_model.losses.dynamics_loss`) unrolls each member on its own predictions.
    Same interface as `StateDynamics`."""

    def __init__(self, num_members: int, hidden_dim: int = 512, num_layers: int = 3, contact_width: int = 0,
                 joint_prior: bool = False) -> None:
        super().__init__()
        if num_members < 2:
            raise ValueError(f"an ensemble has at least 2 members, got {num_members}")
        self.members = nn.ModuleList(StateDynamics(hidden_dim, num_layers, contact_width, joint_prior)
                                     for _ in range(num_members))

    @property
    def lead(self) -> StateDynamics:
        return self.members[0]

    @property
    def num_joints(self) -> int:
        return self.lead.num_joints

    @property
    def joint_step(self) -> torch.Tensor:
        return self.lead.joint_step

    @property
    def kinematics(self) -> HandKinematics:
        return self.lead.kinematics

    def normalize_joints(self, q: torch.Tensor) -> torch.Tensor:
        return self.lead.normalize_joints(q)

    def target_geometry(self, joint_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lead.target_geometry(joint_targets)

    def features(self, state: WorldState, joint_targets: torch.Tensor,
                 target_geometry: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        return self.lead.features(state, joint_targets, target_geometry)

    def delta(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([member.delta(features) for member in self.members]).mean(0)

    def step(self, state: WorldState, joint_targets: torch.Tensor,
             target_geometry: tuple[torch.Tensor, torch.Tensor] | None = None) -> WorldState:
        return self.lead.advance(state, self.delta(self.features(state, joint_targets, target_geometry)), joint_targets)

    def advance(self, state: WorldState, delta: torch.Tensor, joint_targets: torch.Tensor) -> WorldState:
        return self.lead.advance(state, delta, joint_targets)


class TensorStep(nn.Module):
    """``dynamics.step`` on plain tensors, ``(q, q_prev, u_prev, p, p_prev, R, R_prev, descriptor, u,
    target_points, target_palm) -> (q', p', R')``: what ``torch.compile`` traces for the unrolled
    training loss (`psi_gym.world_model.losses.dynamics_loss`), with no dataclass or frame in the graph."""

    def __init__(self, dynamics: StateDynamics) -> None:
        super().__init__()
        self.dynamics = dynamics

    def forward(self, q: torch.Tensor, q_prev: torch.Tensor, u_prev: torch.Tensor, p: torch.Tensor, p_prev: torch.Tensor,
                rotation: torch.Tensor, rotation_prev: torch.Tensor, descriptor: torch.Tensor,
                joint_targets: torch.Tensor, target_points: torch.Tensor,
                target_palm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = WorldState(joint_state=q, previous_joint_state=q_prev, previous_joint_target=u_prev,
                           object_position=p, previous_object_position=p_prev,
                           object_rotation=rotation, previous_object_rotation=rotation_prev,
                           object_descriptor=descriptor, scene_frame=descriptor,  # the step never reads the frame
                           hand_joint_state=q, previous_hand_joint_state=q_prev)  # nor the drawn hand
        after = self.dynamics.step(state, joint_targets, (target_points, target_palm))
        return after.joint_state, after.object_position, after.object_rotation


def make_dynamics(num_members: int, hidden_dim: int, num_layers: int, contact_width: int = 0,
                  joint_prior: bool = False) -> StateDynamics | DynamicsEnsemble:
    """One `StateDynamics`, or a `DynamicsEnsemble` of ``num_members`` > 1."""
    if num_members < 1:
        raise ValueError(f"dynamics_members must be >= 1, got {num_members}")
    if contact_width < 0:
        raise ValueError(f"dynamics_contact_width must be >= 0 (0: no contact encoder), got {contact_width}")
    if num_members == 1:
        return StateDynamics(hidden_dim, num_layers, contact_width, joint_prior)
    return DynamicsEnsemble(num_members, hidden_dim, num_layers, contact_width, joint_prior)


def dynamics_members(dynamics: nn.Module) -> list[StateDynamics]:
    """The `StateDynamics` a dynamics is made of (itself, or an ensemble's members)."""
    return list(dynamics.members) if isinstance(dynamics, DynamicsEnsemble) else [dynamics]

"""One world model whose dynamics is the ensemble of several world models' dynamics.

``ensemble_world_model([A, B, C])`` keeps ``A``'s perception and renderer and steps with the mean of
every dynamics member of ``A``, ``B`` and ``C`` (`psi_gym.world_model.dynamics.DynamicsEnsemble`).
The members are typically trained apart from one start (``psi-gym train-w0 --init-from A --parts
dynamics --seed k``); ``psi-gym ensemble-w0 --models A B C --out DIR`` saves the result.
"""

from __future__ import annotations

from collections.abc import Sequence

from .dynamics import dynamics_members
from .model import WorldModel


def ensemble_world_model(models: Sequence[WorldModel]) -> WorldModel:
    """A new `WorldModel`: ``models[0]``'s perception and renderer, every model's dynamics members.

    Raises:
        ValueError: fewer than two members in all, or dynamics of different sizes.
    """
    if not models:
        raise ValueError("ensemble_world_model needs at least one world model")
    members = [member for model in models for member in dynamics_members(model.dynamics)]
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least 2 dynamics members, the models hold {len(members)}")
    base = models[0]
    sizes = {(model.config.dynamics_hidden_dim, model.config.dynamics_num_layers,
              model.config.dynamics_contact_width, bool(model.config.dynamics_joint_prior)) for model in models}
    if len(sizes) != 1:
        raise ValueError(f"the models' dynamics differ in size (hidden width, layers, contact width, joint prior): "
                         f"{sorted(sizes)}")
    ensemble = base.with_new_dynamics(dynamics_members=len(members))
    state = {f"members.{index}.{key}": value
             for index, member in enumerate(members) for key, value in member.state_dict().items()}
    missing, unexpected = ensemble.dynamics.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"the models do not fit one ensemble (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return ensemble

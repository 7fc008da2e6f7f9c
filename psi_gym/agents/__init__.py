"""Psi-R2 and the refiners: TorchRL policy modules, behaviour cloning, refinement inside W0 (a
population search and PPO), and policy evaluation in W0 against the simulator.

* ``policy.py``: `PsiR2Policy` (a tiny Wan transformer or a smaller CNN head; action chunk, next
  frame, fingertip touch), `PsiR2Config`;
* ``modules.py``: its TorchRL form (`make_actor`: `ProbabilisticActor` + `TanhNormal`;
  `make_critic`: `ValueOperator`; `make_torchrl_env`: `GymWrapper` + the synergy action map);
* ``behavior_cloning.py``: samples from retargeted human demos and robot rollouts, touch as a
  masked label, `train_behavior_cloning` (``psi-gym train-r2``);
* ``rollouts.py``: plans and policies run through the W0 vector env and through the simulator;
* ``search.py``: `cem_search`, the population-search refiner;
* ``ppo.py``: `ppo_refine`, PPO with TorchRL's `Collector`, `GAE`, `ClipPPOLoss`;
* ``refine.py``: ``psi-gym refine``: refinement of held-out demos, sim-verified, with its controls;
* ``evaluation.py``: ``psi-gym evaluate``: policies' success estimated in W0 vs true in the sim;
* ``commands.py``: the part's subcommands.

Names are imported lazily so that ``import psi_gym.agents`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PsiR2Config": "psi_gym.agents.policy",
    "PsiR2Policy": "psi_gym.agents.policy",
    "make_actor": "psi_gym.agents.modules",
    "make_critic": "psi_gym.agents.modules",
    "make_torchrl_env": "psi_gym.agents.modules",
    "BCConfig": "psi_gym.agents.behavior_cloning",
    "train_behavior_cloning": "psi_gym.agents.behavior_cloning",
    "SearchConfig": "psi_gym.agents.search",
    "cem_search": "psi_gym.agents.search",
    "PPOConfig": "psi_gym.agents.ppo",
    "ppo_refine": "psi_gym.agents.ppo",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)

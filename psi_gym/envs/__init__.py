"""Gymnasium environments inside the Psi-W0 world model (one env per file).

* ``PsiW0-Retarget-v0`` (`psi_w0_retarget.PsiW0RetargetEnv`; native vector env
  `psi_w0_retarget_vector.PsiW0RetargetVectorEnv`): refine a retargeted human demo with a
  residual policy, judged by a pluggable reward model. Registered by ``import psi_gym``.
* ``psi_w0_retarget_core.py``: the batched core both share (`PsiW0RetargetCore`, handed a
  world model, reward model and demo set; `PsiW0RetargetConfig`; `WorldStepper`, what it steps
  with: a `WorldModel`, or the simulator in ``sim_retarget.py``'s PsiSim-Retarget-v0, the same
  task stepped in the ground truth); ``demo_set.py``: the demo sets
  episodes start from; ``sb3.py``: a Stable-Baselines3 `VecEnv` over the native vector env;
  ``commands.py``: ``psi-gym bench``.

Names are imported lazily so that ``import psi_gym`` (which registers the env) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PsiW0RetargetEnv": "psi_gym.envs.psi_w0_retarget",
    "PsiW0RetargetVectorEnv": "psi_gym.envs.psi_w0_retarget_vector",
    "PsiW0RetargetConfig": "psi_gym.envs.psi_w0_retarget_core",
    "PsiW0RetargetCore": "psi_gym.envs.psi_w0_retarget_core",
    "WorldStepper": "psi_gym.envs.psi_w0_retarget_core",
    "SB3VecEnv": "psi_gym.envs.sb3",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PsiW0RetargetConfig", "PsiW0RetargetCore", "PsiW0RetargetEnv", "PsiW0RetargetVectorEnv", "SB3VecEnv",
           "WorldStepper"]

"""Psi-W0: the state-grounded, action-conditioned video world model (diffusers Wan renderer).

Public API::

    from psi_gym.world_model import WorldModel, WorldModelConfig, TrainConfig, train_world_model

    model = WorldModel.from_pretrained("default")         # or a folder, or a Wan diffusers folder
    state = model.initial_state(first_frames, joints)     # the object read off the first frames
    out = model.predict(context_frames, context_state, action, instruction, generator=g, world_state=state)
    out.frames, out.state, out.object_position            # frame/joints/object position at t+1
    state = out.world_state                               # handed back on the next step

Files: ``config.py`` (dataclasses), ``model.py`` (`WorldModel`), ``world_state.py`` (the tracked
state, rotations), ``perception.py`` (the object read off a frame), ``dynamics.py`` (one control
step of hand and object), ``hand_geometry.py`` (forward kinematics, the camera), ``sketch.py``
(a state drawn as image channels), ``sampler.py`` (flow-matching sampler), ``text_encoder.py``
(MiniLM instruction embeddings), ``checkpoint.py`` (folders, errors, optimizer state),
``loading.py`` (`load_world_model`: a name or folder -> a model, once per weights), ``dataset.py``
(training samples), ``losses.py`` and ``training.py`` (trainer), ``schedule.py`` (learning rate),
``evaluation.py`` (PSNR and open-loop prediction), ``fidelity.py`` (the report against the
simulator), ``benchmark.py`` (predict speed), ``commands.py`` (``psi-gym train-w0``,
``bench-w0``; ``eval-w0`` is `psi_gym.agents.commands`').
"""

import importlib
from typing import Any

# Lazy: `import psi_gym.world_model.config` (the CLI's argument defaults) must not pull in
# diffusers and torch; the heavy modules load on first use of a name.
_EXPORTS = {
    "CheckpointError": "checkpoint",
    "default_checkpoint_path": "checkpoint",
    "DEBUG_BACKBONE": "config",
    "INFERENCE_DTYPES": "config",
    "TrainConfig": "config",
    "WAN22_TI2V_5B_BACKBONE": "config",
    "WanBackboneConfig": "config",
    "WorldModelConfig": "config",
    "debug_config": "config",
    "tiny_config": "config",
    "load_world_model": "loading",
    "WorldModel": "model",
    "WorldState": "world_state",
    "WorldModelOutput": "model",
    "train_world_model": "training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value

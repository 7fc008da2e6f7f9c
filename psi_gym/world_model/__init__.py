"""Psi-W0: the action-conditioned video world model (diffusers Wan backbone, flow matching).

Public API::

    from psi_gym.world_model import WorldModel, WorldModelConfig, TrainConfig, train_world_model

    model = WorldModel.from_pretrained("default")         # or a folder, or a Wan diffusers folder
    out = model.predict(context_frames, context_state, action, instruction, generator=g)
    out.frames, out.state, out.object_position            # frame/state/object position at t+1

Files: ``config.py`` (dataclasses), ``model.py`` (`WorldModel`), ``sampler.py`` (flow-matching
sampler), ``text_encoder.py`` (MiniLM instruction embeddings), ``checkpoint.py`` (folders, errors,
optimizer state), ``loading.py`` (`load_world_model`: a name or folder -> a model, once per
weights), ``dataset.py`` (training windows), ``training.py`` (trainer), ``schedule.py`` (learning
rate), ``evaluation.py`` (PSNR and open-loop prediction), ``fidelity.py`` (the report against the
simulator), ``benchmark.py`` (predict speed), ``commands.py`` (``psi-gym train-w0``, ``bench-w0``,
``eval-w0``), ``synthetic.py`` (a 2-D stand-in world for development).
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
    "WorldModelForwardOutput": "model",
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

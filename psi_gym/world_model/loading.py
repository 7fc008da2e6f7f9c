"""What users name as a world model -> a `WorldModel` ready for inference, loaded once per weights.

`load_world_model` is the one place a world model is resolved by name (``gym.make(...,
world_model=...)``, ``psi-gym bench``, ``psi-gym eval-w0``); parts below the edges are handed the
object.

* a `WorldModel`: used as is (put in eval mode);
* ``"default"``, a world-model folder or a Wan diffusers folder: `WorldModel.from_pretrained`
  through the process asset cache of `psi_gym.data.assets`, keyed by folder, device and dtype and
  checked against the fingerprint of the folder's weights, so new weights saved into the folder are
  loaded on the next call (``psi_gym.data.assets.clear()`` forgets everything);
* ``"random:tiny"`` / ``"random:debug"``: untrained weights (seed 0) of the shipped / the test
  size, for speed checks and smoke tests; cached by name.

Weights load in ``dtype`` the diffusers way (``from_pretrained(torch_dtype=...)``; an untrained
model is cast the same way by `cast_like_from_pretrained`): the modules diffusers keeps in float32
(norms, ``scale_shift_table``, the timestep embedder) stay float32, and ``model.to(dtype)``'s
warning about them never prints.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from psi_gym.data.assets import cached, load_asset

from .checkpoint import WORLD_MODEL_ASSET, cast_like_from_pretrained
from .config import INFERENCE_DTYPES, debug_config, tiny_config
from .model import WorldModel

RANDOM_WORLD_MODELS = ("random:tiny", "random:debug")


def load_world_model(spec: Any = "default", device: str | None = None, dtype: str = "float32") -> WorldModel:
    """A `WorldModel`, ``"default"``, a folder (Psi-W0 or Wan diffusers) or ``"random:tiny"`` /
    ``"random:debug"`` -> a world model in eval mode on ``device`` (default: CUDA if available,
    else CPU), its weights in ``dtype`` (one of `INFERENCE_DTYPES`). See the module doc.

    Raises:
        FileNotFoundError: no folder at the path / the default checkpoint is not shipped.
        psi_gym.world_model.checkpoint.CheckpointError: the folder is not a loadable world model.
        ValueError: an unknown dtype. TypeError: something that names no world model.
    """
    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"world-model dtype must be one of {INFERENCE_DTYPES}, got {dtype!r}")
    if isinstance(spec, WorldModel):
        return spec.eval()
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"world_model must be a WorldModel, 'default', a folder or one of {RANDOM_WORLD_MODELS}, "
                        f"got {type(spec).__name__}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = getattr(torch, dtype)
    name = str(spec)
    if name in RANDOM_WORLD_MODELS:
        return cached((WORLD_MODEL_ASSET.name, name, device, dtype), None,
                      lambda: cast_like_from_pretrained(_random_world_model(name), torch_dtype).to(device).eval())

    def load(folder: os.PathLike) -> WorldModel:
        return WorldModel.from_pretrained(folder, torch_dtype=torch_dtype).to(device).eval()

    return load_asset(WORLD_MODEL_ASSET, spec, load, device, dtype)


def _random_world_model(name: str) -> WorldModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return WorldModel.from_model_config(tiny_config() if name == "random:tiny" else debug_config())


__all__ = ["RANDOM_WORLD_MODELS", "load_world_model"]

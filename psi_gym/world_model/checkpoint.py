"""Finding, validating and loading world-model checkpoints; optimizer state without pickle.

Two folder layouts load through `WorldModel.from_pretrained`:

* a Psi-W0 folder written by `save_pretrained`: ``config.json`` (``_class_name: WorldModel``) and
  ``diffusion_pytorch_model.safetensors`` (or its sharded form);
* a Wan2.x diffusers folder (e.g. ``Wan2.2-TI2V-5B-Diffusers``): ``transformer/config.json`` with a
  `WanTransformer3DModel` and its safetensors. The transformer becomes the backbone; the rest of
  the world model starts fresh and must be fine-tuned (``psi-gym train-w0 --init-from ...``).

Only local folders are read, and only safetensors: a checkpoint never runs code on load. A
sharded checkpoint's ``*.safetensors.index.json`` that names a shard in another format (a pickle
``.bin``) is refused when the folder is resolved (`psi_gym.data.assets.unsafe_weight_files`),
before diffusers or torch see it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from psi_gym.data.assets import AssetKind

from .config import WanBackboneConfig, WorldModelConfig, renderer_in_channels

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
CONFIG_NAME = "config.json"
OPTIMIZER_TENSORS_NAME = "optimizer.safetensors"
OPTIMIZER_META_NAME = "optimizer.json"


class CheckpointError(ValueError):
    """A checkpoint folder exists but does not hold a loadable world model."""


WORLD_MODEL_ASSET = AssetKind(
    name="world model",
    default_folder="w0-default",
    marker=CONFIG_NAME,
    missing_default=(
        "the default Psi-W0 checkpoint is not at {path}. Train it on robot rollouts with "
        "`psi-gym collect ...` then `psi-gym train-w0 --data <rollouts> --out {path}` "
        "(or pass the folder of another checkpoint to WorldModel.from_pretrained)."
    ),
    missing_folder=(
        f"no world-model checkpoint folder at {{path}}: expected a local folder holding config.json + "
        f"{WEIGHTS_NAME} (from WorldModel.save_pretrained) or a Wan diffusers folder with transformer/; "
        "download Hub checkpoints first (e.g. `huggingface-cli download <repo> --local-dir <folder>`)"
    ),
    # a Wan diffusers folder keeps its transformer one level down
    files=("*.safetensors", "*.json", "transformer/*.safetensors", "transformer/*.json"),
)
"""How ``"default"`` and folders name a world model (`psi_gym.data.assets`)."""


def default_checkpoint_path() -> Path:
    """``psi_gym/assets/w0-default``: the checkpoint that ships with the package."""
    return WORLD_MODEL_ASSET.default_path


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not a readable JSON config: {error}") from None


def _has_weights(folder: Path) -> bool:
    return (folder / WEIGHTS_NAME).is_file() or (folder / WEIGHTS_INDEX_NAME).is_file()


def load_pretrained(cls: type, name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
    """``WorldModel.from_pretrained``: load ``cls`` from ``"default"``, a Psi-W0 folder or a Wan
    diffusers folder (see the module doc); ``kwargs`` go to diffusers (``torch_dtype`` ...)."""
    path = WORLD_MODEL_ASSET.resolve(name_or_path)
    config_path = path / CONFIG_NAME
    if config_path.is_file():
        config = _read_config(config_path)
        class_name = config.get("_class_name")
        if class_name == cls.__name__:
            return _load_psi_folder(cls, path, **kwargs)
        if class_name == "WanTransformer3DModel":
            return _load_wan_folder(cls, path, transformer_folder=path, **kwargs)
        if not (path / "transformer" / CONFIG_NAME).is_file():
            raise CheckpointError(
                f"{config_path} describes {class_name!r}, expected a {cls.__name__} config "
                "(written by WorldModel.save_pretrained) or a Wan diffusers folder with transformer/config.json"
            )
    if (path / "transformer" / CONFIG_NAME).is_file():
        return _load_wan_folder(cls, path, transformer_folder=path / "transformer", **kwargs)
    raise CheckpointError(
        f"{path} holds no {CONFIG_NAME}: expected a world-model folder from WorldModel.save_pretrained "
        f"({CONFIG_NAME} + {WEIGHTS_NAME}) or a Wan diffusers folder with transformer/{CONFIG_NAME}"
    )


def is_wan_folder(name_or_path: str | os.PathLike) -> bool:
    """True for a Wan diffusers folder (a `WanTransformer3DModel` in ``transformer/`` or at the top)."""
    path = Path(name_or_path)
    if str(name_or_path) == "default" or not path.is_dir():
        return False
    if (path / CONFIG_NAME).is_file():
        try:
            class_name = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8")).get("_class_name")
        except (OSError, ValueError):
            return False
        if class_name == "WanTransformer3DModel":
            return True
        if class_name == "WorldModel":
            return False
    return (path / "transformer" / CONFIG_NAME).is_file()


def _check_loading_info(path: Path, info: dict[str, list]) -> None:
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing weights {sorted(info['missing_keys'])[:8]}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected weights {sorted(info['unexpected_keys'])[:8]}")
    if info.get("mismatched_keys"):
        problems.append(f"weights of the wrong shape {info['mismatched_keys'][:8]}")
    if info.get("error_msgs"):
        problems.append(f"errors {info['error_msgs'][:4]}")
    if problems:
        raise CheckpointError(
            f"the weights in {path} do not match its config.json: " + "; ".join(problems)
            + ". The folder is corrupt or config.json belongs to another model."
        )


def _load_psi_folder(cls: type, path: Path, **kwargs: Any) -> Any:
    if not _has_weights(path):
        raise CheckpointError(f"{path} has {CONFIG_NAME} but no {WEIGHTS_NAME}: the weights are missing")
    kwargs.setdefault("use_safetensors", True)
    if not kwargs["use_safetensors"]:
        raise CheckpointError("world models load from safetensors only (use_safetensors=False is refused)")
    try:
        model, info = cls._diffusers_from_pretrained(str(path), output_loading_info=True, **kwargs)
    except CheckpointError:
        raise
    except Exception as error:  # diffusers/safetensors raise OSError, ValueError, SafetensorError...
        raise CheckpointError(
            f"could not load the world model in {path} (expected {CONFIG_NAME} + an intact {WEIGHTS_NAME} "
            f"matching it): {type(error).__name__}: {error}"
        ) from error
    _check_loading_info(path, info)
    return model


def adapt_backbone_channels(transformer: nn.Module, in_channels: int, out_channels: int, zero_out: bool) -> None:
    """Give a pretrained Wan transformer the world model's pixel channel counts, in place.

    A latent-space Wan (48 channels for Wan2.2-TI2V-5B) cannot read pixels, so the patch
    embedding and the output projection are replaced by fresh layers of the right size; every
    transformer block keeps its pretrained weights.
    """
    config = transformer.config
    inner_dim = config.num_attention_heads * config.attention_head_dim
    patch = tuple(config.patch_size)
    reference = transformer.proj_out.weight
    if config.in_channels != in_channels:
        logger.warning(
            "backbone in_channels %d -> %d: the patch embedding starts fresh", config.in_channels, in_channels
        )
        transformer.patch_embedding = nn.Conv3d(in_channels, inner_dim, kernel_size=patch, stride=patch).to(
            reference.device, reference.dtype
        )
    if (config.out_channels or config.in_channels) != out_channels:
        logger.warning(
            "backbone out_channels %d -> %d: the output projection starts fresh", config.out_channels, out_channels
        )
        transformer.proj_out = nn.Linear(inner_dim, out_channels * math.prod(patch)).to(
            reference.device, reference.dtype
        )
        if zero_out:
            nn.init.zeros_(transformer.proj_out.weight)
            nn.init.zeros_(transformer.proj_out.bias)
    transformer.register_to_config(in_channels=in_channels, out_channels=out_channels)


def _load_wan_folder(cls: type, path: Path, transformer_folder: Path, **kwargs: Any) -> Any:
    from diffusers import WanTransformer3DModel

    if "backbone" in kwargs:
        raise CheckpointError("a Wan folder fixes the backbone; do not pass backbone=")
    config_names = set(WorldModelConfig.__dataclass_fields__) - {"backbone"}
    overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in config_names}
    wan_config = _read_config(transformer_folder / CONFIG_NAME)
    if wan_config.get("_class_name") != "WanTransformer3DModel":
        raise CheckpointError(
            f"{transformer_folder / CONFIG_NAME} describes {wan_config.get('_class_name')!r}, "
            "expected WanTransformer3DModel"
        )
    if wan_config.get("image_dim") or wan_config.get("added_kv_proj_dim") or wan_config.get("pos_embed_seq_len"):
        raise CheckpointError(
            f"{transformer_folder} is a Wan image-encoder (I2V/FLF2V) transformer; the world model builds on "
            "text/TI2V transformers without CLIP image tokens (image_dim, added_kv_proj_dim must be null)"
        )
    if not _has_weights(transformer_folder):
        raise CheckpointError(f"{transformer_folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}: the weights are missing")
    kwargs.setdefault("use_safetensors", True)
    try:
        transformer, info = WanTransformer3DModel.from_pretrained(
            str(transformer_folder), output_loading_info=True, **kwargs
        )
    except Exception as error:
        raise CheckpointError(
            f"could not load the Wan transformer in {transformer_folder}: {type(error).__name__}: {error}"
        ) from error
    _check_loading_info(transformer_folder, info)

    config = WorldModelConfig.from_kwargs({**overrides, "backbone": dict(wan_config)})
    patch = config.backbone.patch_size
    if patch[0] != 1 or config.image_size % patch[1] or config.image_size % patch[2]:
        raise CheckpointError(
            f"the Wan backbone's patch_size {tuple(patch)} does not tile image_size={config.image_size}"
        )
    adapt_backbone_channels(
        transformer,
        in_channels=renderer_in_channels(),
        out_channels=3,
        zero_out=True,
    )
    model = cls(**config.to_kwargs(), pretrained_backbone=transformer)
    # the fresh parts take the dtype the transformer was loaded in, the diffusers way
    if kwargs.get("torch_dtype") is not None:
        cast_like_from_pretrained(model, kwargs["torch_dtype"])
    return model.to(transformer.device)


def cast_like_from_pretrained(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``model``'s floating weights to ``dtype`` in place, as diffusers'
    ``from_pretrained(torch_dtype=dtype)`` does: state-dict tensors of the modules named in
    ``model._keep_in_fp32_modules`` (norms, ``scale_shift_table``, the timestep embedder ...) become
    float32 instead, and non-persistent buffers are left as they are. Unlike ``model.to(dtype)``
    this neither casts those modules nor prints diffusers' warning about them."""
    keep = list(getattr(model, "_keep_in_fp32_modules", None) or [])
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue
            target = torch.float32 if any(module in name.split(".") for module in keep) else dtype
            if tensor.dtype != target:
                tensor.data = tensor.data.to(target)
    return model


# ------------------------------------------------------------------------- optimizer state
def save_optimizer_state(optimizer: torch.optim.Optimizer, folder: str | os.PathLike) -> None:
    """Write ``optimizer.state_dict()`` as safetensors (tensors) + JSON (everything else)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for param_id, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            name = f"{param_id}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value.detach().to("cpu").contiguous()
            else:
                scalars[name] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    tmp_tensors = folder / (OPTIMIZER_TENSORS_NAME + ".tmp")
    tmp_meta = folder / (OPTIMIZER_META_NAME + ".tmp")
    save_file(tensors, str(tmp_tensors))
    tmp_meta.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    os.replace(tmp_tensors, folder / OPTIMIZER_TENSORS_NAME)
    os.replace(tmp_meta, folder / OPTIMIZER_META_NAME)


def load_optimizer_state(optimizer: torch.optim.Optimizer, folder: str | os.PathLike) -> None:
    """Inverse of `save_optimizer_state`."""
    folder = Path(folder)
    try:
        tensors = load_file(str(folder / OPTIMIZER_TENSORS_NAME))
        meta = json.loads((folder / OPTIMIZER_META_NAME).read_text(encoding="utf-8"))
    except Exception as error:
        raise CheckpointError(f"optimizer state in {folder} is missing or corrupt: {error}") from error
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    for name, value in meta["scalars"].items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


__all__ = [
    "WORLD_MODEL_ASSET",
    "CheckpointError",
    "WanBackboneConfig",
    "adapt_backbone_channels",
    "cast_like_from_pretrained",
    "default_checkpoint_path",
    "is_wan_folder",
    "load_optimizer_state",
    "load_pretrained",
    "save_optimizer_state",
]

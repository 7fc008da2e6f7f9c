"""Read the outcome off a frame: where the object is and whether each task's success holds.

A world model predicts frames, not simulator state, so rewards computed inside it must be read
off pixels. `ObjectStateEstimator` is a small CNN that looks at ONE frame and returns

====================== ======================= ==============================================
output                 shape, dtype            meaning
====================== ======================= ==============================================
position               (B, 3) float32          object centre in world coordinates, metres
success_margin         (B, num_tasks) float32  signed distance (m) to task k's success
                                               boundary in this frame: > 0 inside (success)
success_logits         (B, num_tasks) float32  logit that task k's success condition holds
                                               *in this frame* (task order: ``task_names``):
                                               ``success_margin / temperature_k``
====================== ======================= ==============================================

The success condition is the simulator's (`psi_gym.sim.tasks.Task.is_success`) applied to the
object pose of that frame: lift tasks, the object is raised at least ``LIFT_HEIGHT`` above its
resting height; push, the box rests within ``PUSH_TOLERANCE`` of the mark. Its margin
(`frame_success_margins`) is ``z - (rest_z + LIFT_HEIGHT)`` for lifting and
``min(PUSH_TOLERANCE - |xy - mark|, rest_z + 0.02 - z)`` for pushing. The logits are the margin
over a learned per-task temperature, so the network learns *how far* from the boundary a frame
is (a sharp, regressable target, also a dense shaping signal), not only which side: a plain
classification head was overconfident a few millimetres outside the push tolerance. Head ``k`` is
only meaningful for frames of scenes of task ``k`` (it is trained on those alone).

Input convention: frames as the sim and the world model produce them, ``(B, H, W, 3)`` uint8
(numpy or torch) for `predict` and `success_probability`; `forward` takes the network's own
units, ``(B, 3, H, W)`` float in [0, 1], made by `frames_to_pixel_values`.

Load the shipped weights with ``ObjectStateEstimator.from_pretrained("default")``
(``psi_gym/assets/estimator-default``); train new ones with
``psi-gym train-estimator --data DIR --out DIR``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import nn

from psi_gym.data.assets import AssetKind, ConfigWithoutOrigin, cached, load_asset
from psi_gym.sim.scene import SceneParams
from psi_gym.sim.tasks import LIFT_HEIGHT, PUSH_TOLERANCE, TASKS, get_task

DEFAULT_ESTIMATOR = "default"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
TRAIN_COMMAND = "psi-gym train-estimator --data DIR --out DIR"
MARGIN_UNIT = 0.01  # m: the margin head outputs centimetres
MARGIN_CLIP = 0.05  # m: margins are learned up to +-5 cm (farther only says "clearly in/out")


class EstimatorCheckpointError(ValueError):
    """A checkpoint folder exists but does not hold a loadable `ObjectStateEstimator`."""


@dataclass
class ObjectStateOutput(BaseOutput):
    """What `ObjectStateEstimator` returns for ``B`` frames.

    Args:
        position: (B, 3) float32, object centre in world coordinates, metres.
        success_logits: (B, num_tasks) float32, logit that task ``k``'s success condition holds
            in the frame; task order is ``estimator.task_names``.
        success_margin: (B, num_tasks) float32, signed distance in metres to task ``k``'s success
            boundary (> 0: the condition holds), as learned up to ``MARGIN_CLIP``.
    """

    position: torch.Tensor
    success_logits: torch.Tensor
    success_margin: torch.Tensor | None = None


@dataclass
class ObjectStateEstimatorConfig:
    """Typed view of `ObjectStateEstimator`'s ``config.json``."""

    image_size: int = 64
    """side of the square input frames, pixels."""
    channels: tuple[int, ...] = (32, 32, 64, 64)
    """output channels of the conv layers; each halves the resolution (3x3, stride 2)."""
    hidden_dim: int = 128
    """width of the MLP on the flattened last feature map."""
    coordinate_channels: bool = True
    """append x, y pixel coordinates to the input (where a thing is matters for position)."""
    task_names: tuple[str, ...] = tuple(sorted(TASKS))
    """one success head per task, in this order."""
    position_mean: tuple[float, float, float] = (0.0, 0.0, 0.05)
    """world-coordinate mean of the object centre (m); the position head predicts normalised units."""
    position_std: tuple[float, float, float] = (0.05, 0.05, 0.03)
    """world-coordinate spread of the object centre (m)."""

    def to_kwargs(self) -> dict[str, Any]:
        """Flat keyword arguments of `ObjectStateEstimator.__init__` (what ``config.json`` holds)."""
        out = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in out.items()}

    @classmethod
    def from_kwargs(cls, values: dict[str, Any]) -> ObjectStateEstimatorConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
        return cls(**kwargs)


def frames_to_pixel_values(frames: np.ndarray | torch.Tensor, image_size: int | None = None,
                           device: torch.device | str | None = None) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 frames (numpy or torch) -> ``(B, 3, H, W)`` float32 in [0, 1].

    Raises:
        ValueError: wrong type, dtype, rank or size, saying what was expected.
    """
    expected = f"(B, {image_size or 'H'}, {image_size or 'W'}, 3) uint8 frames (numpy or torch)"
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be {expected}, got dtype {frames.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(frames))
    elif isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            raise ValueError(
                f"frames must be {expected}, got dtype {frames.dtype} "
                "(for float (B, 3, H, W) images in [0, 1] call the estimator itself, i.e. forward)"
            )
        tensor = frames
    else:
        raise ValueError(f"frames must be {expected}, got {type(frames).__name__}")
    if tensor.ndim != 4 or tensor.shape[-1] != 3:
        hint = ""
        if tensor.ndim == 3:
            hint = " (one frame? add a batch axis: frames[None])"
        elif tensor.ndim == 4 and tensor.shape[1] == 3:
            hint = " (channels first? frames are channels last: (B, H, W, 3))"
        raise ValueError(f"frames must be {expected}, got shape {tuple(tensor.shape)}{hint}")
    if image_size is not None and tuple(tensor.shape[1:3]) != (image_size, image_size):
        raise ValueError(f"frames must be {expected}, got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValueError(f"frames must be {expected} with B >= 1, got an empty batch")
    return tensor.to(device).permute(0, 3, 1, 2).float().div_(255.0)


def frame_success_margins(episode: Any) -> np.ndarray:
    """(T+1,) float32: signed distance (m) of each frame to its task's success boundary (> 0: holds).

    The same rule as `Task.is_success` (tests check the signs agree): lifting,
    ``z - (rest_z + LIFT_HEIGHT)``; pushing, ``min(PUSH_TOLERANCE - |xy - mark|, rest_z + 0.02 - z)``.
    """
    scene = SceneParams.from_dict(episode.scene)
    position = np.asarray(episode.object_pose[:, :3], dtype=np.float64)
    if episode.task.startswith("lift"):
        margin = position[:, 2] - (scene.object_rest_z + LIFT_HEIGHT)
    elif episode.task.startswith("push"):
        distance = np.linalg.norm(position[:, :2] - np.asarray(scene.mark_xy), axis=1)
        margin = np.minimum(PUSH_TOLERANCE - distance, scene.object_rest_z + 0.02 - position[:, 2])
    else:
        raise ValueError(f"no success margin for task {episode.task!r}: expected lift_* or push_*")
    return margin.astype(np.float32)


def frame_success_labels(episode: Any) -> np.ndarray:
    """(T+1,) bool: does the episode's task success condition hold at each frame?

    Computed by the simulator's own rule (`Task.is_success`) on the recorded object pose.
    """
    task = get_task(episode.task)
    scene = SceneParams.from_dict(episode.scene)
    return np.array([task.is_success(scene, pose) for pose in episode.object_pose], dtype=bool)


@functools.lru_cache(maxsize=1)
def _front_camera() -> tuple[np.ndarray, np.ndarray, float]:
    """(position, rotation camera->world, vertical fov in degrees) of the scene's ``front`` camera."""
    import mujoco

    from psi_gym.sim.hands import hand_spec
    from psi_gym.sim.scene import scene_xml

    model = mujoco.MjModel.from_xml_string(scene_xml(hand_spec("robot"), "apple", 64))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    camera = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "front")
    return data.cam_xpos[camera].copy(), data.cam_xmat[camera].reshape(3, 3).copy(), float(model.cam_fovy[camera])


def object_in_view(position: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(N,) bool: does the object centre (N, 3) (m) project inside the front camera's image?

    Objects that roll off the table towards the camera, or are flung away by an unstable
    simulation step, leave the image; their position cannot be read off a frame, so training
    and evaluation of the position head skip such frames. ``margin`` shrinks the image border
    by that fraction of the half-width.
    """
    position = np.asarray(position, dtype=np.float64).reshape(-1, 3)
    camera_position, rotation, fovy = _front_camera()
    # MuJoCo camera frame: x right, y up, looking along -z.
    local = (position - camera_position) @ rotation
    depth = -local[:, 2]
    limit = np.tan(np.deg2rad(fovy) / 2) * (1.0 - margin)  # square image: same half-angle both ways
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (np.abs(local[:, 0] / depth) <= limit) & (np.abs(local[:, 1] / depth) <= limit)
    return (depth > 1e-3) & inside


ESTIMATOR_ASSET = AssetKind(
    name="object-state estimator",
    default_folder="estimator-default",
    marker=CONFIG_NAME,
    missing_default=(
        f"the default object-state estimator is not at {{path}} (expected {CONFIG_NAME} + {WEIGHTS_NAME}). "
        f"Collect rollouts with `psi-gym collect --num 1500 --out ROLLOUTS` and train it with "
        f"`psi-gym train-estimator --data ROLLOUTS --out {{path}}`."
    ),
    missing_folder=(
        f"no estimator folder at {{path}}: expected a local folder holding {CONFIG_NAME} + {WEIGHTS_NAME} "
        f"(from ObjectStateEstimator.save_pretrained); train one with `{TRAIN_COMMAND}`"
    ),
    files=(WEIGHTS_NAME, CONFIG_NAME),
)
"""How ``"default"`` and folders name an estimator (`psi_gym.data.assets`)."""
RANDOM_ESTIMATOR = "random"


def default_estimator_path() -> Path:
    """``psi_gym/assets/estimator-default``: the estimator that ships with the package."""
    return ESTIMATOR_ASSET.default_path


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    groups = 8 if out_channels % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
        nn.GroupNorm(groups, out_channels),
        nn.SiLU(),
    )


class ObjectStateEstimator(ConfigWithoutOrigin, ModelMixin, ConfigMixin):
    """Object position and per-task success from one 64x64 RGB frame (see the module doc).

    Build one with ``ObjectStateEstimator.from_estimator_config(ObjectStateEstimatorConfig(...))``
    (the keyword arguments below are the flat form stored in ``config.json``), load one with
    ``ObjectStateEstimator.from_pretrained(path_or_"default")``, use it with `predict` or
    `success_probability`.

    Network: [RGB, x, y] -> ``len(channels)`` conv layers (3x3, stride 2, GroupNorm, SiLU) ->
    flatten the last (image_size / 2**len(channels))**2 map (keeps *where*) -> one hidden layer ->
    two linear heads: position (in units of ``position_std`` around ``position_mean``) and the
    per-task success margin (cm); ``success_logits = margin / temperature_k`` (learned per task).
    """

    config_name = CONFIG_NAME

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        channels: Sequence[int] = (32, 32, 64, 64),
        hidden_dim: int = 128,
        coordinate_channels: bool = True,
        task_names: Sequence[str] = tuple(sorted(TASKS)),
        position_mean: Sequence[float] = (0.0, 0.0, 0.05),
        position_std: Sequence[float] = (0.05, 0.05, 0.03),
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels must name at least one conv layer")
        downsample = 2 ** len(channels)
        if image_size % downsample:
            raise ValueError(f"image_size {image_size} must be divisible by 2**len(channels) = {downsample}")
        for name in task_names:
            get_task(name)
        if len(position_mean) != 3 or len(position_std) != 3 or min(position_std) <= 0:
            raise ValueError(f"position_mean/std must be 3 values (std > 0), got {position_mean}, {position_std}")

        in_channels = 3 + (2 if coordinate_channels else 0)
        layers = []
        for out_channels in channels:
            layers.append(_conv_block(in_channels, out_channels))
            in_channels = out_channels
        self.encoder = nn.Sequential(*layers)
        side = image_size // downsample
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * side * side, hidden_dim), nn.SiLU())
        self.position_head = nn.Linear(hidden_dim, 3)
        self.margin_head = nn.Linear(hidden_dim, len(task_names))
        # logit = margin / temperature; starts at 5 mm per unit of logit.
        self.log_temperature = nn.Parameter(torch.full((len(task_names),), math.log(0.005)))

        # Buffers, not parameters: fixed by the config, saved with the weights for a self-check.
        self.register_buffer("position_offset", torch.tensor(list(position_mean), dtype=torch.float32))
        self.register_buffer("position_scale", torch.tensor(list(position_std), dtype=torch.float32))
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, image_size), torch.linspace(-1, 1, image_size), indexing="ij")
        self.register_buffer("coordinates", torch.stack([xs, ys])[None], persistent=False)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_estimator_config(cls, config: ObjectStateEstimatorConfig) -> ObjectStateEstimator:
        """Build a freshly initialised estimator from the typed config."""
        return cls(**config.to_kwargs())

    @property
    def estimator_config(self) -> ObjectStateEstimatorConfig:
        """The typed view of ``self.config``."""
        return ObjectStateEstimatorConfig.from_kwargs(dict(self.config))

    @property
    def task_names(self) -> list[str]:
        return list(self.config.task_names)

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    # --------------------------------------------------------------------------- network
    def forward(self, pixel_values: torch.Tensor) -> ObjectStateOutput:
        """One network evaluation.

        Args:
            pixel_values: (B, 3, H, W) float in [0, 1] (see `frames_to_pixel_values`).
        """
        size = self.image_size
        if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
            raise ValueError(
                f"pixel_values must be a (B, 3, {size}, {size}) float tensor in [0, 1], got "
                f"{type(pixel_values).__name__} {getattr(pixel_values, 'dtype', '')}; for uint8 (B, H, W, 3) "
                "frames use estimator.predict(frames)"
            )
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
            raise ValueError(
                f"pixel_values must be (B, 3, {size}, {size}) float in [0, 1], got shape {tuple(pixel_values.shape)}"
            )
        x = pixel_values * 2.0 - 1.0
        if self.config.coordinate_channels:
            x = torch.cat([x, self.coordinates.to(x.dtype).expand(x.shape[0], -1, -1, -1)], dim=1)
        hidden = self.mlp(self.encoder(x))
        position = self.position_head(hidden) * self.position_scale + self.position_offset
        # The margin head works in cm (unit-scale outputs); the model speaks metres.
        margin = self.margin_head(hidden) * MARGIN_UNIT
        logits = margin / self.log_temperature.exp()
        return ObjectStateOutput(position=position, success_logits=logits, success_margin=margin)

    # ------------------------------------------------------------------------- inference
    @torch.no_grad()
    def predict(self, frames: np.ndarray | torch.Tensor, batch_size: int = 256) -> ObjectStateOutput:
        """Position and success logits of ``(B, H, W, 3)`` uint8 frames (numpy or torch).

        Runs in eval mode without gradients, in chunks of ``batch_size``; outputs are float32
        tensors on the estimator's device.
        """
        pixel_values = frames_to_pixel_values(frames, self.image_size, self.device)
        was_training = self.training
        self.eval()
        try:
            outputs = [self(chunk) for chunk in pixel_values.split(batch_size)]
        finally:
            self.train(was_training)
        return ObjectStateOutput(
            position=torch.cat([o.position for o in outputs]).float(),
            success_logits=torch.cat([o.success_logits for o in outputs]).float(),
            success_margin=torch.cat([o.success_margin for o in outputs]).float(),
        )

    def task_indices(self, task_names: str | Sequence[str], batch: int) -> torch.Tensor:
        """(B,) head index of each frame's task; a single name applies to all ``batch`` frames."""
        names = [task_names] * batch if isinstance(task_names, str) else list(task_names)
        if len(names) != batch:
            raise ValueError(f"task_names must be one name or {batch} names (one per frame), got {len(names)}")
        known = self.task_names
        unknown = sorted({n for n in names if n not in known})
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}: this estimator has success heads for {known}")
        return torch.tensor([known.index(n) for n in names], dtype=torch.long)

    @torch.no_grad()
    def success_probability(self, frames: np.ndarray | torch.Tensor, task_names: str | Sequence[str]) -> torch.Tensor:
        """(B,) probability that each frame shows its task's success condition.

        Args:
            frames: (B, H, W, 3) uint8 (numpy or torch).
            task_names: one task name for all frames, or B names (one per frame).
        """
        output = self.predict(frames)
        index = self.task_indices(task_names, output.success_logits.shape[0]).to(output.success_logits.device)
        return torch.sigmoid(output.success_logits.gather(1, index[:, None])[:, 0])

    # ------------------------------------------------------------------------ checkpoints
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike = DEFAULT_ESTIMATOR,
                        **kwargs: Any) -> ObjectStateEstimator:
        """Load a saved estimator from a local folder, or ``"default"`` (the shipped one).

        Only safetensors + ``config.json`` are read (never pickle). Extra keyword arguments go
        to diffusers (``torch_dtype`` ...).

        Raises:
            FileNotFoundError: the folder does not exist (says how to train one).
            EstimatorCheckpointError: the folder is not a loadable estimator (missing/corrupt files).
        """
        path = ESTIMATOR_ASSET.resolve(pretrained_model_name_or_path)
        config_path = path / CONFIG_NAME
        expected = f"expected {CONFIG_NAME} + {WEIGHTS_NAME} written by ObjectStateEstimator.save_pretrained"
        how = f"train one with `{TRAIN_COMMAND}`"
        if not config_path.is_file() or not (path / WEIGHTS_NAME).is_file():
            missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (path / n).is_file()]
            raise EstimatorCheckpointError(f"{path} lacks {missing}: {expected}; {how}")
        try:
            class_name = json.loads(config_path.read_text(encoding="utf-8")).get("_class_name")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
            raise EstimatorCheckpointError(f"{config_path} is not a readable JSON config ({error}): {expected}; {how}") from None
        if class_name != cls.__name__:
            raise EstimatorCheckpointError(f"{config_path} describes {class_name!r}, not {cls.__name__}: {expected}")
        kwargs.setdefault("use_safetensors", True)
        if not kwargs["use_safetensors"]:
            raise EstimatorCheckpointError("estimators load from safetensors only (use_safetensors=False is refused)")
        try:
            model, info = super().from_pretrained(str(path), output_loading_info=True, **kwargs)
        except Exception as error:  # diffusers/safetensors raise OSError, ValueError, SafetensorError...
            raise EstimatorCheckpointError(
                f"could not load the estimator in {path} ({expected}, intact and matching): "
                f"{type(error).__name__}: {error}; {how}"
            ) from error
        problems = [f"{key} {sorted(map(str, info[key]))[:6]}" for key in ("missing_keys", "unexpected_keys", "mismatched_keys")
                    if info.get(key)]
        if problems:
            raise EstimatorCheckpointError(f"the weights in {path} do not match its config.json: {'; '.join(problems)}")
        model.eval()
        return model


def load_estimator(spec: ObjectStateEstimator | str | os.PathLike = DEFAULT_ESTIMATOR,
                   device: str | torch.device | None = None) -> ObjectStateEstimator:
    """An estimator object, ``"default"``, a checkpoint folder or ``"random"`` -> an estimator in
    eval mode (a folder's on ``device``, default the CPU; an object stays where it is).

    Folders load through the process asset cache of `psi_gym.data.assets`: many envs share one
    copy (it only ever runs inference), and new weights saved into the folder are loaded on the
    next call. ``"random"`` is untrained (seed 0), for speed checks and smoke tests.

    Raises:
        FileNotFoundError: no folder at the path / the default estimator is not shipped (the
            message says how to train one).
        EstimatorCheckpointError: the folder is not a loadable estimator.
    """
    if isinstance(spec, ObjectStateEstimator):
        return spec.eval()
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"estimator must be an ObjectStateEstimator, 'default', 'random' or a folder, got {type(spec).__name__}")
    device = str(torch.device(device or "cpu"))
    if str(spec) == RANDOM_ESTIMATOR:
        def build() -> ObjectStateEstimator:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                return ObjectStateEstimator.from_estimator_config(ObjectStateEstimatorConfig()).to(device).eval()

        return cached((ESTIMATOR_ASSET.name, RANDOM_ESTIMATOR, device), None, build)
    return load_asset(ESTIMATOR_ASSET, spec, lambda folder: ObjectStateEstimator.from_pretrained(folder).to(device), device)


__all__ = [
    "ESTIMATOR_ASSET",
    "RANDOM_ESTIMATOR",
    "EstimatorCheckpointError",
    "ObjectStateEstimator",
    "ObjectStateEstimatorConfig",
    "ObjectStateOutput",
    "default_estimator_path",
    "frame_success_labels",
    "frame_success_margins",
    "frames_to_pixel_values",
    "load_estimator",
    "object_in_view",
]

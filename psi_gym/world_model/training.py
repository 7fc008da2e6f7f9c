"""Training Psi-W0 on robot episodes (successes and failures), with `accelerate`.

Each step trains the three parts on their own batches (`psi_gym.world_model.losses` has the
formulas): the dynamics on unrolls of its own predictions, growing from a few steps to whole
episodes (`TrainConfig.unroll_schedule`); the renderer on frames drawn from their true states
(flow matching, x0-parameterised, weighted toward the pixels that differ from the first frame);
the perception on frames where the object still rests. The loss is their weighted sum.

Checkpoints: ``out_dir/checkpoint-<step>/`` holds ``model/`` (save_pretrained), the optimizer as
safetensors + JSON, the generator state and ``trainer_state.json`` (step, loss moving averages,
history, config); training resumes from the newest *intact* one: every safetensors file's header
must match its size and every JSON must parse (`checkpoint_problem`), else a warning names what
is broken, the folder is set aside as ``checkpoint-<step>.broken-<token>`` and the previous one is
used. The final model goes to ``out_dir/final/`` (loadable with ``WorldModel.from_pretrained``).
Each is written beside its place, fsynced, and swapped in with `psi_gym.data.atomic.replace_dir`:
a crash leaves the previous complete folder, never none. One trainer per ``out_dir``: the run
holds its lock (`psi_gym.data.atomic.hold_lock`), and a second one fails at once.

Metrics: the loss parts (mean over each 10 steps) and the learning rate go through accelerate's
trackers into ``out_dir/logs/train-w0/`` (`psi_gym.data.metrics`: TensorBoard if installed, else
``metrics.csv`` and ``loss.png``; ``log_with=``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from psi_gym.data.assets import safetensors_problem
from psi_gym.data.atomic import hold_lock, lock_path, replacing_dir, write_bytes_atomic
from psi_gym.data.episode import Episode

from .checkpoint import is_wan_folder, load_optimizer_state, save_optimizer_state
from .config import PARTS, TIME_SAMPLINGS, TrainConfig, WorldModelConfig
from .dataset import EpisodeTensors
from .dynamics import JointResponse, dynamics_members
from .losses import compile_unavailable, compiled_steps, dynamics_loss, perception_loss, renderer_loss
from .model import WorldModel
from .schedule import warmup_cosine_learning_rate
from .symmetry import augment_unrolls

logger = logging.getLogger(__name__)
LOG_EVERY = 10  # steps per logged point (the mean of the loss parts over them)


# ------------------------------------------------------------------------------- data input
def load_episodes(source: Sequence[Episode] | str | os.PathLike | Sequence[str | os.PathLike]) -> list[Episode]:
    """Episodes given directly, or read from one or more LeRobot dataset roots."""
    return list(iter_episodes(source))


def iter_episodes(source: Sequence[Episode] | str | os.PathLike | Sequence[str | os.PathLike]) -> Iterator[Episode]:
    """`load_episodes` one episode at a time: a dataset's frames are decoded as each episode is
    reached, so a caller that keeps only part of each holds no more. The source is checked now."""
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    items = list(source)
    if all(isinstance(item, Episode) for item in items):
        return iter(items)
    if all(isinstance(item, (str, os.PathLike)) for item in items):
        from psi_gym.data.lerobot import EpisodeDataset  # written alongside; imported only when used

        return (episode for root in items for episode in EpisodeDataset(root))
    raise ValueError("episodes must be a list of Episode objects or of dataset root folders")


def _prepare_episodes(episodes: list[Episode], config: TrainConfig, model_config: WorldModelConfig) -> list[Episode]:
    if config.robot_only:
        episodes = [ep for ep in episodes if ep.embodiment == "robot"]
    if not episodes:
        raise ValueError("no robot episodes to train on")
    size = model_config.image_size
    for ep in episodes:
        if ep.image_size != (size, size):
            raise ValueError(f"episode frames are {ep.image_size}, the world model expects {size}x{size}")
        if ep.state.shape[1] != model_config.state_dim or ep.action.shape[1] != model_config.action_dim:
            raise ValueError(
                f"episode state/action widths {ep.state.shape[1]}/{ep.action.shape[1]} differ from the model's "
                f"{model_config.state_dim}/{model_config.action_dim}"
            )
        if ep.num_steps < 1:
            raise ValueError("episodes need at least one step")
    return episodes


# ---------------------------------------------------------------------------- checkpoints
def _checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in out_dir.glob("checkpoint-*"):
        # only complete checkpoints: not a temporary folder, an old copy of a swap or one set aside
        number = path.name.removeprefix("checkpoint-")
        if number.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(number), path))
    return sorted(found)


def checkpoint_problem(checkpoint: Path) -> str | None:
    """None if ``checkpoint`` is intact: every safetensors file whole (header against size), every
    JSON parses, and the files a resume reads are there; else what is wrong."""
    required = ["trainer_state.json", "optimizer.json", "optimizer.safetensors", "rng.safetensors",
                "model/config.json", "model/diffusion_pytorch_model.safetensors"]
    missing = [name for name in required if not (checkpoint / name).is_file()]
    if (checkpoint / "model/diffusion_pytorch_model.safetensors.index.json").is_file():
        missing.remove("model/diffusion_pytorch_model.safetensors")  # sharded weights
    if missing:
        return f"{checkpoint} lacks {missing}"
    for path in sorted(checkpoint.rglob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            return f"{path} does not parse ({error})"
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        return f"{checkpoint / 'trainer_state.json'} holds no step"
    for path in sorted(checkpoint.rglob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            return problem
    return None


def newest_intact_checkpoint(out_dir: Path) -> tuple[int, Path] | None:
    """The newest checkpoint in ``out_dir`` that `checkpoint_problem` passes. Each broken one newer
    than it is reported (a warning) and set aside as ``checkpoint-<step>.broken-<token>``, so that
    it is neither resumed from nor counted as one of the kept checkpoints."""
    for step, checkpoint in reversed(_checkpoints(out_dir)):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return step, checkpoint
        aside = checkpoint.with_name(f"{checkpoint.name}.broken-{secrets.token_hex(4)}")
        os.rename(checkpoint, aside)
        message = f"checkpoint {checkpoint.name} is broken ({problem}); set aside as {aside.name}, trying the one before"
        logger.warning(message)
        print(f"train-w0: warning: {message}", file=sys.stderr, flush=True)
    return None


def _save_checkpoint(out_dir: Path, step: int, model: WorldModel, optimizer, generator: torch.Generator,
                     state: dict[str, Any], keep: int) -> Path:
    final = out_dir / f"checkpoint-{step:07d}"
    with replacing_dir(final) as tmp:
        model.save_pretrained(tmp / "model")
        save_optimizer_state(optimizer, tmp)
        save_file({"generator": generator.get_state()}, str(tmp / "rng.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps({**state, "step": step}, indent=1), encoding="utf-8")
    for _, old in _checkpoints(out_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
        lock_path(old).unlink(missing_ok=True)  # nobody else locks checkpoints: the trainer holds out_dir
    return final


def _save_final(out_dir: Path, model: WorldModel) -> Path:
    with replacing_dir(out_dir / "final") as tmp:  # holds final's lock: a loader never repairs it mid-swap
        model.save_pretrained(tmp)
    return out_dir / "final"


def _config_json(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


# ------------------------------------------------------------------------------ the trainer
@dataclass
class TrainSummary:
    """What `train_world_model` did. Losses are moving averages at the end, in model units."""

    steps: int
    """the step training reached (``num_steps``, or fewer after ``max_time_s``)."""
    final_loss: float | None
    frame_mse: float | None
    """the renderer's frame MSE on true states, [-1, 1] units."""
    object_cm: float | None
    """the dynamics' mean object-position error over its unrolls, cm."""
    final_object_cm: float | None
    """the same at the unrolls' last step, cm."""
    perception_cm: float | None
    """perception's object-position error on resting frames, cm."""
    time_s: float
    final_dir: str | None
    """``out_dir/final`` (None on processes other than the main one)."""
    num_episodes: int
    num_frames: int
    resumed_from: str | None
    """the checkpoint folder training resumed from, or None."""
    stopped_early: bool
    num_parameters: int
    history: list[dict[str, float]]
    """moving averages every 100 steps, and the callback's metrics."""


def build_model(config: TrainConfig) -> WorldModel:
    """A fresh (seeded) world model, or one from ``config.init_from`` (a W0 or a Wan diffusers
    folder), with a fresh dynamics if ``config.fresh_dynamics``."""
    if config.fresh_dynamics and config.init_from is None:
        raise ValueError("fresh_dynamics replaces the dynamics of the world model in init_from; without init_from "
                         "the whole model is fresh anyway")
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global RNG
        torch.manual_seed(config.seed)
        if config.init_from is None:
            return WorldModel.from_model_config(config.model)
        if is_wan_folder(config.init_from):
            # a pretrained Wan backbone for the renderer: everything around it comes from config.model
            overrides = {k: v for k, v in config.model.to_kwargs().items() if k != "backbone"}
            model = WorldModel.from_pretrained(config.init_from, **overrides)
        else:
            model = WorldModel.from_pretrained(config.init_from)  # fine-tune a world model
        if not config.fresh_dynamics:
            return model
        sizes = config.model
        return model.with_new_dynamics(dynamics_hidden_dim=sizes.dynamics_hidden_dim,
                                       dynamics_num_layers=sizes.dynamics_num_layers,
                                       dynamics_members=sizes.dynamics_members,
                                       dynamics_contact_width=sizes.dynamics_contact_width,
                                       dynamics_joint_prior=sizes.dynamics_joint_prior)


def fit_joint_responses(model: WorldModel, dataset: EpisodeTensors) -> list[list[list[float]]]:
    """Fit the servo response of each dynamics member of ``model`` that has one
    (`psi_gym.world_model.dynamics.JointResponse`) to every step of ``dataset``; the coefficients
    per member (empty if none has one)."""
    responses = [member.joint_response for member in dynamics_members(model.dynamics) if member.joint_response is not None]
    if not responses:
        return []
    transitions = dataset.joint_transitions()
    return [response.fit(*transitions).tolist() for response in responses]


def fit_hand_servo(model: WorldModel, episodes: Sequence[Episode] | str | os.PathLike | Sequence[str | os.PathLike],
                   chunk: int = 256) -> WorldModel:
    """A copy of ``model`` whose drawn hand follows a servo response (`WorldModelConfig.hand_servo`)
    fitted by least squares to every step of ``episodes`` (robot rollouts, or dataset roots); its
    dynamics, perception and renderer unchanged. The episodes are read ``chunk`` at a time and only
    their joints and targets kept (`EpisodeTensors.joint_transitions`, episode by episode), so the
    frames of a large dataset are never all in memory."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    robot = (ep for ep in iter_episodes(episodes) if ep.embodiment == "robot")
    parts: list[tuple[torch.Tensor, ...]] = []
    while batch := list(itertools.islice(robot, chunk)):
        texts = sorted({ep.instruction for ep in batch})
        parts.append(EpisodeTensors(batch, dict(zip(texts, model.encode_instruction(texts)))).joint_transitions())
    if not parts:
        raise ValueError("no robot episodes to fit the hand servo to")
    response = JointResponse(int(model.config.state_dim))
    response.fit(*(torch.cat(columns) for columns in zip(*parts)))
    return model.with_hand_servo(response.coefficients)


def train_world_model(
    episodes: Sequence[Episode] | str | os.PathLike | Sequence[str | os.PathLike],
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike = "runs/w0",
    resume: bool = True,
    callback: Callable[[int, WorldModel], dict[str, float] | None] | None = None,
    log_with: str = "auto",
) -> TrainSummary:
    """Train (or resume training) a world model; returns a `TrainSummary` (also in ``out_dir/summary.json``).

    Args:
        episodes: Episode objects, or LeRobot dataset root(s) read with
            `psi_gym.data.lerobot.read_episodes`.
        config: hyper-parameters (default `TrainConfig()`).
        out_dir: checkpoints go to ``out_dir/checkpoint-<step>/``, the model to ``out_dir/final/``.
        resume: continue from the newest intact checkpoint in ``out_dir`` if there is one (its
            model config wins over ``config.model``; broken newer ones are set aside, see the
            module doc).
        callback: called as ``callback(step, model)`` every ``config.eval_every`` steps on the main
            process (model in eval mode, no grad); a returned dict of numbers joins the history.
        log_with: ``"auto"``, ``"tensorboard"``, ``"csv"`` or ``"none"``: where the loss curves go
            (`psi_gym.data.metrics`, under ``out_dir/logs``).

    Returns:
        a `TrainSummary`; ``dataclasses.asdict`` gives its JSON form.

    Raises:
        TargetLockedError: another trainer writes ``out_dir``.
    """
    config = config or TrainConfig()
    if config.time_sampling not in TIME_SAMPLINGS:
        raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}, got {config.time_sampling!r}")
    if config.success_fraction is not None and not 0.0 <= config.success_fraction <= 1.0:
        raise ValueError(f"success_fraction must be in [0, 1] or None, got {config.success_fraction!r}")
    for name, bound in (("symmetry_shift", ">= 0 (0: off)"), ("symmetry_turn", ">= 0 (0: off)"),
                        ("learning_rate", "> 0"), ("min_learning_rate", ">= 0")):
        value = getattr(config, name)
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and 0.0 <= value < float("inf")
        if not number or (bound == "> 0" and value == 0):
            raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    if not config.parts or any(part not in PARTS for part in config.parts) or len(set(config.parts)) != len(config.parts):
        raise ValueError(f"parts must be distinct names among {PARTS}, got {config.parts!r}")
    for name, low in (("num_steps", 1), ("batch_size", 1), ("dynamics_batch_size", 1), ("perception_batch_size", 1),
                      ("checkpoint_every", 1), ("warmup_steps", 0)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            why = " (0 steps would save an untrained model)" if name == "num_steps" else ""
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}{why}")
    if config.compile and "dynamics" in config.parts:
        problem = compile_unavailable()
        if problem:
            raise RuntimeError(f"compile=True needs torch.compile to work here: {problem}; or train without compile")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file; train_world_model writes checkpoints into a folder there")
    out_dir.mkdir(parents=True, exist_ok=True)
    with hold_lock(out_dir):
        return _train(episodes, config, out_dir, resume, callback, log_with)


def _train(episodes: Any, config: TrainConfig, out_dir: Path, resume: bool,
           callback: Callable[[int, WorldModel], dict[str, float] | None] | None, log_with: str) -> TrainSummary:
    from accelerate import Accelerator

    from psi_gym.data.metrics import flat_config, make_trackers

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    start_time = time.perf_counter()

    all_episodes = load_episodes(episodes)
    episodes_list = _prepare_episodes(all_episodes, config, config.model)

    found = newest_intact_checkpoint(out_dir) if resume else None
    resumed_from = None
    if found is not None:
        start_step, checkpoint = found
        model = WorldModel.from_pretrained(checkpoint / "model")
        trainer_state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        resumed_from = str(checkpoint)
    else:
        start_step, checkpoint, trainer_state = 0, None, {}
        model = build_model(config)
    model.train()
    trackers = make_trackers(log_with, out_dir / "logs", "train-w0", resume_step=start_step)
    accelerator = Accelerator(mixed_precision=config.mixed_precision, log_with=trackers or None,
                              project_dir=str(out_dir / "logs"))
    accelerator.init_trackers("train-w0", config=flat_config(_config_json(config)))
    is_main = accelerator.is_main_process

    embeddings = {text: emb for text, emb in zip(
        sorted({ep.instruction for ep in episodes_list}),
        model.encode_instruction(sorted({ep.instruction for ep in episodes_list})),
    )}
    dataset = EpisodeTensors(episodes_list, embeddings)
    if checkpoint is None and (config.init_from is None or config.fresh_dynamics):
        fit_joint_responses(model, dataset)  # a fresh dynamics' servo response, from the data it trains on

    trained = trained_parameters(model, config.parts)
    optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(config.seed + 1000 * accelerator.process_index)
    if checkpoint is not None:
        load_optimizer_state(optimizer, checkpoint)
        if accelerator.num_processes == 1:
            generator.set_state(load_file(str(checkpoint / "rng.safetensors"))["generator"])
        else:  # each process continues its own stream, distinct from the first run's
            generator.manual_seed(config.seed + 1000 * accelerator.process_index + start_step)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped: WorldModel = accelerator.unwrap_model(model)
    device = accelerator.device
    steps_for_levels = int(unwrapped.config.num_inference_steps)
    dynamics_steps = compiled_steps(unwrapped) if config.compile and "dynamics" in config.parts else None

    history: list[dict[str, float]] = list(trainer_state.get("history", []))
    # the moving averages go on where the checkpoint left them (a finished run reports its loss)
    running: dict[str, float] = {key: float(value) for key, value in (trainer_state.get("running") or {}).items()}
    if not running and trainer_state.get("loss") is not None:
        running["loss"] = float(trainer_state["loss"])
    window: dict[str, float] = {}
    progress = tqdm(total=config.num_steps, initial=start_step, file=sys.stderr, dynamic_ncols=True,
                    disable=not (config.progress and is_main), desc="train-w0")
    step = start_step
    last_parts: dict[str, float] = {}
    stopped_early = False
    while step < config.num_steps:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine_learning_rate(step, config.learning_rate, config.min_learning_rate,
                                                      config.warmup_steps, config.num_steps)
        parts = _losses(model, unwrapped, dataset, config, step, generator, device, steps_for_levels, dynamics_steps)
        accelerator.backward(parts["loss"])
        if config.grad_clip > 0:
            accelerator.clip_grad_norm_(trained, config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        last_parts = {key: float(value.detach()) for key, value in parts.items()}
        for key, value in last_parts.items():  # exponential moving average for display
            running[key] = value if key not in running else 0.98 * running[key] + 0.02 * value
            window[key] = window.get(key, 0.0) + value
        if step % LOG_EVERY == 0 or step == config.num_steps:
            count = LOG_EVERY if step % LOG_EVERY == 0 else step % LOG_EVERY
            accelerator.log({**{key: value / count for key, value in window.items()},
                             "learning_rate": optimizer.param_groups[0]["lr"]}, step=step)
            window = {}
        progress.update(1)
        if step % 10 == 0:
            shown = {"loss": ("loss", 3), "frame_mse": ("frame", 4), "object_cm": ("obj_cm", 2),
                     "final_object_cm": ("last_cm", 2), "perception_cm": ("seen_cm", 2)}
            progress.set_postfix({label: f"{running[key]:.{digits}f}" for key, (label, digits) in shown.items()
                                  if key in running})
        if step % 100 == 0:
            history.append({"step": step, **{k: round(v, 6) for k, v in running.items()}})
        if callback is not None and config.eval_every > 0 and step % config.eval_every == 0 and is_main:
            unwrapped.eval()
            with torch.no_grad():
                metrics = callback(step, unwrapped)
            unwrapped.train()
            if metrics:
                history.append({"step": step, **{k: float(v) for k, v in metrics.items()}})
        out_of_time = config.max_time_s is not None and time.perf_counter() - start_time > config.max_time_s
        if config.max_time_s is not None and accelerator.num_processes > 1:
            # every process must stop at the same step, or the next gradient all-reduce hangs
            flag = torch.tensor([float(out_of_time)], device=device)
            out_of_time = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
        stopped_early = stopped_early or out_of_time
        if step % config.checkpoint_every == 0 or step == config.num_steps or out_of_time:
            if is_main:
                state = {"history": history, "config": _config_json(config), "loss": running.get("loss"),
                         "running": running}
                _save_checkpoint(out_dir, step, unwrapped, optimizer, generator, state, config.keep_checkpoints)
            accelerator.wait_for_everyone()
        if out_of_time:
            break
    progress.close()
    accelerator.end_training()

    final_dir = None
    if is_main:
        final_dir = str(_save_final(out_dir, unwrapped))
    accelerator.wait_for_everyone()
    summary = TrainSummary(
        steps=step,
        final_loss=running.get("loss", last_parts.get("loss")),
        frame_mse=running.get("frame_mse"),
        object_cm=running.get("object_cm"),
        final_object_cm=running.get("final_object_cm"),
        perception_cm=running.get("perception_cm"),
        time_s=round(time.perf_counter() - start_time, 2),
        final_dir=final_dir,
        num_episodes=len(episodes_list),
        num_frames=int(dataset.frames.shape[0]),
        resumed_from=resumed_from,
        stopped_early=stopped_early,
        num_parameters=unwrapped.num_parameters(),
        history=history,
    )
    if is_main:
        write_bytes_atomic(out_dir / "summary.json", json.dumps(dataclasses.asdict(summary), indent=1).encode())
    return summary


def trained_parameters(model: torch.nn.Module, parts: Sequence[str]) -> list[torch.nn.Parameter]:
    """The parameters of ``parts`` (see `PARTS`; the renderer is everything that is neither the
    dynamics nor the perception); the others get ``requires_grad = False``."""
    owners = {"dynamics": "dynamics.", "perception": "perception."}
    trained = []
    for name, parameter in model.named_parameters():
        part = next((key for key, prefix in owners.items() if name.removeprefix("module.").startswith(prefix)), "renderer")
        parameter.requires_grad_(part in parts)
        if part in parts:
            trained.append(parameter)
    return trained


def _losses(model: torch.nn.Module, unwrapped: WorldModel, dataset: EpisodeTensors, config: TrainConfig, step: int,
            generator: torch.Generator, device: torch.device, num_inference_steps: int,
            dynamics_steps: Sequence[Callable] | None = None) -> dict[str, torch.Tensor]:
    """One step's batches and losses of the parts trained (see the module doc). The batches are
    drawn first, in a fixed order, so that a run's random stream does not depend on the losses.
    ``dynamics_steps``: the dynamics' (compiled) step functions (`dynamics_loss`)."""
    unrolls = frames = seen = None
    if "dynamics" in config.parts:
        unrolls = dataset.unrolls(config.dynamics_batch_size, config.unroll_length(step), generator,
                                  config.perception_noise, config.success_fraction)
        unrolls = _to_device(augment_unrolls(unrolls, config.symmetry_shift, config.symmetry_turn, generator), device)
    if "renderer" in config.parts:
        frames = _to_device(dataset.frame_samples(config.batch_size, generator), device)
    if "perception" in config.parts:
        seen = _to_device(dataset.perception_samples(config.perception_batch_size, generator), device)
    parts: dict[str, torch.Tensor] = {}
    loss = torch.zeros((), device=device)
    if unrolls is not None:
        dynamics = dynamics_loss(unwrapped, unrolls, dynamics_steps)
        loss = loss + config.dynamics_loss_weight * dynamics["loss"]
        parts.update(object_cm=dynamics["object_cm"], final_object_cm=dynamics["final_object_cm"],
                     joints=dynamics["joints"], rotation=dynamics["rotation"])
    if frames is not None:
        with torch.autocast(device_type=device.type, enabled=config.mixed_precision != "no",
                            dtype=torch.bfloat16 if config.mixed_precision == "bf16" else torch.float16):
            rendered = renderer_loss(model, frames, config, generator, num_inference_steps)
        loss = loss + rendered["loss"]
        parts.update(frame_mse=rendered["frame_mse"])
    if seen is not None:
        perceived = perception_loss(unwrapped, seen)
        loss = loss + config.perception_loss_weight * perceived["loss"]
        parts.update(perception_cm=perceived["position_cm"], kind_accuracy=perceived["kind_accuracy"],
                     size_cm=perceived["size_cm"])
    return {"loss": loss, **parts}


def _to_device(batch: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return batch
    values = {}
    for field in dataclasses.fields(batch):
        value = getattr(batch, field.name)
        values[field.name] = value.to(device) if hasattr(value, "to") else value
    return type(batch)(**values)

"""W0's success verdict, calibrated: the probability that the simulator confirms a success, read off the object path.

A state-grounded world model tracks the object through the episode and calls the task done when
its last predicted state meets the task's rule (`psi_gym.sim.tasks.Task.is_success`). On held-out
candidate refinements about 6 in 10 of those calls hold in the simulator. A `Calibrator` reads a
summary of the whole predicted path (`path_features`, the columns of `PATH_FEATURES`) and returns
the probability that the simulator calls the episode a success. It is trained on candidate plans
replayed in the simulator (``psi-gym train-calibrator``), and it belongs to the world model whose
paths it was trained on. Notation for one episode of ``H`` steps, with the task's scene:

* ``path`` (H+1, 3): the world model's object centre after 0 .. H steps (row 0: its reading of the
  first frame), metres;
* the success margin along it, cm: for lift tasks the height above the 6 cm bar, for push the
  distance inside the mark's 2 cm (> 0: the rule holds there, if the object rests in the workspace);
* the features: the task (one-hot), the tracking reward per step (``exp(-|p - q| / sigma)`` against
  the human demo's object path ``q``, as `StateTrackingReward`), the world model's verdict, the
  margin at the end, its minimum over the last 5 steps, 10 steps before the end and its maximum,
  the object's speed at the end, over the last 5 steps and at its fastest (cm per step), its height
  above rest at the end, its horizontal travel, when the rule first holds (a fraction of the
  episode; 1.5 if never) and for what share of the steps.

The model is an ensemble of small MLPs on standardised features (each fit on a bootstrap draw of
the training rows, stopped at its lowest loss on a split of the demos); its mean is the
probability. Measured (`benchmarks/success_calibration.py`, README): on eval-w0's ranking pools,
the world model's success calls hold 0.61 of the time; those with p >= 0.7 hold 0.81 of the time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from psi_gym.sim.scene import SceneParams
from psi_gym.sim.tasks import LIFT_HEIGHT, PUSH_TOLERANCE, TASKS, get_task

TASK_NAMES = tuple(sorted(TASKS))
PATH_FEATURES = (*TASK_NAMES, "tracking_per_step", "verdict", "margin_end_cm", "margin_last5_min_cm",
                 "margin_10_before_end_cm", "margin_max_cm", "speed_end_cm", "speed_last5_cm", "speed_max_cm",
                 "height_end_cm", "travel_xy_cm", "first_success", "success_fraction")
"""What `path_features` returns, in order (see the module doc)."""
TRACKING_SIGMA = 0.02
"""m: the tracking reward's distance scale (`ObjectTrackingRewardConfig.sigma`'s default)."""


def success_margins(path: np.ndarray, task: str, scene: SceneParams) -> np.ndarray:
    """(L,) the task's success margin along ``path`` (L, 3), cm (see the module doc)."""
    if task.startswith("lift"):
        return (path[:, 2] - scene.object_rest_z - LIFT_HEIGHT) * 100.0
    return (PUSH_TOLERANCE - np.linalg.norm(path[:, :2] - np.asarray(scene.mark_xy), axis=-1)) * 100.0


def path_features(path: np.ndarray, task: str, scene: SceneParams, human_object_pose: np.ndarray,
                  sigma: float = TRACKING_SIGMA) -> np.ndarray:
    """The (len(PATH_FEATURES),) float32 summary of one episode's object ``path`` (H+1, 3), H >= 1,
    for ``task`` in ``scene``, against the human demo's object poses (T+1, >= 3) (see the module doc)."""
    path = np.asarray(path, np.float64)
    if path.ndim != 2 or path.shape[1] != 3 or len(path) < 2 or not np.isfinite(path).all():
        raise ValueError(f"path must be a finite (H+1 >= 2, 3) object path in metres, got shape {path.shape}"
                         + ("" if np.isfinite(path).all() else " with NaN/inf"))
    horizon, demo_steps = len(path) - 1, len(human_object_pose) - 1
    rule = get_task(task)
    done = np.array([rule.is_success(scene, position) for position in path])
    goal = np.asarray(human_object_pose, np.float64)[np.minimum(np.arange(1, horizon + 1), demo_steps), :3]
    tracking = np.exp(-np.linalg.norm(path[1:] - goal, axis=-1) / sigma).sum()
    margin = success_margins(path, task, scene)
    speed = np.linalg.norm(np.diff(path, axis=0), axis=-1) * 100.0
    return np.asarray([float(task == name) for name in TASK_NAMES] + [
        tracking / horizon, float(done[-1]), margin[-1], margin[-5:].min(), margin[max(0, horizon - 10)], margin.max(),
        speed[-1], speed[-5:].mean(), speed.max(), (path[-1, 2] - scene.object_rest_z) * 100.0,
        np.linalg.norm(path[-1, :2] - path[0, :2]) * 100.0,
        float(np.argmax(done)) / horizon if done.any() else 1.5, done.mean()], np.float32)


class Calibrator(nn.Module):
    """P(the simulator calls it a success | features): the mean of ``members`` MLPs (``width`` x 2
    hidden layers) on features standardised by the training set's mean and spread.

    Args:
        features: the names of its input columns, in order (`PATH_FEATURES` for the env's reward).
        width, members: the MLPs' hidden width and how many.
    """

    def __init__(self, features: Sequence[str] = PATH_FEATURES, width: int = 64, members: int = 5) -> None:
        super().__init__()
        self.features = tuple(features)
        count = len(self.features)
        self.register_buffer("mean", torch.zeros(count))
        self.register_buffer("scale", torch.ones(count))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(count, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 1))
            for _ in range(members))
        self.metadata: dict[str, str] = {}

    @torch.no_grad()
    def probability(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, F) features -> (B,) probability that the simulator calls it a success."""
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        if x.ndim != 2 or x.shape[1] != len(self.features) or not torch.isfinite(x).all():
            raise ValueError(f"features must be finite (B, {len(self.features)}) ({', '.join(self.features)}), "
                             f"got {tuple(x.shape)}")
        x = (x - self.mean) / self.scale
        return torch.sigmoid(torch.stack([mlp(x)[:, 0] for mlp in self.mlps])).mean(0).numpy()

    def save(self, path: str | Path, **metadata: str) -> None:
        """Weights, sizes, feature names and ``metadata`` (e.g. the world model it reads) in one
        safetensors file (`load_calibrator` reads it back)."""
        from safetensors.torch import save

        from psi_gym.data.atomic import write_bytes_atomic

        info = {**self.metadata, **metadata, "features": json.dumps(list(self.features)),
                "width": str(self.mlps[0][0].out_features), "members": str(len(self.mlps))}
        weights = {key: value.contiguous() for key, value in self.state_dict().items()}
        write_bytes_atomic(Path(path), save(weights, metadata=info))  # a crash leaves the old file whole


def load_calibrator(path: str | Path, features: Sequence[str] | None = None) -> Calibrator:
    """A calibrator `Calibrator.save` wrote. ``features``: the columns the caller will hand it (a
    ValueError if the file reads others). A clear ValueError for a missing or damaged file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no calibrator at {path} (write one with `psi-gym train-calibrator --out {path}`)")
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = dict(handle.metadata() or {})
        weights = load_file(str(path))
        names = json.loads(metadata.pop("features"))
        model = Calibrator(names, width=int(metadata.pop("width")), members=int(metadata.pop("members")))
        model.load_state_dict(weights)
    except Exception as error:  # safetensors, json and torch raise their own error kinds for damaged files
        raise ValueError(f"{path} is not a calibrator written by Calibrator.save / psi-gym train-calibrator "
                         f"({type(error).__name__}: {error})") from None
    if features is not None and tuple(features) != model.features:
        raise ValueError(f"{path} reads the features {list(model.features)}, not {list(features)}: retrain it")
    model.metadata = metadata
    return model.eval()


def fit_calibrator(features: np.ndarray, success: np.ndarray, groups: np.ndarray | None = None, *,
                   names: Sequence[str] = PATH_FEATURES, members: int = 5, width: int = 64, steps: int = 600,
                   learning_rate: float = 3e-3, weight_decay: float = 1e-4, validation_fraction: float = 0.1,
                   thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8), seed: int = 0,
                   init: Calibrator | None = None) -> tuple[Calibrator, dict[str, Any]]:
    """Train a `Calibrator` on ``features`` (N, len(names)) and the simulator's ``success`` (N,):
    each member full-batch AdamW on the binary cross-entropy, on its own bootstrap draw of the
    training rows, keeping its weights at its lowest loss on a validation split
    (``validation_fraction`` of the ``groups``, e.g. demos, so no demo is on both sides). Returns
    the model and a summary (with [kept successes, kept] on the split at each of ``thresholds``).

    ``init``: a calibrator to start from (its standardisation, sizes and weights; ``names`` must be
    its features): a refit for a world model that moved a little. Its own weights count as step 0
    of the validation, so a member keeps them unless training lowers its validation loss. Measured:
    refitted from scratch on 2 pools (3072 rows) a calibrator puts 15 of pool 32's plans at p >= 0.8
    where the shipped one, fitted on 8, puts 60: from scratch, fewer rows make it less sure."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(success), dtype=torch.float32)
    if x.ndim != 2 or x.shape[1] != len(names) or len(y) != len(x):
        raise ValueError(f"features must be (N, {len(names)}) with N success labels, got {tuple(x.shape)} and {tuple(y.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("features hold NaN or infinite values")
    if len(y) == 0 or y.min() == y.max():
        raise ValueError("a calibrator needs successes and failures to learn from, got "
                         + ("no rows" if len(y) == 0 else f"only {'successes' if bool(y[0]) else 'failures'}"))
    rng = np.random.default_rng(seed)
    groups = np.arange(len(x)) if groups is None else np.asarray(groups)
    unique = rng.permutation(np.unique(groups))
    held = set(unique[: max(1, int(round(validation_fraction * len(unique))))].tolist()) if len(unique) > 1 else set()
    validation = torch.as_tensor(np.array([g in held for g in groups]))
    train = ~validation
    torch.manual_seed(seed)
    if init is not None:
        if tuple(init.features) != tuple(names):
            raise ValueError(f"init reads the features {list(init.features)}, not {list(names)}")
        model = Calibrator(names, width=init.mlps[0][0].out_features, members=len(init.mlps))
        model.load_state_dict(init.state_dict())
    else:
        model = Calibrator(names, width=width, members=members)
        model.mean.copy_(x[train].mean(0))
        model.scale.copy_(x[train].std(0).clamp_min(1e-3))
    loss_fn = nn.functional.binary_cross_entropy_with_logits
    train_rows = train.nonzero()[:, 0]
    summary: dict[str, Any] = {"rows": len(x), "train_rows": int(train.sum()), "validation_rows": int(validation.sum()),
                               "success_rate": round(float(y.mean()), 4), "members": []}
    for index, member in enumerate(model.mlps):
        rows = train_rows[torch.as_tensor(rng.integers(0, len(train_rows), len(train_rows)))]  # a bootstrap draw
        optimizer = torch.optim.AdamW(member.parameters(), lr=learning_rate, weight_decay=weight_decay)
        best, best_state, best_step = float("inf"), None, 0
        if init is not None and validation.any():  # the starting weights are a candidate too
            with torch.no_grad():
                best = float(loss_fn(member((x[validation] - model.mean) / model.scale)[:, 0], y[validation]))
            best_state = {k: v.clone() for k, v in member.state_dict().items()}
        for step in range(steps):
            logits = member((x[rows] - model.mean) / model.scale)[:, 0]
            loss = loss_fn(logits, y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if validation.any() and (step % 20 == 19 or step == steps - 1):
                with torch.no_grad():
                    held_loss = float(loss_fn(member((x[validation] - model.mean) / model.scale)[:, 0], y[validation]))
                if held_loss < best:
                    best, best_step = held_loss, step + 1
                    best_state = {k: v.clone() for k, v in member.state_dict().items()}
        if best_state is not None:
            member.load_state_dict(best_state)
        summary["members"].append({"member": index, "validation_loss": round(best, 4) if best_state else None,
                                   "steps": best_step if best_state else steps})
    model.eval()
    if validation.any():
        p = model.probability(x[validation])
        truth = y[validation].numpy() > 0.5
        summary["validation_precision"] = {f"{t:.1f}": [int((p >= t)[truth].sum()), int((p >= t).sum())]
                                           for t in thresholds}
    return model, summary


__all__ = ["PATH_FEATURES", "Calibrator", "fit_calibrator", "load_calibrator", "path_features", "success_margins"]

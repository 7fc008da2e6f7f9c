"""Train the calibrated success of ``reward_model="calibrated_state"`` (``psi-gym train-calibrator``).

The data are eval-w0-style candidate pools of their own seeds (`candidate_pool`: fresh held-out-style
demos, each with the raw retarget and smooth random residuals of the sizes refinement searches),
replayed in the simulator for the label (success at the end of the episode, the task's rule). The
features are those `CalibratedStateReward` reads in the env: `path_features` of the object path W0
predicts for each plan (`object_paths`: W0's dynamics unrolled over the plan's joint targets from
its perception of the first frame, the state the env advances; a test checks that the env hands the
reward model the same path). Pools are the simulator in its robot role: its replays train the
calibrator, as W0's own training data do; none of their seeds is used to evaluate anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psi_gym.agents.rollouts import DemoRef, plan_targets

DEFAULT_POOLS = tuple((seed, 96) for seed in range(31, 39))
"""(seed, demos) of the pools the shipped calibrator learnt from (x 16 plans: 12288 episodes)."""


@torch.no_grad()
def object_paths(world_model: Any, first_frames: np.ndarray, start_states: np.ndarray, targets: np.ndarray,
                 object_shift: np.ndarray | None = None) -> np.ndarray:
    """(B, H+1, 3) float64 W0's object path over ``targets`` (B, H, 22) joint targets, from its
    perception of ``first_frames`` (B, h, w, 3) uint8 with the robot at ``start_states`` (B, 22):
    row 0 its reading of the first frame, row s after s steps of its dynamics (what the W0 env
    advances; no frame is drawn). ``object_shift`` (B, 2) m moves its reading of the start first."""
    targets_t = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
    if targets_t.ndim != 3 or targets_t.shape[-1] != 22 or len(targets_t) != len(first_frames) or targets_t.shape[1] < 1:
        raise ValueError(f"targets must be (B, H >= 1, 22) joint targets for the {len(first_frames)} first frames, "
                         f"got {tuple(targets_t.shape)}")
    if not torch.isfinite(targets_t).all():
        raise ValueError("targets hold NaN or infinite values")
    if getattr(world_model, "dynamics", None) is None:
        raise ValueError("this world model predicts no object state (no dynamics): a calibrator reads W0's object path")
    dynamics = world_model.dynamics
    state = world_model.initial_state(np.asarray(first_frames), np.asarray(start_states, np.float32))
    if object_shift is not None:
        state = state.shift_object(object_shift)
    geometry = dynamics.target_geometry(targets_t)
    positions = [state.object_position.double().numpy()]
    for t in range(targets_t.shape[1]):
        state = dynamics.step(state, targets_t[:, t], (geometry[0][:, t], geometry[1][:, t]))
        positions.append(state.object_position.double().numpy())
    return np.stack(positions, 1)


def plan_features(world_model: Any, first_frames: np.ndarray, rows: Sequence[DemoRef], plans: Sequence[np.ndarray],
                  batch: int = 512) -> np.ndarray:
    """(B, len(PATH_FEATURES)) float32 `path_features` of W0's object path for each of ``plans``
    (residual actions (H, 22)) on its demo ``rows[i]`` (first frame ``first_frames[i]``)."""
    from psi_gym.rewards.success_calibration import PATH_FEATURES, path_features
    from psi_gym.sim.scene import SceneParams

    features = np.zeros((len(rows), len(PATH_FEATURES)), np.float32)
    for begin in range(0, len(rows), batch):
        chunk = range(begin, min(begin + batch, len(rows)))
        targets = np.stack([plan_targets(rows[i], plans[i]) for i in chunk])
        paths = object_paths(world_model, first_frames[begin: chunk.stop], np.stack([rows[i].start_state for i in chunk]),
                             targets)
        for j, i in enumerate(chunk):
            features[i] = path_features(paths[j], rows[i].task, SceneParams.from_dict(rows[i].scene),
                                        rows[i].human_object_pose)
    return features


@dataclass
class CalibrationConfig:
    """What ``psi-gym train-calibrator`` runs."""

    world_model: Any = "default"
    pools: tuple[tuple[int, int], ...] = DEFAULT_POOLS
    candidates: int = 16
    members: int = 5
    width: int = 64
    steps: int = 600
    seed: int = 0
    cache: Path | None = None
    """folder for the simulator's results on each pool (``sim-s{seed}-{demos}x{candidates}.npz``)."""
    progress: bool = True
    metadata: dict[str, str] = field(default_factory=dict)
    init_from: Any = None
    """a calibrator to start from (``"default"``, a file or a `Calibrator`; `fit_calibrator`'s ``init``):
    a refit for a world model fine-tuned from the one it was fitted on. None: from scratch."""
    learning_rate: float = 3e-3
    """AdamW rate of every member (`fit_calibrator`)."""


def train_calibrator(config: CalibrationConfig) -> tuple[Any, dict[str, Any]]:
    """The pools' features and labels (the simulator's verdicts) -> a fitted `Calibrator` and a
    summary (rows, success rate, each member's validation loss, precision on the held-out split)."""
    from psi_gym.agents.world_model_report import candidate_pool
    from psi_gym.rewards.success_calibration import fit_calibrator
    from psi_gym.world_model.loading import load_world_model

    if not config.pools or any(demos < 1 for _, demos in config.pools) or config.candidates < 2:
        raise ValueError(f"need pools of >= 1 demo and >= 2 candidates, got {config.pools}, {config.candidates}")
    world_model = load_world_model(config.world_model, "cpu") if isinstance(config.world_model, (str, Path)) \
        else config.world_model
    features, labels, groups = [], [], []
    for k, (seed, demos) in enumerate(config.pools):
        refs, first_frames, rows, plans, (_, success, _) = candidate_pool(seed, demos, config.candidates, config.cache)
        demo = np.repeat(np.arange(len(refs)), config.candidates)
        features.append(plan_features(world_model, first_frames[demo], rows, plans))
        labels.append(np.asarray(success, bool))
        groups.append(demo + k * 1_000_000)
        if config.progress:
            print(f"pool {seed}: {len(rows)} candidates, {float(np.mean(success)):.3f} succeed in the simulator", flush=True)
    init = None
    if config.init_from is not None:
        from psi_gym.rewards.calibrated_state import resolve_calibrator

        init = resolve_calibrator(config.init_from)
    model, summary = fit_calibrator(np.concatenate(features), np.concatenate(labels), np.concatenate(groups),
                                    members=config.members, width=config.width, steps=config.steps, seed=config.seed,
                                    learning_rate=config.learning_rate, init=init)
    model.metadata = {"world_model": str(config.world_model), "pools": ",".join(f"{s}:{d}" for s, d in config.pools),
                      "candidates": str(config.candidates), **config.metadata}
    return model, {**summary, "pools": [list(pool) for pool in config.pools]}


__all__ = ["CalibrationConfig", "DEFAULT_POOLS", "object_paths", "plan_features", "train_calibrator"]

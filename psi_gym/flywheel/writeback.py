"""Write-back: the kept trajectories go out as LeRobot v3.0 datasets, and both models learn from them.

* `export_datasets`: the buffer's kept trajectories (W0-refined, scene variations, raw retargets W0
  believes in) and the robot's episodes as two LeRobot datasets (one embodiment each, written by
  `psi_gym.data.lerobot.write_dataset`: crash-safe, one writer);
* `retrain_r2`: behaviour cloning of Psi-R2 (`psi_gym.agents.behavior_cloning`), starting from the
  current R2, on the union: the human demos W0 converted to the robot domain (the human's touch as
  the masked label: "learn from human data after dimensional alignment"; their retarget's actions
  as labels only where W0 says the raw retarget succeeds), every kept trajectory, and the robot's
  successes;
* `finetune_w0`: Psi-W0 fine-tuned (``TrainConfig(init_from=<current W0 folder>)``): its renderer
  and perception on the union plus every robot episode, its dynamics on the robot episodes (not
  the kept trajectories), failures included (their true object poses are what corrects W0's
  physics; a kept trajectory's poses are W0's own predictions), with episodes of W0's own training
  data beside them (`rehearsal_episodes`) so that a few dozen episodes do not pull it away from what
  it knew;
* `refit_calibrator`: the calibrated success (``reward_model="calibrated_state"``) refitted on the
  fine-tuned W0's own object paths: a calibrator belongs to the world model whose paths it learnt
  from, and the fine-tune moves them. Its labelled plans are candidate pools replayed in the
  simulator once (the offline data the shipped calibrator learnt from, as `rehearsal_episodes` are
  W0's; cached, so every refit of a run reads the same verdicts); only their features change.

The trainers read the exported datasets (the converted human demos, which carry a touch label a
robot `Episode` has no field for, straight from the buffer), so what the models learn from is
exactly what was written back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psi_gym.data.episode import Episode
from psi_gym.flywheel.buffer import FlywheelBuffer

KEPT_SOURCES = ("retargeted", "refined_w0", "scene_variation")


@dataclass
class ExportedData:
    """The datasets one write-back produced (None: nothing of that kind yet)."""

    kept: Path | None
    robot: Path | None
    kept_trajectories: int
    robot_episodes: int


def export_datasets(buffer: FlywheelBuffer, out: str | os.PathLike, overwrite: bool = True) -> ExportedData:
    """``out/kept`` (the kept trajectories in the buffer) and ``out/robot`` (the robot's episodes)."""
    out = Path(out)
    kept = buffer.select(sources=KEPT_SOURCES)
    robot = buffer.select(sources=("robot_episode",))
    kept_root = buffer.export_lerobot(out / "kept", kept, overwrite=overwrite) if kept else None
    robot_root = buffer.export_lerobot(out / "robot", robot, overwrite=overwrite) if robot else None
    return ExportedData(kept_root, robot_root, len(kept), len(robot))


def read_exported(data: ExportedData) -> tuple[list[Episode], list[Episode]]:
    """The episodes of the exported datasets (kept, robot), read back as a trainer reads them."""
    from psi_gym.data.lerobot import read_episodes

    kept = read_episodes(data.kept) if data.kept else []
    robot = read_episodes(data.robot) if data.robot else []
    return kept, robot


@dataclass
class RetrainConfig:
    """How much each model learns per write-back."""

    bc_steps: int = 150
    """behaviour-cloning steps of R2 (from the current R2)."""
    bc_batch_size: int = 64
    bc_learning_rate: float = 1e-3
    w0_steps: int = 100
    """fine-tuning steps of W0 (from the current W0)."""
    w0_batch_size: int = 16
    """renderer frames per W0 step."""
    w0_dynamics_batch_size: int = 16
    """whole-episode dynamics unrolls per W0 step."""
    w0_perception_batch_size: int = 8
    """first frames per W0 step (perception)."""
    w0_learning_rate: float = 3e-5
    """peak; warm-up over the first tenth of ``w0_steps``, then cosine down to a tenth of it. Measured
    (`finetune_w0`): 3e-4 for 100 steps damaged the shipped W0's ranking even on its own training data,
    3e-5 did not."""
    w0_rehearsal: int = 128
    """episodes of W0's own training data (`rehearsal_episodes`) mixed into the dynamics pass
    (0: the robot's episodes alone)."""
    rehearsal_seed: int = 100
    """their ``psi-gym collect --sources residual`` seed (100: the data the shipped W0 was trained on)."""
    threads: int | None = 1
    progress: bool = False


def human_demo_sources(buffer: FlywheelBuffer) -> list[Any]:
    """Behaviour-cloning sources of the buffer's converted human demos (source ``human_demo``): W0's
    frames and joints of the raw retarget, the human's touch, and the raw retarget's joint targets
    as action labels only where W0 says the raw retarget does the task (its verdict, recorded as
    the episode's success): a raw retarget W0 sees fail still teaches the next frame and the touch,
    but cloning its actions would teach R2 the failure (residual 0) that refinement corrects."""
    from psi_gym.agents.behavior_cloning import DEFAULT_EPISODE_SLACK, TOUCH_THRESHOLD, BCSource

    sources = []
    for record in buffer.select(sources=("human_demo",), embodiment="robot"):
        rows = buffer.rows(record)
        reference = rows["reference"][: record.reference_length]
        touch = rows["tactile"] > TOUCH_THRESHOLD if rows["tactile_mask"].all() else None
        sources.append(BCSource(rows["pixels"], rows["state"], rows["action"][:-1], reference, record.instruction,
                                len(reference) - 1 + DEFAULT_EPISODE_SLACK, touch, "human_demo", bool(record.success),
                                action_labels=bool(record.success)))
    return sources


def retrain_r2(policy: Any, kept: Sequence[Episode], robot: Sequence[Episode], config: RetrainConfig,
               out: str | os.PathLike, seed: int, human_demos: Sequence[Any] = ()) -> tuple[Any, dict[str, Any] | None]:
    """R2 cloned (from ``policy``) on the converted human demos (`human_demo_sources`), the kept
    trajectories and the robot's successes; returns the policy and the training summary (None, and
    the policy unchanged, when there is nothing to clone). The policy is saved to ``out/final``."""
    from dataclasses import asdict

    from psi_gym.agents.behavior_cloning import BCConfig, build_samples, robot_rollout_source, train_behavior_cloning

    sources = [robot_rollout_source(e) for e in [*kept, *[r for r in robot if r.success]]]
    sources = [*human_demos, *[s for s in sources if s is not None]]
    if not sources:
        return policy, None
    samples = build_samples(sources, policy.policy_config)
    bc = BCConfig(policy=policy.policy_config, steps=config.bc_steps, batch_size=config.bc_batch_size,
                  learning_rate=config.bc_learning_rate, checkpoint_every=0, seed=seed, progress=config.progress)
    policy, summary = train_behavior_cloning(samples, bc, out, policy=policy)
    return policy, {**asdict(summary), "trajectories": len(sources), "human_demos": len(human_demos)}


CALIBRATOR_REFIT_LEARNING_RATE = 1e-3
"""AdamW rate of a refit from the previous calibrator (a third of a fit from scratch's)."""


def refit_calibrator(world_model_folder: str | os.PathLike, pools: Sequence[tuple[int, int]], cache: str | os.PathLike,
                     out: str | os.PathLike, seed: int, init: Any = "default") -> tuple[Path, dict[str, Any]]:
    """A `psi_gym.rewards.success_calibration.Calibrator` refitted from ``init`` (the calibrator of
    the W0 this one was fine-tuned from: ``"default"`` or a file) on ``world_model_folder``'s object
    paths over the candidate ``pools`` ((seed, demos) of ``psi-gym train-calibrator``, 16 plans per
    demo; the simulator's verdicts kept in ``cache``), saved to ``out``; returns its path and the
    fit's summary (rows, success rate, precision on its held-out split of the demos). Starting from
    the previous calibrator keeps what it learnt on more pools than a refit reads (see
    `fit_calibrator`'s ``init``)."""
    from psi_gym.agents.calibration import CalibrationConfig, train_calibrator

    model, summary = train_calibrator(CalibrationConfig(world_model=str(world_model_folder), pools=tuple(pools),
                                                        cache=Path(cache), seed=seed, progress=False, init_from=init,
                                                        learning_rate=CALIBRATOR_REFIT_LEARNING_RATE))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return out, {**{key: summary[key] for key in ("rows", "success_rate", "validation_precision", "pools") if key in summary},
                 "member_steps": [member["steps"] for member in summary["members"]], "init": str(init)}


def rehearsal_episodes(count: int, seed: int = 100) -> list[Episode]:
    """The first ``count`` episodes of ``psi-gym collect --sources residual --seed SEED`` (regenerated:
    the same seed gives the same episodes; seed 100 is the data the shipped W0 was trained on)."""
    from psi_gym.retarget.robot_rollouts import make_rollout

    return [make_rollout(seed, index, sources={"residual": 1.0}) for index in range(count)]


def finetune_w0(world_model_folder: str | os.PathLike, kept: Sequence[Episode], robot: Sequence[Episode],
                config: RetrainConfig, out: str | os.PathLike, seed: int,
                rehearsal: Sequence[Episode] = ()) -> tuple[Path, dict[str, Any] | None]:
    """W0 fine-tuned from ``world_model_folder``: its looks on the kept trajectories and every robot
    episode, its physics on the robot episodes (with ``rehearsal``, episodes of its own training
    data, beside them); returns the new W0 folder and the training summary (the old folder and None
    when there is nothing to train on).

    A kept trajectory's object poses are W0's own predictions: training the dynamics on them would
    teach it nothing about the world and confirm its own errors (measured: without the robot, W0's
    false success rose 0.12 -> 0.21 over 3 iterations when it did). The robot's episodes carry the
    true poses. But a few dozen of them alone pull the dynamics away from what it knew: fine-tuned
    on one run's 48 robot episodes (100 steps), the shipped W0's ranking of eval-w0's candidates
    (seed 13, 48 demos) fell from Spearman 0.58 / top pick 0.40 to 0.50 / 0.38 at learning rate 3e-4,
    0.54 / 0.33 at 3e-5; with 192 episodes of its training data beside them at 3e-5 it stayed at
    0.60 / 0.35 (false success 0.115 -> 0.097). So two passes (`psi_gym.world_model.training`,
    ``TrainConfig.parts``):

    1. the renderer on ``w0_batch_size`` frames and the perception on ``w0_perception_batch_size``
       first frames per step, over kept + robot (in ``out/appearance``, or in ``out`` itself
       when there are no robot episodes);
    2. when there are robot episodes: the dynamics on ``w0_dynamics_batch_size`` unrolls of whole
       episodes per step (the objective a trained W0 ends on), over the robot's and ``rehearsal``,
       in ``out``.

    The new W0 is ``out/final``."""
    from dataclasses import asdict

    from psi_gym.world_model import TrainConfig, train_world_model

    episodes = [*kept, *robot]
    if not episodes:
        return Path(world_model_folder), None
    out = Path(out)

    def train(start: str | os.PathLike, data: Sequence[Episode], parts: tuple[str, ...], folder: Path) -> dict[str, Any]:
        settings = TrainConfig(init_from=str(start), parts=parts, num_steps=config.w0_steps, batch_size=config.w0_batch_size,
                               dynamics_batch_size=config.w0_dynamics_batch_size,
                               perception_batch_size=config.w0_perception_batch_size, unroll_schedule=((0.0, 0),),
                               learning_rate=config.w0_learning_rate, min_learning_rate=config.w0_learning_rate / 10,
                               warmup_steps=max(1, config.w0_steps // 10), seed=seed, num_threads=config.threads,
                               progress=config.progress, checkpoint_every=config.w0_steps)
        return asdict(train_world_model(list(data), settings, folder))

    if not robot:
        appearance, physics = train(world_model_folder, episodes, ("renderer", "perception"), out), None
    else:
        appearance = train(world_model_folder, episodes, ("renderer", "perception"), out / "appearance")
        physics = train(out / "appearance" / "final", [*robot, *rehearsal], ("dynamics",), out)
    return out / "final", {"appearance": appearance, "physics": physics, "episodes": len(episodes), "robot_episodes": len(robot),
                           "rehearsal_episodes": len(rehearsal) if robot else 0, "steps": appearance["steps"]}


__all__ = ["KEPT_SOURCES", "ExportedData", "RetrainConfig", "export_datasets", "finetune_w0", "human_demo_sources",
           "read_exported", "refit_calibrator", "rehearsal_episodes", "retrain_r2"]

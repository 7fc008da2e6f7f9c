"""Filters: which generated trajectories the flywheel keeps. One small class each, composable.

The interface (the one pluggable part of the flywheel, stated here):

* a `Candidate` is a trajectory proposed for the buffer: the env's `Episode` (for a W0 rollout its
  ``success`` is W0's verdict), its W0 return, the plan that made it, its provenance and the
  ``scores`` filters write;
* a filter is any callable ``filter(candidates) -> keep`` (a bool array, one per candidate) with a
  ``name``; it writes its score of each candidate into ``candidate.scores[name]``;
* `FilterChain` runs filters in order, each on the survivors of those before (so a costly filter
  sees few candidates, and dedupe keeps the best of the *good* ones), and reports the funnel.

Filters read only what the flywheel may know: W0's verdicts and returns, W0 reruns, the demo's
W0-scored quality, the trajectories themselves. Never the simulator's verdict: precision and recall
against the judge are computed afterwards, for the report only (`psi_gym.flywheel.judge`).

Built in:

===================== =============================================================================
`SuccessFilter`       W0's verdict (the reward model's success at the end of the episode), and
                      optionally a minimum W0 return
`CalibratedSuccessFilter` the probability that the simulator confirms the success, read off W0's
                      object path in the trajectory by the calibrator of ``calibrated_state``
                      (`psi_gym.rewards.success_calibration`)
`ConsistencyFilter`   W0 self-consistency: the same plan rerun in W0 with its reading of the object's
                      start shifted (each with its own seed); keep if W0 calls enough of the
                      reruns successes. Under the name ``second_opinion``, the same filter with
                      the reruns in other W0s, trained apart (`FlywheelConfig.second_opinions`)
`DemoQualityFilter`   the demo's data quality as W0 scores it (`psi_gym.flywheel.quality`)
`DedupeFilter`        drop a trajectory whose joint targets are within ``min_distance`` of one
                      already kept (or in the buffer) for the same demo
===================== =============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from psi_gym.agents.rollouts import DemoRef
from psi_gym.data.episode import Episode
from psi_gym.sim.hands import hand_spec, residual_scale


@dataclass
class Candidate:
    """A trajectory proposed for the buffer (see the module doc)."""

    episode: Episode
    """the env's episode: frames, joint states, joint targets (``action``), W0's verdict (``success``)."""
    source: str
    """`psi_gym.flywheel.buffer.SOURCES`: ``retargeted``, ``refined_w0``, ``scene_variation`` ..."""
    demo_id: str
    """the human demo it derives from."""
    iteration: int
    w0_return: float
    plan: np.ndarray
    """(H, 22) the residual actions that made it."""
    demo: DemoRef | None = None
    """the env demo (start) it was rolled out from."""
    perturbation: str = ""
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def w0_success(self) -> bool:
        return bool(self.episode.success)


class TrajectoryFilter(Protocol):
    """``filter(candidates) -> keep`` (bool, one per candidate); writes ``candidate.scores[name]``."""

    name: str

    def __call__(self, candidates: Sequence[Candidate]) -> np.ndarray: ...


class SuccessFilter:
    """Keep what W0's reward model calls a success at the end of the episode (and, if
    ``min_return`` is set, whose W0 return reaches it). Score: the W0 return."""

    name = "success"

    def __init__(self, min_return: float | None = None) -> None:
        self.min_return = min_return

    def __call__(self, candidates: Sequence[Candidate]) -> np.ndarray:
        keep = np.zeros(len(candidates), bool)
        for i, candidate in enumerate(candidates):
            candidate.scores[self.name] = float(candidate.w0_return)
            keep[i] = candidate.w0_success and (self.min_return is None or candidate.w0_return >= self.min_return)
        return keep

    def __repr__(self) -> str:
        return f"SuccessFilter(min_return={self.min_return})"


class CalibratedSuccessFilter:
    """Keep what the calibrated success (`psi_gym.rewards.success_calibration`) says the simulator
    confirms with probability >= ``min_probability``, read off the object path W0 predicted in the
    candidate's episode (``episode.object_pose``: the path the ``calibrated_state`` reward reads).
    Score: that probability.

    Args:
        min_probability: the bar.
        calibrator: ``"default"`` (the shipped one, for the shipped W0), a file, or a `Calibrator`.
    """

    name = "calibrated_success"

    def __init__(self, min_probability: float, calibrator: object = "default") -> None:
        from psi_gym.rewards.calibrated_state import resolve_calibrator

        if not 0.0 <= min_probability <= 1.0:
            raise ValueError(f"min_probability must be a probability in [0, 1], got {min_probability}")
        self.min_probability = float(min_probability)
        self.calibrator = resolve_calibrator(calibrator)

    def __call__(self, candidates: Sequence[Candidate]) -> np.ndarray:
        from psi_gym.rewards.success_calibration import path_features
        from psi_gym.sim.scene import SceneParams

        if not candidates:
            return np.zeros(0, bool)
        if any(candidate.demo is None for candidate in candidates):
            raise ValueError("the calibrated success reads each candidate's demo (its task, scene and the human's object "
                             "path): a candidate without one cannot be scored")
        features = np.stack([path_features(candidate.episode.object_pose[:, :3], candidate.demo.task,
                                           SceneParams.from_dict(candidate.demo.scene), candidate.demo.human_object_pose)
                             for candidate in candidates])
        probability = self.calibrator.probability(features)
        for candidate, value in zip(candidates, probability):
            candidate.scores[self.name] = float(value)
        return probability >= self.min_probability

    def __repr__(self) -> str:
        return f"CalibratedSuccessFilter(min_probability={self.min_probability})"


Rerun = Callable[[Sequence[Candidate]], np.ndarray]
"""``rerun(candidates) -> (C, R) bool``: W0's verdict on R reruns of each candidate's joint targets."""


class ConsistencyFilter:
    """W0 self-consistency: ``rerun`` runs each candidate's plan again in W0; the score is the fraction
    of reruns W0 calls successes; keep if it is at least ``min_agreement``. A candidate that already
    holds the score is not rerun.

    What the reruns vary decides what this measures. W0 reads its world state (object pose, kind,
    size) off the episode's first frame and advances it with a deterministic dynamics model; only
    the renderer draws noise, and the env's verdict is the estimator on the rendered final frame.
    So a rerun from the same start with another seed has the same predicted state by construction
    and tests only whether rendering noise moves the estimator's verdict; the flywheel's reruns
    start from the demo's start with W0's reading of the object's position shifted
    (the env's ``object_shift`` reset option, a new shift and seed each time), which changes the whole
    predicted trajectory, the noise as well.

    ``name`` names the score: the flywheel also runs this filter as ``second_opinion``, its reruns
    the plan in other W0s (`psi_gym.flywheel.loop.FlywheelConfig.second_opinions`)."""

    def __init__(self, rerun: Rerun, min_agreement: float = 1.0, name: str = "consistency") -> None:
        if not 0.0 <= min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be in [0, 1], got {min_agreement}")
        self.rerun = rerun
        self.min_agreement = min_agreement
        self.name = name

    def __call__(self, candidates: Sequence[Candidate]) -> np.ndarray:
        todo = [c for c in candidates if self.name not in c.scores]
        if todo:
            verdicts = np.asarray(self.rerun(todo), bool)
            if verdicts.ndim != 2 or len(verdicts) != len(todo):
                raise ValueError(f"rerun must return (candidates, reruns) verdicts, got shape {verdicts.shape}")
            for candidate, row in zip(todo, verdicts):
                candidate.scores[self.name] = float(row.mean()) if row.size else 1.0
        return np.array([c.scores[self.name] >= self.min_agreement for c in candidates], bool)

    def __repr__(self) -> str:
        return f"ConsistencyFilter(min_agreement={self.min_agreement}, name={self.name!r})"


class DemoQualityFilter:
    """Keep trajectories of demos whose W0-scored data quality (`psi_gym.flywheel.quality`) is at
    least ``min_quality``. Score: that quality."""

    name = "demo_quality"

    def __init__(self, quality: Mapping[str, float], min_quality: float) -> None:
        self.quality = dict(quality)
        self.min_quality = float(min_quality)

    def __call__(self, candidates: Sequence[Candidate]) -> np.ndarray:
        missing = sorted({c.demo_id for c in candidates} - set(self.quality))
        if missing:
            raise KeyError(f"no data-quality score for demo(s) {missing[:3]}: score the demos first")
        for candidate in candidates:
            candidate.scores[self.name] = self.quality[candidate.demo_id]
        return np.array([self.quality[c.demo_id] >= self.min_quality for c in candidates], bool)

    def __repr__(self) -> str:
        return f"DemoQualityFilter(min_quality={self.min_quality})"


def trajectory_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference of two joint-target trajectories (T, 22) in residual units (the env's scale of
    one action unit per joint: 3 cm wrist, 0.15 rad wrist rotation, 0.4 rad finger joints), over
    their common steps."""
    scale = residual_scale(hand_spec("robot")).astype(np.float64)
    steps = min(len(a), len(b))
    if steps == 0:
        return float("inf")
    difference = (np.asarray(a[:steps], np.float64) - np.asarray(b[:steps], np.float64)) / scale
    return float(np.sqrt(np.mean(difference ** 2)))


class DedupeFilter:
    """Drop near-duplicates: in order of W0 return (best first), keep a candidate unless its joint
    targets are within ``min_distance`` (`trajectory_distance`) of a kept one or of ``existing``
    (demo id -> joint-target trajectories already in the buffer) of the same demo. Score: the
    distance to the nearest such trajectory (inf: none)."""

    name = "dedupe"

    def __init__(self, min_distance: float = 0.05, existing: Mapping[str, Sequence[np.ndarray]] | None = None) -> None:
        self.min_distance = float(min_distance)
        self.existing = {k: list(v) for k, v in (existing or {}).items()}

    def __call__(self, candidates: Sequence[Candidate]) -> np.ndarray:
        keep = np.zeros(len(candidates), bool)
        kept: dict[str, list[np.ndarray]] = {k: list(v) for k, v in self.existing.items()}
        for i in sorted(range(len(candidates)), key=lambda i: -candidates[i].w0_return):
            candidate = candidates[i]
            targets = candidate.episode.action
            others = kept.setdefault(candidate.demo_id, [])
            nearest = min((trajectory_distance(targets, other) for other in others), default=float("inf"))
            candidate.scores[self.name] = nearest
            if nearest >= self.min_distance:
                keep[i] = True
                others.append(targets)
        return keep

    def __repr__(self) -> str:
        return f"DedupeFilter(min_distance={self.min_distance})"


@dataclass
class FilterResult:
    """What `FilterChain` did: the final keep mask and, after each filter, who was still in."""

    keep: np.ndarray
    stages: list[tuple[str, np.ndarray]]
    """(filter name, keep mask after it) in order."""


class FilterChain:
    """Filters in order, each run on the survivors of the ones before (see the module doc)."""

    def __init__(self, filters: Sequence[TrajectoryFilter]) -> None:
        self.filters = list(filters)

    def __call__(self, candidates: Sequence[Candidate]) -> FilterResult:
        keep = np.ones(len(candidates), bool)
        stages = []
        for trajectory_filter in self.filters:
            alive = np.flatnonzero(keep)
            if len(alive):
                verdict = np.asarray(trajectory_filter([candidates[i] for i in alive]), bool)
                if verdict.shape != (len(alive),):
                    raise ValueError(f"filter {trajectory_filter.name!r} returned {verdict.shape}, "
                                     f"expected ({len(alive)},)")
                keep[alive] = verdict
            stages.append((trajectory_filter.name, keep.copy()))
        return FilterResult(keep, stages)

    def __repr__(self) -> str:
        return f"FilterChain({self.filters!r})"


__all__ = ["CalibratedSuccessFilter", "Candidate", "ConsistencyFilter", "DedupeFilter", "DemoQualityFilter", "FilterChain", "FilterResult",
           "Rerun", "SuccessFilter", "TrajectoryFilter", "trajectory_distance"]
